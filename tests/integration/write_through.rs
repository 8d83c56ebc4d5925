//! Write-through fan-out: quiet publishes sent straight to the sockets by the publisher, mixed
//! with everything else a session writes (pongs, pings, queued frames, partial writes). Every
//! test runs on both send paths (`[limits] send_path = "uring"` and `"sendmsg"`).

use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

/// Publishes this far apart stay far below `write_through::MAX_RATE`: each may write through.
const SPACING: Duration = Duration::from_millis(40);

/// A `[limits]` section choosing `path`, with `rest` (more `[limits]` keys).
fn limits(path: &str, rest: &str) -> String {
    format!("[limits]\nsend_path = \"{path}\"\n{rest}")
}

/// Runs `$body(path)` once on each send path, as `$name::uring` and `$name::sendmsg`.
macro_rules! on_both_paths {
    ($($name:ident => $body:ident;)*) => {$(
        mod $name {
            #[tokio::test]
            async fn uring() {
                super::$body("uring").await
            }
            #[tokio::test]
            async fn sendmsg() {
                super::$body("sendmsg").await
            }
        }
    )*};
}

on_both_paths! {
    quiet_publishes_write_through_and_keep_the_connection_active => quiet_publishes;
    pings_both_ways_between_write_through_publishes_keep_the_stream_whole => pings_both_ways;
    a_full_socket_turns_write_through_into_queueing_without_losing_a_byte => full_socket;
    write_through_can_be_turned_off => turned_off;
    sparse_broadcasts_reach_many_subscribers_once_in_order => many_subscribers;
    the_send_path_in_use_is_reported => path_reported;
}

/// Connects a client and subscribes it to `channel`; returns it with its id.
async fn subscriber(node: &gangway::Node, channel: &str) -> (Client, String) {
    let (ws, id) = connect_with_id(node).await;
    let r = http()
        .put(format!(
            "{}/@connections/{id}/channels/{channel}",
            control_url(node)
        ))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 204);
    (ws, id)
}

async fn publish(node: &gangway::Node, channel: &str, body: String) {
    let r = http()
        .post(format!("{}/@channels/{channel}", control_url(node)))
        .body(body)
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), 200);
}

fn written_through(node: &gangway::Node) -> u64 {
    node.broker.metrics().messages_written_through_total.get()
}

/// The next frame of any kind, pings and pongs included.
async fn next_frame(ws: &mut Client) -> Message {
    tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("frame in time")
        .expect("stream open")
        .expect("valid frame")
}

/// Reads data messages, skipping control frames.
async fn next_text(ws: &mut Client) -> String {
    loop {
        match next_frame(ws).await {
            Message::Text(t) => return t.to_string(),
            Message::Binary(b) => return String::from_utf8_lossy(&b).into_owned(),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(c) => panic!("closed: {c:?}"),
        }
    }
}

async fn quiet_publishes(path: &str) {
    let node = node(&limits(path, "idle_timeout_secs = 2\n")).await;
    let (mut ws, _) = subscriber(&node, "news").await;
    // 10 publishes over ~4 s: longer than the idle timeout, which only this traffic resets.
    for i in 0..10 {
        publish(&node, "news", format!("m{i}")).await;
        assert_eq!(next_text(&mut ws).await, format!("m{i}"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        written_through(&node) >= 9,
        "quiet publishes should write through, counted {}",
        written_through(&node)
    );
    // Still open: a ping is answered.
    ws.send(Message::Ping("still there".into()))
        .await
        .expect("ping");
    loop {
        match next_frame(&mut ws).await {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"still there");
                break;
            }
            Message::Close(c) => panic!("closed as idle: {c:?}"),
            _ => {}
        }
    }
}

