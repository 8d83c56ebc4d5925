//! Criterion benchmarks of Gangway's hot paths (`cargo bench -p gangway-benches`): route
//! selection, event serialisation, frame encoding, channel fan-out to in-process recipients,
//! and the cluster wire format. This library only holds the shared fixtures.

use std::sync::Arc;

use gangway_broker::channels::Channels;
use gangway_broker::connection::Connection;
use gangway_broker::id::{ConnectionId, NodeTag};

/// A realistic chat message body.
pub const CHAT_BODY: &str = r#"{"action":"sendmessage","room":"lobby","data":{"text":"hello everyone, how is it going?","mentions":["alice","bob"],"ts":1705751700453}}"#;

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
