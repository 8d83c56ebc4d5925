//! Who the client really is when the node sits behind proxies: the PROXY protocol header
//! (v1 text or v2 binary, parsed by the `ppp` crate) and `X-Forwarded-For` — each believed only
//! from a peer in `[listen] trusted_proxies`, ignored from anyone else.
//!
//! Invariants: a PROXY header is read only from a trusted peer, within the handshake timeout
//! and at most [`MAX_PROXY_HEADER`] bytes, and the bytes after it are the HTTP request's (on a
//! `wss://` listener, the TLS handshake's: there the header is peeked and exactly its bytes are
//! consumed before TLS starts); for
//! `X-Forwarded-For` the client is the rightmost hop that is not a trusted proxy (a client
//! can prepend anything, but not what the proxies it went through appended).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::{HeaderResult, PartialResult as _};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::net::TcpStream;

use crate::config::edge::{canonical, EdgeConfig};
use crate::ws::handshake::HandshakeError;

/// Largest PROXY header read: a v1 line is at most 107 bytes, a v2 header 16 bytes plus its
/// addresses (at most 216) and TLVs; load balancers' TLVs fit well within this.
pub const MAX_PROXY_HEADER: usize = 4096;

/// Reads the PROXY header a trusted proxy sends first. Returns the client's address (`None`
/// for a `LOCAL`/`UNKNOWN` header: the proxy's own connection, e.g. a health check) and the
/// bytes read past the header.
pub(crate) async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<(Option<IpAddr>, Vec<u8>), HandshakeError> {
    tokio::time::timeout(timeout, read_proxy_header_inner(stream))
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

async fn read_proxy_header_inner<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(Option<IpAddr>, Vec<u8>), HandshakeError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        let mut chunk = [0u8; 512];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((client, used)) = parse_proxy_header(&buf)? {
            return Ok((client, buf.split_off(used)));
        }
        if buf.len() > MAX_PROXY_HEADER {
            return Err(HandshakeError::Malformed("PROXY header too long".into()));
        }
    }
}

/// Whether the PROXY header question is still open when the upgrade starts. On a TLS listener
/// the header comes before TLS, so the listener settles it (with the configuration in force at
/// accept) and the upgrade never looks for one inside the decrypted stream — not even when a
/// reload has turned `proxy_protocol` on meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BeforeUpgrade {
    /// Plain listener: the upgrade reads a PROXY header if the peer must send one.
    Open,
    /// Settled before TLS: the client address from a PROXY header, or `None` (no header was
    /// expected, or it was `LOCAL`/`UNKNOWN`): the TCP peer.
    Settled(Option<IpAddr>),
}

/// Reads the PROXY header a trusted proxy sends before its TLS handshake, consuming exactly the
/// header's bytes (peeked first, so nothing of the handshake is taken). A header split across
/// packets is peeked again after a short pause, all within `timeout`.
pub(crate) async fn read_proxy_header_before_tls(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<IpAddr>, HandshakeError> {
    tokio::time::timeout(timeout, async {
        let mut buf = vec![0u8; MAX_PROXY_HEADER + 1];
        let mut seen = 0;
        loop {
            let n = stream.peek(&mut buf).await?;
            if n == 0 {
                return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some((client, used)) = parse_proxy_header(&buf[..n])? {
                stream.read_exact(&mut buf[..used]).await?;
                return Ok(client);
            }
            if n > MAX_PROXY_HEADER {
                return Err(HandshakeError::Malformed("PROXY header too long".into()));
            }
            if n == seen {
                // peek returns at once while anything is buffered: wait for the rest.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen = n;
        }
    })
    .await
    .unwrap_or(Err(HandshakeError::Timeout))
}

/// Parses a PROXY header at the start of `buf`: `Ok(None)` when more bytes are needed, else the
/// client's address and the header's length.
pub fn parse_proxy_header(buf: &[u8]) -> Result<Option<(Option<IpAddr>, usize)>, HandshakeError> {
    let bad = |what: &str| HandshakeError::Malformed(format!("bad PROXY header: {what}"));
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        // A v1 line ends at its CRLF: a line that is complete but short of parts (the parser
        // calls that "incomplete") will never become valid.
        if buf.starts_with(b"PROXY") && buf.windows(2).any(|w| w == b"\r\n") {
            return Err(bad("not a v1 line"));
        }
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => Some(IpAddr::V4(a.source_address)),
                ppp::v1::Addresses::Tcp6(a) => Some(IpAddr::V6(a.source_address)),
                ppp::v1::Addresses::Unknown => None,
            };
            Ok(Some((client, h.header.len())))
        }
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, &h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => Some(IpAddr::V4(a.source_address)),
                (_, ppp::v2::Addresses::IPv6(a)) => Some(IpAddr::V6(a.source_address)),
                _ => None,
            };
            Ok(Some((client, h.len())))
        }
        HeaderResult::V1(Err(_)) => Err(bad("not a v1 line")),
        HeaderResult::V2(Err(_)) => Err(bad("not a v2 header")),
    }
}

