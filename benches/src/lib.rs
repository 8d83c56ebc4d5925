//! Criterion benchmarks of Gangway's hot paths (`cargo bench -p gangway-benches`): route
//! selection, event serialisation, frame encoding, channel fan-out to in-process recipients,
//! and the cluster wire format. This library only holds the shared fixtures.

use std::sync::Arc;

use gangway_broker::internals::Channels;
use gangway_broker::internals::Connection;
use gangway_broker::{ConnectionId, NodeTag};

/// A realistic chat message body.
pub const CHAT_BODY: &str = r#"{"action":"sendmessage","room":"lobby","data":{"text":"hello everyone, how is it going?","mentions":["alice","bob"],"ts":1705751700453}}"#;

/// A message of about `bytes` bytes: an action key, then an array of small objects — the shape
/// that makes a full JSON parse allocate most per byte.
pub fn large_message(bytes: usize) -> String {
    let mut m = String::from(r#"{"action":"sendmessage","items":["#);
    let mut i = 0u64;
    while m.len() + 40 < bytes {
        if i > 0 {
            m.push(',');
        }
        m.push_str(&format!(r#"{{"id":{i},"v":"x","ok":true}}"#));
        i += 1;
    }
    m.push_str("]}");
    m
}

/// How the router read messages before it streamed: the whole message parsed into a tree, then
/// the path looked up in it (kept as the reference the streaming pass is measured against).
pub fn tree_select(message: &str, path: &[&str]) -> Option<String> {
    let body: serde_json::Value = serde_json::from_str(message).ok()?;
    let mut v = &body;
    for field in path {
        match v.get(field) {
            Some(next) => v = next,
            None => return Some(String::new()),
        }
    }
    Some(match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// `n` open connections subscribed to `channel`.
pub fn subscribed(n: usize, channel: &str) -> (Channels, Vec<Arc<Connection>>) {
    let channels = Channels::new();
    let tag = NodeTag::of("bench");
    let conns: Vec<Arc<Connection>> = (0..n)
        .map(|_| {
            let id = ConnectionId::generate(tag).unwrap_or_else(|_| unreachable_rng());
            Arc::new(Connection::new(
                id,
                0,
                std::net::IpAddr::from([127, 0, 0, 1]),
                None,
                "bench".into(),
                None,
            ))
        })
        .collect();
    for c in &conns {
        let _ = channels.subscribe(channel, c, 10);
    }
    (channels, conns)
}

fn unreachable_rng() -> ! {
    panic!("the OS random source failed")
}
