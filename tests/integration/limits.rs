//! Limits and bad input on the WebSocket side: sizes, UTF-8, timeouts, liveness, capacity,
//! malformed upgrades, rate limits.

use std::time::Duration;

use crate::support::*;
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const ECHO: &str = "[routes.\"$default\"]\nintegration = \"mock\"\n";

#[tokio::test]
async fn oversize_message_and_frame_close_1009() {
    let node = node(&format!(
        "{ECHO}[limits]\nmax_message_bytes = 2048\nmax_frame_bytes = 1024\n"
    ))
    .await;
    // One frame over max_frame_bytes.
    let mut s = raw_upgrade(&node).await;
    s.write_all(&frame(0x1, true, &[b'a'; 1025]))
        .await
        .expect("write");
    assert_eq!(read_close_code(&mut s).await, 1009);
    // Fragments each under the frame limit, together over the message limit.
    let mut s = raw_upgrade(&node).await;
    s.write_all(&frame(0x1, false, &[b'a'; 1000]))
        .await
        .expect("write");
    s.write_all(&frame(0x0, false, &[b'a'; 1000]))
        .await
        .expect("write");
    s.write_all(&frame(0x0, true, &[b'a'; 1000]))
        .await
        .expect("write");
    assert_eq!(read_close_code(&mut s).await, 1009);
    // At the limits, fine.
    let mut ws = connect(&node).await;
    send_text(&mut ws, &"b".repeat(1024)).await;
    assert_eq!(next_message(&mut ws).await.len(), 1024);
    node.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_closes_1007() {
    let node = node(ECHO).await;
    let mut s = raw_upgrade(&node).await;
    s.write_all(&frame(
        0x1,
        true,
        &[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
        ],
    ))
    .await
    .expect("write");
    assert_eq!(read_close_code(&mut s).await, 1007);
    node.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_close_1002() {
    let node = node(ECHO).await;
    let mut s = raw_upgrade(&node).await;
    // Reserved opcode 0x3.
    s.write_all(&frame(0x3, true, b"x")).await.expect("write");
    assert_eq!(read_close_code(&mut s).await, 1002);
    node.shutdown().await;
}

#[tokio::test]
async fn binary_frames_can_be_rejected_with_1003() {
    let node = node(&format!("{ECHO}[limits]\nreject_binary_frames = true\n")).await;
    let mut ws = connect(&node).await;
    ws.send(Message::binary(vec![1u8])).await.expect("send");
    assert_eq!(expect_close(&mut ws).await.0, 1003);
    node.shutdown().await;
}

#[tokio::test]
async fn idle_and_duration_limits_close_1001() {
    let node1 = node(&format!("{ECHO}[limits]\nidle_timeout_secs = 1\n")).await;
    let mut ws = connect(&node1).await;
    let started = std::time::Instant::now();
    assert_eq!(expect_close(&mut ws).await, (1001, "Idle timeout".into()));
    assert!(started.elapsed() >= Duration::from_millis(900));

    let node2 = node(&format!("{ECHO}[limits]\nmax_connection_secs = 1\n")).await;
    let mut ws = connect(&node2).await;
    // Activity does not extend the maximum duration.
    send_text(&mut ws, "keep").await;
    assert_eq!(next_message(&mut ws).await, Message::text("keep"));
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1001);
    assert!(reason.contains("duration"), "{reason}");
    node1.shutdown().await;
    node2.shutdown().await;
}

#[tokio::test]
async fn silent_peers_are_dropped_by_ping_liveness() {
    let backend = Backend::start().await;
    let node = node(&format!(
        "{ECHO}[routes.\"$disconnect\"]\nintegration = \"http\"\nurl = \"{}\"\n[limits]\nping_interval_secs = 1\n",
        backend.url("/disconnect")
    ))
    .await;
    // A raw client that never answers pings.
    let _s = raw_upgrade(&node).await;
    // A real client answers pings (tungstenite does while reading) and stays.
    let mut alive = connect(&node).await;
    let reader = tokio::spawn(async move {
        // Keep reading so pongs go out; stop after 4 s.
        let _ = tokio::time::timeout(Duration::from_secs(4), next_message(&mut alive)).await;
        alive
    });
    let d = backend.wait_event("DISCONNECT", 1).await;
    assert_eq!(d.event["requestContext"]["disconnectStatusCode"], 1006);
    assert_eq!(
        d.event["requestContext"]["disconnectReason"],
        "Ping timeout"
    );
    let _alive = reader.await.expect("join");
    assert_eq!(
        node.broker.connection_count(),
        1,
        "the responsive client stays"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn max_connections_answers_503() {
    let node = node(&format!("{ECHO}[limits]\nmax_connections = 2\n")).await;
    let _a = connect(&node).await;
    let _b = connect(&node).await;
    eventually("two registered", || node.broker.connection_count() == 2).await;
    match tokio_tungstenite::connect_async(ws_url(&node, "/")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected 503, got {other:?}"),
    }
    node.shutdown().await;
}

#[tokio::test]
async fn malformed_upgrades_get_http_errors() {
    let node = node(ECHO).await;
    let cases: [(&[u8], &str); 5] = [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
        (b"GET /elsewhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", "404"),
        (b"GET /prod HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n\r\n", "426"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "405"),
        (b"\x16\x03\x01garbage\r\n\r\n", "400"),
    ];
    for (request, status) in cases {
        let mut s = TcpStream::connect(node.websocket_addr).await.expect("tcp");
        s.write_all(request).await.expect("write");
        let head = read_head(&mut s).await;
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
    }
    // The stage path upgrades.
    let (_ws, _) = tokio_tungstenite::connect_async(ws_url(&node, "/prod"))
        .await
        .expect("stage path");
    node.shutdown().await;
}

#[tokio::test]
async fn inbound_rate_limit_answers_with_an_error_frame() {
    let node = node(&format!("{ECHO}[limits]\ninbound_messages_per_sec = 3\n")).await;
    let mut ws = connect(&node).await;
    for i in 0..5 {
        send_text(&mut ws, &format!("m{i}")).await;
    }
    let mut echoed = 0;
    let mut limited = 0;
    for _ in 0..5 {
        match next_message(&mut ws).await {
            Message::Text(t) if t.starts_with('m') => echoed += 1,
            Message::Text(t) => {
                let j: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
                assert_eq!(j["message"], "Too many requests");
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((echoed, limited), (3, 2));
    node.shutdown().await;
}

// Issue 13, item 4: the inbound limit is a token bucket; a burst above the rate is allowed.
#[tokio::test]
async fn the_inbound_bucket_allows_its_burst() {
    let node = node(&format!(
        "{ECHO}[limits]\ninbound_messages_per_sec = 1\ninbound_burst = 5\n"
    ))
    .await;
    let mut ws = connect(&node).await;
    for i in 0..6 {
        send_text(&mut ws, &format!("m{i}")).await;
    }
    let mut echoed = 0;
    let mut limited = 0;
    for _ in 0..6 {
        match next_message(&mut ws).await {
            Message::Text(t) if t.starts_with('m') => echoed += 1,
            Message::Text(t) => {
                let j: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
                assert_eq!(j["message"], "Too many requests");
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((echoed, limited), (5, 1));
    node.shutdown().await;
}

// Issue 13, item 4: a route's node-wide limit, across connections (AWS's route throttling).
#[tokio::test]
async fn a_route_is_throttled_node_wide() {
    let node = node(
        "[routes.\"$default\"]\nintegration = \"mock\"\n\
         [routes.chat]\nintegration = \"mock\"\nthrottle_rate = 1\nthrottle_burst = 2\n",
    )
    .await;
    let mut a = connect(&node).await;
    let mut b = connect(&node).await;
    let chat = r#"{"action":"chat"}"#;
    send_text(&mut a, chat).await;
    assert_eq!(next_message(&mut a).await, Message::text(chat));
    send_text(&mut b, chat).await;
    assert_eq!(next_message(&mut b).await, Message::text(chat));
    // The route's burst is spent: refused for either connection; other routes are not limited.
    send_text(&mut a, chat).await;
    assert_eq!(next_json(&mut a).await["message"], "Too many requests");
    send_text(&mut b, "not chat").await;
    assert_eq!(next_message(&mut b).await, Message::text("not chat"));
    let metrics = Control::of(&node)
        .request(reqwest::Method::GET, "/metrics", "")
        .await;
    assert!(metrics
        .body
        .contains("gangway_messages_received_total{route=\"route_throttled\"} 1"));
    node.shutdown().await;
}

/// Upgrades from `source`; the response status.
async fn upgrade_from(node: &gangway::Node, source: &str) -> u16 {
    use tokio::io::AsyncWriteExt as _;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("addr"))
        .expect("bind");
    let mut s = socket.connect(node.websocket_addr).await.expect("connect");
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    let head = read_head(&mut s).await;
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

// Issue 13, item 4: new connections per source address; over it 429 before $connect.
#[tokio::test]
async fn new_connections_per_address_are_limited_before_connect() {
    let backend = Backend::start().await;
    let node = node(&format!(
        "[api]\nwebhook_secret = \"per-ip-secret\"\n\
         [routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
         [limits]\nconnections_per_ip_per_sec = 2\n",
        backend.url("/connect")
    ))
    .await;
    assert_eq!(upgrade_from(&node, "127.0.0.1").await, 101);
    assert_eq!(upgrade_from(&node, "127.0.0.1").await, 101);
    assert_eq!(upgrade_from(&node, "127.0.0.1").await, 429);
    // Another address has its own bucket.
    assert_eq!(upgrade_from(&node, "127.0.0.2").await, 101);
    assert_eq!(
        backend.calls().len(),
        3,
        "no $connect call for the refused upgrade"
    );
    let metrics = Control::of(&node)
        .request(reqwest::Method::GET, "/metrics", "")
        .await;
    assert!(metrics
        .body
        .contains("gangway_handshakes_rejected_total{reason=\"rate_limited\"} 1"));
    node.shutdown().await;
}