/// The client's address: `peer` (the TCP peer, or what a trusted PROXY header said) unless it is
/// a trusted proxy that sent `X-Forwarded-For` (every such header, in order), in which case the
/// rightmost hop that is not a trusted proxy. Hops that do not parse end the walk: what lies
/// left of them cannot be vouched for, so the last trusted address stands.
pub fn client_address(peer: IpAddr, headers: &[(String, String)], edge: &EdgeConfig) -> IpAddr {
    let peer = canonical(peer);
    if !edge.trusts(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = canonical(ip);
        if !edge.trusts(client) {
            return client;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or `address:port` / `[v6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(nets: &[&str]) -> EdgeConfig {
        let list: Vec<String> = nets.iter().map(|s| s.to_string()).collect();
        let mut problems = Vec::new();
        let e = EdgeConfig::parse("listen.trusted_proxies", &list, false, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        e
    }

    fn xff(v: &str) -> Vec<(String, String)> {
        vec![("X-Forwarded-For".into(), v.into())]
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let e = edge(&["10.0.0.0/8", "127.0.0.1"]);
        // Through two trusted proxies: the client is the first untrusted from the right.
        let h = xff("6.6.6.6, 203.0.113.7, 10.1.1.1");
        assert_eq!(client_address(ip("127.0.0.1"), &h, &e), ip("203.0.113.7"));
        // A spoofed header from an untrusted peer is ignored.
        assert_eq!(
            client_address(ip("198.51.100.1"), &h, &e),
            ip("198.51.100.1")
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            client_address(ip("127.0.0.1"), &xff("10.2.2.2, 10.1.1.1"), &e),
            ip("10.2.2.2")
        );
        // Garbage stops the walk at the last trusted address.
        assert_eq!(
            client_address(ip("127.0.0.1"), &xff("203.0.113.7, nonsense, 10.1.1.1"), &e),
            ip("10.1.1.1")
        );
        // Ports and brackets; several headers in order; IPv4-mapped peers.
        let two = vec![
            (
                "x-forwarded-for".to_string(),
                "203.0.113.9:4711".to_string(),
            ),
            (
                "X-Forwarded-For".to_string(),
                "[2001:db8::1]:80".to_string(),
            ),
        ];
        assert_eq!(client_address(ip("127.0.0.1"), &two, &e), ip("2001:db8::1"));
        assert_eq!(
            client_address(ip("::ffff:127.0.0.1"), &xff("203.0.113.7"), &e),
            ip("203.0.113.7")
        );
        // No header: the peer.
        assert_eq!(client_address(ip("127.0.0.1"), &[], &e), ip("127.0.0.1"));
    }

    #[test]
    fn proxy_headers_parse_or_are_refused() {
        let v1 = b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 8080\r\nGET / HTTP/1.1\r\n";
        let (client, used) = parse_proxy_header(v1).expect("ok").expect("complete");
        assert_eq!(client, Some(ip("198.51.100.9")));
        assert_eq!(&v1[used..], b"GET / HTTP/1.1\r\n");
        assert!(parse_proxy_header(b"PROXY TCP4 198.51")
            .expect("ok")
            .is_none());
        assert_eq!(
            parse_proxy_header(b"PROXY UNKNOWN\r\n").expect("ok"),
            Some((None, 15))
        );
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 192, 0, 2, 44, 127, 0, 0, 1, 0x13, 0x88, 0x1f, 0x90,
        ]);
        v2.extend_from_slice(b"GET");
        let (client, used) = parse_proxy_header(&v2).expect("ok").expect("complete");
        assert_eq!(client, Some(ip("192.0.2.44")));
        assert_eq!(&v2[used..], b"GET");
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 x y z w\r\n",
            b"PROXY TCP4 nonsense\r\n",
        ] {
            assert!(parse_proxy_header(bad).is_err(), "{bad:?}");
        }
    }
}
