//! Channels, publish, broadcast and batch through the control API, with real clients.

use std::time::Duration;

use crate::support::*;
use futures_util::StreamExt;
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

const ECHO: &str = "[routes.\"$default\"]\nintegration = \"mock\"\n";

/// Connects `n` clients and returns them with their ids, in connection order.
async fn clients(node: &gangway::Node, n: usize) -> Vec<(Client, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(connect_with_id(node).await);
    }
    out
}

/// Asserts nothing arrives on `ws` for a short while.
async fn silent(ws: &mut Client) {
    if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
        panic!("unexpected message {m:?}");
    }
}

#[tokio::test]
async fn subscribe_publish_exclude_unsubscribe() {
    let node = node(ECHO).await;
    let api = Control::of(&node);
    let staged = api.stage("prod");
    let mut cs = clients(&node, 3).await;
    let ids: Vec<String> = cs.iter().map(|(_, id)| id.clone()).collect();
    for id in &ids[..2] {
        assert_eq!(staged.subscribe(id, "room:1").await.status, 204);
    }
    // Idempotent.
    assert_eq!(api.subscribe(&ids[0], "room:1").await.status, 204);
    assert_eq!(api.channel("room:1").await.json()["subscribers"], 2);

    let r = staged.publish("room:1", "", "hello room").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["recipients"], 2);
    assert_eq!(
        next_message(&mut cs[0].0).await,
        Message::text("hello room")
    );
    assert_eq!(
        next_message(&mut cs[1].0).await,
        Message::text("hello room")
    );
    silent(&mut cs[2].0).await;

    // exclude skips the sender; binary bodies arrive as binary frames.
    let r = api
        .publish(
            "room:1",
            &format!("?exclude={}", ids[0]),
            vec![0xffu8, 0xfe],
        )
        .await;
    assert_eq!(r.json()["recipients"], 1);
    assert_eq!(
        next_message(&mut cs[1].0).await,
        Message::binary(vec![0xffu8, 0xfe])
    );
    silent(&mut cs[0].0).await;

    assert_eq!(api.unsubscribe(&ids[1], "room:1").await.status, 204);
    let r = api.publish("room:1", "", "again").await;
    assert_eq!(r.json()["recipients"], 1);
    assert_eq!(next_message(&mut cs[0].0).await, Message::text("again"));
    silent(&mut cs[1].0).await;

    // A connection that leaves leaves its channels.
    let (ws0, _) = cs.remove(0);
    drop(ws0);
    eventually("cleanup", || {
        node.broker.local_subscriber_count("room:1") == 0
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn channel_errors() {
    let node = node(&format!("{ECHO}[limits]\nmax_channels_per_connection = 2\nmax_message_bytes = 100\nmax_frame_bytes = 100\n")).await;
    let api = Control::of(&node);
    let cs = clients(&node, 1).await;
    let id = &cs[0].1;
    // Unknown channel: 0 recipients, not an error.
    let r = api.publish("nobody", "", "x").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["recipients"], 0);
    assert_eq!(api.channel("nobody").await.json()["subscribers"], 0);
    // Bad names: 400 with a JSON error.
    for bad in ["has%20space", "%F0%9F%98%80", &"x".repeat(129)] {
        let r = api.publish(bad, "", "x").await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.error_type.as_deref(), Some("BadRequestException"));
        let j = r.json();
        assert!(
            j["message"].as_str().expect("message").contains("channel"),
            "{j}"
        );
        assert_eq!(api.subscribe(id, bad).await.status, 400, "{bad}");
    }
    // Oversize publish: 413; bad exclude: 400; gone connection: 410.
    assert_eq!(api.publish("a", "", vec![b'x'; 101]).await.status, 413);
    assert_eq!(api.publish("a", "?exclude=nope", "x").await.status, 400);
    let gone =
        gangway_broker::ConnectionId::generate(gangway_broker::NodeTag::of("x")).expect("rng");
    assert_eq!(api.subscribe(&gone.to_string(), "a").await.status, 410);
    // Per-connection channel limit.
    for ch in ["a", "b"] {
        assert_eq!(api.subscribe(id, ch).await.status, 204);
    }
    assert_eq!(api.subscribe(id, "c").await.status, 400);
    node.shutdown().await;
}

#[tokio::test]
async fn connect_answer_channels_are_live_before_the_first_message() {
    let node = node(
        "[routes.\"$connect\"]\nintegration = \"mock\"\nresponse = '{\"channels\": [\"news\", \"bad name\"]}'\n",
    )
    .await;
    let mut ws = connect(&node).await;
    // No message from the client, no subscribe call: the publish reaches it.
    let r = Control::of(&node).publish("news", "", "breaking").await;
    assert_eq!(r.json()["recipients"], 1);
    assert_eq!(next_message(&mut ws).await, Message::text("breaking"));
    node.shutdown().await;
}

#[tokio::test]
async fn broadcast_reaches_every_connection() {
    let node = node(ECHO).await;
    let api = Control::of(&node);
    let mut cs = clients(&node, 3).await;
    let r = api.stage("prod").broadcast("", "to all").await;
    assert_eq!(r.json()["recipients"], 3);
    for (ws, _) in &mut cs {
        assert_eq!(next_message(ws).await, Message::text("to all"));
    }
    let r = api
        .broadcast(&format!("?exclude={}", cs[0].1), "not you")
        .await;
    assert_eq!(r.json()["recipients"], 2);
    silent(&mut cs[0].0).await;
    node.shutdown().await;
}

