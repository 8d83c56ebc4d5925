//! Issue 13, item 2 — real client addresses behind proxies: `X-Forwarded-For` and the PROXY
//! protocol (v1 and v2) set `identity.sourceIp` (in events, GetConnection and the access log)
//! only when the TCP peer is in `[listen] trusted_proxies`; spoofed headers from anyone else
//! are ignored, and a PROXY header from an untrusted peer is not honoured.

use reqwest::Method;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::support::*;

/// A `$connect` route to `backend`, and `[listen]` lines.
fn config(backend: &Backend, listen: &str) -> String {
    format!(
        "[listen]\n{listen}\n[api]\nwebhook_secret = \"edge-test-secret\"\n\
         [routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n",
        backend.url("/connect")
    )
}

/// Sends `prefix`, then an upgrade request with `headers`; the response head.
async fn upgrade(node: &gangway::Node, prefix: &[u8], headers: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(node.websocket_addr).await.expect("tcp");
    let mut req = prefix.to_vec();
    req.extend_from_slice(
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
        )
        .as_bytes(),
    );
    s.write_all(&req).await.expect("write");
    let head = read_head(&mut s).await;
    (s, head)
}

/// The sourceIp the backend's last CONNECT event and GetConnection report.
async fn source_ip(node: &gangway::Node, backend: &Backend, n: usize) -> String {
    let call = backend.wait_event("CONNECT", n).await;
    let from_event = call.event["requestContext"]["identity"]["sourceIp"]
        .as_str()
        .expect("sourceIp")
        .to_string();
    let id = call.connection_id();
    eventually("registered", || node.broker.connection_ids().contains(&id)).await;
    let r = Control::of(node)
        .request(Method::GET, &format!("/@connections/{id}"), "")
        .await;
    assert_eq!(r.json()["identity"]["sourceIp"], from_event.as_str());
    from_event
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let backend = Backend::start().await;
    // Trusted: the test's own address (the load balancer) and 10/8 (internal proxies).
    let node = crate::support::node(&config(
        &backend,
        "trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]",
    ))
    .await;
    let (_a, head) = upgrade(
        &node,
        b"",
        "X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.1.2.3\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The rightmost hop that is not a trusted proxy; the spoofed leftmost one is not believed.
    assert_eq!(source_ip(&node, &backend, 1).await, "203.0.113.7");
    // No header: the peer itself.
    let (_b, head) = upgrade(&node, b"", "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(source_ip(&node, &backend, 2).await, "127.0.0.1");
    node.shutdown().await;

    // The same request from a peer that is not trusted: the header is ignored.
    let node = crate::support::node(&config(&backend, "trusted_proxies = [\"10.0.0.0/8\"]")).await;
    let (_c, head) = upgrade(&node, b"", "X-Forwarded-For: 203.0.113.7\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(source_ip(&node, &backend, 3).await, "127.0.0.1");
    node.shutdown().await;
}

#[tokio::test]
async fn the_proxy_protocol_sets_the_client_from_trusted_peers_only() {
    let backend = Backend::start().await;
    let node = crate::support::node(&config(
        &backend,
        "trusted_proxies = [\"127.0.0.1/32\"]\nproxy_protocol = true",
    ))
    .await;
    // v1.
    let (_a, head) = upgrade(
        &node,
        b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 8080\r\n",
        "",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(source_ip(&node, &backend, 1).await, "198.51.100.9");
    // v2, TCP over IPv6.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x21, 0, 36]);
    v2.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .expect("ip")
            .octets(),
    );
    v2.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v2.extend_from_slice(&[0x13, 0x88, 0x1f, 0x90]);
    let (_b, head) = upgrade(&node, &v2, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(source_ip(&node, &backend, 2).await, "2001:db8::7");
    // A trusted peer that sends no PROXY header, or a broken one: refused, nothing admitted.
    let (_c, head) = upgrade(&node, b"", "").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let (_d, head) = upgrade(&node, b"PROXY TCP4 nonsense\r\n", "").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    node.shutdown().await;

    // From an untrusted peer a PROXY header is not honoured: it is not HTTP, so 400.
    let node = crate::support::node(&config(
        &backend,
        "trusted_proxies = [\"10.0.0.0/8\"]\nproxy_protocol = true",
    ))
    .await;
    let (_e, head) = upgrade(
        &node,
        b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 8080\r\n",
        "",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    // A plain upgrade from it works, with its own address.
    let (_f, head) = upgrade(&node, b"", "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(source_ip(&node, &backend, 3).await, "127.0.0.1");
    assert_eq!(
        backend.calls().len(),
        3,
        "no backend call for a refused upgrade"
    );
    node.shutdown().await;
}

#[test]
fn bad_trusted_proxies_are_refused_with_their_key() {
    let err = gangway::GatewayConfig::from_toml_str(
        "[listen]\ntrusted_proxies = [\"10.0.0.0/8\", \"not-a-net\"]\n",
    )
    .expect_err("invalid");
    assert_eq!(err.problems[0].key, "listen.trusted_proxies[1]");
    let err = gangway::GatewayConfig::from_toml_str("[listen]\nproxy_protocol = true\n")
        .expect_err("no trusted proxies");
    assert_eq!(err.problems[0].key, "listen.proxy_protocol");
}
