//! The binary wire format between nodes (over Redis pub/sub). Versioned, compact, and decoded
//! without panicking: garbage is an error, never a crash.
//!
//! Every message starts with `version: u8` (1) and `kind: u8`. Integers are big-endian; byte
//! strings are a `u32` length then the bytes; a node tag is 5 raw bytes; a connection id is its
//! 18 raw bytes. See ARCHITECTURE.md ("Cluster wire format") for the table.

use crate::id::{ConnectionId, NodeTag};

/// Current wire version.
pub const VERSION: u8 = 1;
/// Largest byte string a message may carry (a message is at most this plus a few headers).
pub const MAX_FIELD_BYTES: usize = 64 << 20;

/// What a remote connection operation asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// PostToConnection with the payload.
    Post(Vec<u8>),
    /// GetConnection.
    Get,
    /// DeleteConnection with code and reason.
    Delete {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Subscribe to a channel.
    Subscribe(String),
    /// Unsubscribe from a channel.
    Unsubscribe(String),
    /// Several PostToConnection calls for connections of the same node, in order (a batch);
    /// answered with one big-endian u16 status per item.
    PostMany(Vec<(ConnectionId, Vec<u8>)>),
}

/// A message between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// An operation on a connection owned by the receiving node.
    Request {
        /// Correlates the reply.
        req_id: u64,
        /// Where to send the reply.
        reply_to: NodeTag,
        /// The connection.
        conn: ConnectionId,
        /// What to do.
        op: Op,
    },
    /// The owner's answer to a request or a count query.
    Reply {
        /// The request's id.
        req_id: u64,
        /// HTTP-style status (200, 204, 400, 410, 413, 429).
        status: u16,
        /// GetConnection JSON, an error message, or a count.
        body: Vec<u8>,
    },
    /// A channel publish (the channel is the Redis channel it travels on).
    Publish {
        /// The publishing node, which delivered locally already.
        origin: NodeTag,
        /// A connection not to deliver to.
        exclude: Option<ConnectionId>,
        /// The exact bytes to send.
        payload: Vec<u8>,
    },
    /// A broadcast to every connection of every node.
    Broadcast {
        /// The publishing node, which delivered locally already.
        origin: NodeTag,
        /// A connection not to deliver to.
        exclude: Option<ConnectionId>,
        /// The exact bytes to send.
        payload: Vec<u8>,
    },
    /// "How many local subscribers has this channel?" — answered with a Reply whose body is a
    /// big-endian u64.
    CountQuery {
        /// Correlates the reply.
        req_id: u64,
        /// Where to send the reply.
        reply_to: NodeTag,
        /// The channel.
        channel: String,
    },
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Ended before a field did.
    #[error("truncated message")]
    Truncated,
    /// A version this node does not speak.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// An unknown kind or op byte.
    #[error("unknown {what} {value}")]
    Unknown {
        /// `kind` or `op`.
        what: &'static str,
        /// The byte.
        value: u8,
    },
    /// A field that is not what it should be (UTF-8, a connection id, a length).
    #[error("malformed field: {0}")]
    Malformed(&'static str),
    /// Bytes left after the message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

const KIND_REQUEST: u8 = 1;
const KIND_REPLY: u8 = 2;
const KIND_PUBLISH: u8 = 3;
const KIND_BROADCAST: u8 = 4;
const KIND_COUNT: u8 = 5;

const OP_POST: u8 = 1;
const OP_GET: u8 = 2;
const OP_DELETE: u8 = 3;
const OP_SUBSCRIBE: u8 = 4;
const OP_UNSUBSCRIBE: u8 = 5;
const OP_POST_MANY: u8 = 6;
/// Most items one `PostMany` may carry.
pub const MAX_POST_MANY: usize = 1_000_000;

impl Msg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64);
        w.push(VERSION);
        match self {
            Msg::Request {
                req_id,
                reply_to,
                conn,
                op,
            } => {
                w.push(KIND_REQUEST);
                w.extend_from_slice(&req_id.to_be_bytes());
                w.extend_from_slice(&reply_to.to_bytes());
                w.extend_from_slice(&conn.to_bytes());
                match op {
                    Op::Post(p) => {
                        w.push(OP_POST);
                        put_bytes(&mut w, p);
                    }
                    Op::Get => w.push(OP_GET),
                    Op::Delete { code, reason } => {
                        w.push(OP_DELETE);
                        w.extend_from_slice(&code.to_be_bytes());
                        put_bytes(&mut w, reason.as_bytes());
                    }
                    Op::Subscribe(c) => {
                        w.push(OP_SUBSCRIBE);
                        put_bytes(&mut w, c.as_bytes());
                    }
                    Op::Unsubscribe(c) => {
                        w.push(OP_UNSUBSCRIBE);
                        put_bytes(&mut w, c.as_bytes());
                    }
                    Op::PostMany(items) => {
                        w.push(OP_POST_MANY);
                        w.extend_from_slice(&(items.len() as u32).to_be_bytes());
                        for (c, p) in items {
                            w.extend_from_slice(&c.to_bytes());
                            put_bytes(&mut w, p);
                        }
                    }
                }
            }
            Msg::Reply {
                req_id,
                status,
                body,
            } => {
                w.push(KIND_REPLY);
                w.extend_from_slice(&req_id.to_be_bytes());
                w.extend_from_slice(&status.to_be_bytes());
                put_bytes(&mut w, body);
            }
            Msg::Publish {
                origin,
                exclude,
                payload,
            }
            | Msg::Broadcast {
                origin,
                exclude,
                payload,
            } => {
                w.push(if matches!(self, Msg::Publish { .. }) {
                    KIND_PUBLISH
                } else {
                    KIND_BROADCAST
                });
                w.extend_from_slice(&origin.to_bytes());
                match exclude {
                    Some(c) => {
                        w.push(1);
                        w.extend_from_slice(&c.to_bytes());
                    }
                    None => w.push(0),
                }
                put_bytes(&mut w, payload);
            }
            Msg::CountQuery {
                req_id,
                reply_to,
                channel,
            } => {
                w.push(KIND_COUNT);
                w.extend_from_slice(&req_id.to_be_bytes());
                w.extend_from_slice(&reply_to.to_bytes());
                put_bytes(&mut w, channel.as_bytes());
            }
        }
        w
    }

    /// Decodes a message; any malformation is an error.
    pub fn decode(bytes: &[u8]) -> Result<Msg, WireError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        let msg = match r.u8()? {
            KIND_REQUEST => {
                let req_id = r.u64()?;
                let reply_to = r.tag()?;
                let conn = r.conn()?;
                let op = match r.u8()? {
                    OP_POST => Op::Post(r.bytes()?.to_vec()),
                    OP_GET => Op::Get,
                    OP_DELETE => Op::Delete {
                        code: r.u16()?,
                        reason: r.string()?,
                    },
                    OP_SUBSCRIBE => Op::Subscribe(r.string()?),
                    OP_UNSUBSCRIBE => Op::Unsubscribe(r.string()?),
                    OP_POST_MANY => {
                        let n = r.u32()? as usize;
                        if n > MAX_POST_MANY {
                            return Err(WireError::Malformed("item count"));
                        }
                        let mut items = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            let c = r.conn()?;
                            items.push((c, r.bytes()?.to_vec()));
                        }
                        Op::PostMany(items)
                    }
                    value => return Err(WireError::Unknown { what: "op", value }),
                };
                Msg::Request {
                    req_id,
                    reply_to,
                    conn,
                    op,
                }
            }
            KIND_REPLY => Msg::Reply {
                req_id: r.u64()?,
                status: r.u16()?,
                body: r.bytes()?.to_vec(),
            },
            kind @ (KIND_PUBLISH | KIND_BROADCAST) => {
                let origin = r.tag()?;
                let exclude = match r.u8()? {
                    0 => None,
                    1 => Some(r.conn()?),
                    _ => return Err(WireError::Malformed("exclude flag")),
                };
                let payload = r.bytes()?.to_vec();
                if kind == KIND_PUBLISH {
                    Msg::Publish {
                        origin,
                        exclude,
                        payload,
                    }
                } else {
                    Msg::Broadcast {
                        origin,
                        exclude,
                        payload,
                    }
                }
            }
            KIND_COUNT => Msg::CountQuery {
                req_id: r.u64()?,
                reply_to: r.tag()?,
                channel: r.string()?,
            },
            value => {
                return Err(WireError::Unknown {
                    what: "kind",
                    value,
                })
            }
        };
        match bytes.len() - r.pos {
            0 => Ok(msg),
            n => Err(WireError::Trailing(n)),
        }
    }
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    w.extend_from_slice(&(b.len() as u32).to_be_bytes());
    w.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.bytes.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let b = self.take(4)?;
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len > MAX_FIELD_BYTES {
            return Err(WireError::Malformed("field length"));
        }
        self.take(len)
    }

    fn string(&mut self) -> Result<String, WireError> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_string)
            .map_err(|_| WireError::Malformed("utf-8"))
    }

    fn tag(&mut self) -> Result<NodeTag, WireError> {
        NodeTag::from_bytes(self.take(NodeTag::LEN)?).ok_or(WireError::Malformed("node tag"))
    }

    fn conn(&mut self) -> Result<ConnectionId, WireError> {
        ConnectionId::from_bytes(self.take(ConnectionId::LEN)?)
            .ok_or(WireError::Malformed("connection id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Msg> {
        let tag = NodeTag::of("a");
        let conn = ConnectionId::generate(NodeTag::of("b")).expect("rng");
        vec![
            Msg::Request {
                req_id: 7,
                reply_to: tag,
                conn,
                op: Op::Post(b"hello".to_vec()),
            },
            Msg::Request {
                req_id: 8,
                reply_to: tag,
                conn,
                op: Op::Get,
            },
            Msg::Request {
                req_id: 9,
                reply_to: tag,
                conn,
                op: Op::Delete {
                    code: 4000,
                    reason: "bye".into(),
                },
            },
            Msg::Request {
                req_id: 10,
                reply_to: tag,
                conn,
                op: Op::Subscribe("room:1".into()),
            },
            Msg::Request {
                req_id: 11,
                reply_to: tag,
                conn,
                op: Op::Unsubscribe("room:1".into()),
            },
            Msg::Request {
                req_id: 13,
                reply_to: tag,
                conn,
                op: Op::PostMany(vec![(conn, b"a".to_vec()), (conn, vec![])]),
            },
            Msg::Reply {
                req_id: 7,
                status: 410,
                body: b"gone".to_vec(),
            },
            Msg::Publish {
                origin: tag,
                exclude: Some(conn),
                payload: vec![0, 255],
            },
            Msg::Broadcast {
                origin: tag,
                exclude: None,
                payload: b"all".to_vec(),
            },
            Msg::CountQuery {
                req_id: 12,
                reply_to: tag,
                channel: "news".into(),
            },
        ]
    }

    #[test]
    fn round_trips() {
        for m in samples() {
            assert_eq!(Msg::decode(&m.encode()).expect("decode"), m);
        }
    }

    #[test]
    fn is_compact() {
        let tag = NodeTag::of("a");
        let m = Msg::Publish {
            origin: tag,
            exclude: None,
            payload: vec![b'x'; 100],
        };
        // version, kind, tag, flag, length, payload.
        assert_eq!(m.encode().len(), 1 + 1 + 5 + 1 + 4 + 100);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert!(matches!(Msg::decode(&[]), Err(WireError::Truncated)));
        assert!(matches!(Msg::decode(&[2, 1]), Err(WireError::Version(2))));
        assert!(matches!(
            Msg::decode(&[1, 99]),
            Err(WireError::Unknown { what: "kind", .. })
        ));
        for m in samples() {
            let bytes = m.encode();
            // Every truncation fails cleanly.
            for n in 0..bytes.len() {
                assert!(Msg::decode(&bytes[..n]).is_err(), "{m:?} cut at {n}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(matches!(Msg::decode(&longer), Err(WireError::Trailing(1))));
        }
        // Huge declared lengths do not allocate.
        let mut evil = vec![1, KIND_REPLY];
        evil.extend_from_slice(&0u64.to_be_bytes());
        evil.extend_from_slice(&200u16.to_be_bytes());
        evil.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Msg::decode(&evil).is_err());
        // Pseudo-random bytes.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let len = (x % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = Msg::decode(&bytes);
        }
    }
}