#[tokio::test]
async fn batch_answers_one_result_per_item() {
    let node = node(&format!("{ECHO}[limits]\nmax_batch_items = 10\n")).await;
    let api = Control::of(&node);
    let mut cs = clients(&node, 2).await;
    let (a, b) = (cs[0].1.clone(), cs[1].1.clone());
    assert_eq!(api.subscribe(&b, "team").await.status, 204);
    let gone = gangway_broker::ConnectionId::generate(gangway_broker::NodeTag::of("x"))
        .expect("rng")
        .to_string();
    let body = serde_json::json!([
        {"connectionId": a, "data": "one"},
        {"connectionId": gone, "data": "two"},
        {"channel": "team", "data": {"json": true}},
        {"connectionId": a, "data": "/wA=", "base64": true},
        {"connectionId": "bad id", "data": "x"},
        {"data": "no target"},
        {"connectionId": a},
        {"channel": "team", "connectionId": a, "data": "both"},
        {"channel": "team", "data": "skip b", "exclude": b},
        7
    ]);
    let r = api.stage("prod").batch(body.to_string()).await;
    assert_eq!(r.status, 200);
    let results = r.json()["results"].clone();
    let statuses: Vec<i64> = results
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["status"].as_i64().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        vec![200, 410, 200, 200, 400, 400, 400, 400, 200, 400]
    );
    assert_eq!(results[1]["error"], "GoneException");
    assert_eq!(results[2]["recipients"], 1);
    assert_eq!(results[8]["recipients"], 0);
    assert_eq!(next_message(&mut cs[0].0).await, Message::text("one"));
    assert_eq!(
        next_message(&mut cs[0].0).await,
        Message::binary(vec![0xffu8, 0])
    );
    assert_eq!(
        next_message(&mut cs[1].0).await,
        Message::text(r#"{"json":true}"#)
    );

    // Whole-batch failures.
    assert_eq!(api.batch("[{").await.status, 400);
    assert_eq!(api.batch(r#"{"items": []}"#).await.status, 400);
    let many: Vec<_> = (0..11)
        .map(|_| serde_json::json!({"channel": "x", "data": "y"}))
        .collect();
    assert_eq!(
        api.batch(serde_json::to_string(&many).expect("json"))
            .await
            .status,
        413
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_each_get_every_message_once_in_order() {
    const CLIENTS: usize = 1000;
    const MESSAGES: usize = 20;
    let node = node(
        "[routes.\"$connect\"]\nintegration = \"mock\"\nresponse = '{\"channels\": [\"fan\"]}'\n",
    )
    .await;
    let url = ws_url(&node, "/");
    let mut connecting = Vec::new();
    for _ in 0..CLIENTS {
        let url = url.clone();
        connecting.push(tokio::spawn(async move {
            tokio_tungstenite::connect_async(url)
                .await
                .expect("connect")
                .0
        }));
    }
    let mut sockets = Vec::new();
    for c in connecting {
        sockets.push(c.await.expect("join"));
    }
    eventually("all subscribed", || {
        node.broker.local_subscriber_count("fan") == CLIENTS
    })
    .await;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                while got.len() < MESSAGES {
                    match tokio::time::timeout(PATIENCE, ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => got.push(t.to_string()),
                        Ok(Some(Ok(_))) => {}
                        other => panic!("reader stopped early: {other:?}"),
                    }
                }
                // Nothing more (no duplicates).
                if let Ok(Some(Ok(Message::Text(t)))) =
                    tokio::time::timeout(Duration::from_millis(300), ws.next()).await
                {
                    panic!("extra message {t}");
                }
                got
            })
        })
        .collect();
    let api = Control::of(&node);
    for n in 0..MESSAGES {
        let r = api.publish("fan", "", format!("msg-{n:03}")).await;
        assert_eq!(r.json()["recipients"], CLIENTS);
    }
    let expected: Vec<String> = (0..MESSAGES).map(|n| format!("msg-{n:03}")).collect();
    for r in readers {
        assert_eq!(r.await.expect("reader"), expected);
    }
    node.shutdown().await;
}

#[tokio::test]
async fn readiness_turns_503_while_draining() {
    let node = node(&format!("{ECHO}[limits]\nshutdown_grace_secs = 3\n")).await;
    let api = Control::of(&node);
    assert_eq!(api.request(Method::GET, "/readyz", "").await.status, 200);
    // A raw client that never answers the close frame keeps the drain busy for a moment.
    let mut raw = tokio::net::TcpStream::connect(node.websocket_addr)
        .await
        .expect("tcp");
    tokio::io::AsyncWriteExt::write_all(
        &mut raw,
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    eventually("connected", || node.broker.connection_count() == 1).await;
    let broker = node.broker.clone();
    let drain = tokio::spawn(node.shutdown());
    eventually("draining", || broker.is_shutting_down()).await;
    let r = api.request(Method::GET, "/readyz", "").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["reason"], "draining");
    drain.await.expect("join");
    drop(raw);
}

#[tokio::test]
async fn openapi_lists_every_route_the_server_answers() {
    let node = node(ECHO).await;
    let doc = Control::of(&node)
        .request(Method::GET, "/openapi.json", "")
        .await
        .json();
    assert_eq!(doc["openapi"], "3.0.3");
    let routes = gangway_control_api::routes::all_routes();
    assert!(routes.len() >= 22);
    for (method, path, route) in routes {
        let op = &doc["paths"][&path][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {path} missing from openapi.json");
        assert!(op["operationId"]
            .as_str()
            .expect("operationId")
            .starts_with(route.op.name()));
    }
    node.shutdown().await;
}
