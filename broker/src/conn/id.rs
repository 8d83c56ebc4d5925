//! Connection ids: URL-safe, unguessable, and routable to their owning node without a lookup.
//!
//! Layout (18 bytes, base64url without padding → 24 characters):
//! `version (1) | node tag (5) | random (12 = 96 bits from the OS CSPRNG)`.
//! The node tag is the first five bytes of SHA-256 of the node id, so any node can tell which
//! node owns a connection from the id alone.

pub use crate::error::InvalidConnectionId;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::TryRngCore as _;
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const TAG_LEN: usize = 5;
const RANDOM_LEN: usize = 12;
const RAW_LEN: usize = 1 + TAG_LEN + RANDOM_LEN;
/// Length of an id's text form.
pub const ENCODED_LEN: usize = 24;

/// Identifies a node inside connection ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeTag([u8; TAG_LEN]);

impl NodeTag {
    /// Length of the raw form.
    pub const LEN: usize = TAG_LEN;

    /// The raw bytes (for the cluster wire format).
    pub fn to_bytes(self) -> [u8; TAG_LEN] {
        self.0
    }

    /// From raw bytes; `None` unless exactly [`NodeTag::LEN`] long.
    pub fn from_bytes(b: &[u8]) -> Option<NodeTag> {
        b.try_into().ok().map(NodeTag)
    }

    /// The tag of a node id.
    pub fn of(node_id: &str) -> NodeTag {
        let digest = Sha256::digest(node_id.as_bytes());
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        NodeTag(tag)
    }
}

impl NodeTag {
    /// From its hex text (as the member list stores it); `None` unless exactly that.
    pub fn from_hex(text: &str) -> Option<NodeTag> {
        let raw = hex::decode(text).ok()?;
        NodeTag::from_bytes(&raw)
    }
}

impl fmt::Display for NodeTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A connection id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId([u8; RAW_LEN]);

impl ConnectionId {
    /// Length of the raw form.
    pub const LEN: usize = RAW_LEN;

    /// The raw bytes (for the cluster wire format).
    pub fn to_bytes(self) -> [u8; RAW_LEN] {
        self.0
    }

    /// From raw bytes; `None` unless they are a version-1 id.
    pub fn from_bytes(b: &[u8]) -> Option<ConnectionId> {
        let raw: [u8; RAW_LEN] = b.try_into().ok()?;
        (raw[0] == VERSION).then_some(ConnectionId(raw))
    }

    /// A fresh id owned by `node`.
    ///
    /// # Errors
    /// Fails only when the operating system's random source fails.
    pub fn generate(node: NodeTag) -> Result<ConnectionId, rand::rand_core::OsError> {
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1..1 + TAG_LEN].copy_from_slice(&node.0);
        rand::rngs::OsRng.try_fill_bytes(&mut raw[1 + TAG_LEN..])?;
        Ok(ConnectionId(raw))
    }

    /// The lowest id `node` could own (no generated id equals it but with odds of 2^-96): where
    /// a listing of that node's connections starts.
    pub fn first_of(node: NodeTag) -> ConnectionId {
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1..1 + TAG_LEN].copy_from_slice(&node.0);
        ConnectionId(raw)
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<ConnectionId, InvalidConnectionId> {
        let bad = || InvalidConnectionId(text.chars().take(128).collect());
        if text.len() != ENCODED_LEN {
            return Err(bad());
        }
        let mut raw = [0u8; RAW_LEN];
        let n = URL_SAFE_NO_PAD
            .decode_slice(text.as_bytes(), &mut raw)
            .map_err(|_| bad())?;
        if n != RAW_LEN || raw[0] != VERSION {
            return Err(bad());
        }
        Ok(ConnectionId(raw))
    }

    /// The node that owns this connection.
    pub fn node(&self) -> NodeTag {
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&self.0[1..1 + TAG_LEN]);
        NodeTag(tag)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ENCODED_LEN];
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({self})")
    }
}

/// A random request id (AWS-style, base64 of 12 random bytes), for events and responses.
pub fn request_id() -> String {
    let mut raw = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The `requestId` of a connection's `$disconnect` event: derived from the connection id alone,
/// so every copy — the owner's, a reaper's, a restarted node's — carries the same one and a
/// backend can drop duplicates. (The id's 96 random bits keep it unguessable.)
pub fn disconnect_request_id(id: ConnectionId) -> String {
    let mut h = Sha256::new();
    h.update(b"gangway $disconnect requestId\0");
    h.update(id.0);
    URL_SAFE_NO_PAD.encode(&h.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disconnect_request_id_depends_on_the_connection_only() {
        let tag = NodeTag::of("n");
        let a = ConnectionId::generate(tag).expect("rng");
        let b = ConnectionId::generate(tag).expect("rng");
        let again = ConnectionId::parse(&a.to_string()).expect("parse");
        assert_eq!(disconnect_request_id(a), disconnect_request_id(again));
        assert_ne!(disconnect_request_id(a), disconnect_request_id(b));
        assert_eq!(disconnect_request_id(a).len(), request_id().len());
    }

    #[test]
    fn round_trips_and_names_its_node() {
        let tag = NodeTag::of("node-a");
        let id = ConnectionId::generate(tag).expect("rng");
        let text = id.to_string();
        assert_eq!(text.len(), ENCODED_LEN);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let back = ConnectionId::parse(&text).expect("parse");
        assert_eq!(back, id);
        assert_eq!(back.node(), tag);
        assert_ne!(NodeTag::of("node-b"), tag);
    }

    #[test]
    fn ids_differ() {
        let tag = NodeTag::of("n");
        let a = ConnectionId::generate(tag).expect("rng");
        let b = ConnectionId::generate(tag).expect("rng");
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "abc",
            "R0oXAdfD0kwCH6w=",
            "!!!!!!!!!!!!!!!!!!!!!!!!",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(ConnectionId::parse(bad).is_err(), "{bad}");
        }
    }
}