async fn pings_both_ways(path: &str) {
    let node = node(&limits(path, "ping_interval_secs = 1\n")).await;
    let (mut ws, _) = subscriber(&node, "mixed").await;
    let (mut pongs, mut pings) = (0, 0);
    for i in 0..40 {
        if i % 3 == 0 {
            // Each ping makes tungstenite owe a pong, which must leave before later frames.
            ws.send(Message::Ping(format!("p{i}").into_bytes().into()))
                .await
                .expect("ping");
        }
        publish(&node, "mixed", format!("{i}:{}", "x".repeat(i * 7))).await;
        loop {
            match next_frame(&mut ws).await {
                Message::Text(t) => {
                    assert_eq!(t.as_str(), format!("{i}:{}", "x".repeat(i * 7)));
                    break;
                }
                Message::Pong(_) => pongs += 1,
                Message::Ping(_) => pings += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        tokio::time::sleep(SPACING).await;
    }
    // Collect the pongs still in flight.
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
        match m {
            Message::Pong(_) => pongs += 1,
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pongs, 14, "one pong per ping");
    assert!(pings >= 1, "server pings arrived ({pings})");
    assert!(written_through(&node) > 0);
}

async fn full_socket(path: &str) {
    let node = node(&limits(
        path,
        "max_message_bytes = 131072\nsend_queue_max_bytes = 67108864\nwrite_timeout_secs = 30\n",
    ))
    .await;
    let (mut ws, _) = subscriber(&node, "bulk").await;
    // ~12 MiB while the client reads nothing: the socket buffers fill, write-throughs turn
    // partial or find no room, and the rest queues behind them.
    let n = 96;
    let body = |i: usize| {
        let c = char::from(b'a' + (i % 26) as u8);
        format!("{i:04}{}", c.to_string().repeat(128 * 1024 - 8))
    };
    for i in 0..n {
        publish(&node, "bulk", body(i)).await;
        tokio::time::sleep(Duration::from_millis(6)).await;
    }
    for i in 0..n {
        let got = next_text(&mut ws).await;
        assert_eq!(got.len(), body(i).len(), "message {i} length");
        assert!(got == body(i), "message {i} intact and in order");
    }
    let sent = node
        .broker
        .metrics()
        .messages_sent_total
        .with_label_values(&["publish"])
        .get();
    assert_eq!(sent, n as u64);
    assert!(written_through(&node) > 0, "some publishes wrote through");
    assert!(
        written_through(&node) < sent,
        "a full socket made some publishes queue ({} of {sent} wrote through)",
        written_through(&node)
    );
}

async fn turned_off(path: &str) {
    let node = node(&limits(path, "write_through_max_recipients = 0\n")).await;
    let (mut ws, _) = subscriber(&node, "off").await;
    for i in 0..3 {
        publish(&node, "off", format!("q{i}")).await;
        assert_eq!(next_text(&mut ws).await, format!("q{i}"));
        tokio::time::sleep(SPACING).await;
    }
    assert_eq!(written_through(&node), 0);
}

/// More subscribers than one `io_uring` batch holds (`conn::uring::BATCH`), and enough for a
/// write-through to be spread over two threads where the machine has two cores
/// (`write_through::MIN_PER_LANE` each), some of them busy with their own traffic, one
/// excluded: every other subscriber gets every broadcast exactly once, in order, and quiet
/// broadcasts write through.
async fn many_subscribers(path: &str) {
    let node = node(&limits(path, "")).await;
    let n = 2_100; // 2 × write_through::MIN_PER_LANE (1 024), and some
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(connect_with_id(&node).await);
    }
    let excluded = clients[7].1.clone();
    let rounds = 12;
    for r in 0..rounds {
        // A few clients ping while the broadcast goes out: their sessions write pongs, so
        // their outboxes may be held or locked when the fan-out reaches them.
        for (ws, _) in clients.iter_mut().step_by(150) {
            ws.send(Message::Ping(format!("p{r}").into_bytes().into()))
                .await
                .expect("ping");
        }
        let resp = http()
            .post(format!(
                "{}/@broadcast?exclude={excluded}",
                control_url(&node)
            ))
            .body(format!("b{r}"))
            .send()
            .await
            .expect("broadcast");
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(SPACING).await;
    }
    for (i, (ws, _)) in clients.iter_mut().enumerate() {
        if i == 7 {
            continue;
        }
        for r in 0..rounds {
            assert_eq!(
                next_text(ws).await,
                format!("b{r}"),
                "client {i}, broadcast {r}"
            );
        }
    }
    // The excluded client got none of them: the first data frame after a marker push is the
    // marker.
    let r = http()
        .post(format!("{}/@connections/{excluded}", control_url(&node)))
        .body("marker")
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), 200);
    assert_eq!(next_text(&mut clients[7].0).await, "marker");
    let sent = node
        .broker
        .metrics()
        .messages_sent_total
        .with_label_values(&["broadcast"])
        .get();
    assert_eq!(sent, (rounds * (n - 1)) as u64);
    assert!(
        written_through(&node) >= sent * 9 / 10,
        "quiet broadcasts write through ({} of {sent})",
        written_through(&node)
    );
}

/// `gangway_send_path_uring` says which path write-through fan-outs take.
async fn path_reported(path: &str) {
    let node = node(&limits(path, "")).await;
    let expected = i64::from(path == "uring");
    assert_eq!(node.broker.metrics().send_path_uring.get(), expected);
    let text = metrics_text(&node).await;
    assert!(
        text.contains(&format!("gangway_send_path_uring {expected}")),
        "metrics name the path"
    );
}
