//! Channels, publish, broadcast and batch through the control API, with real clients.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use support::*;
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
    let base = control_url(&node);
    let c = http();
    let mut cs = clients(&node, 3).await;
    let ids: Vec<String> = cs.iter().map(|(_, id)| id.clone()).collect();
    for id in &ids[..2] {
        let r = c
            .put(format!("{base}/prod/@connections/{id}/channels/room:1"))
            .send()
            .await
            .expect("put");
        assert_eq!(r.status(), 204);
    }
    // Idempotent.
    let r = c
        .put(format!("{base}/@connections/{}/channels/room:1", ids[0]))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 204);
    let r = c
        .get(format!("{base}/@channels/room:1"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["subscribers"],
        2
    );

    let r = c
        .post(format!("{base}/prod/@channels/room:1"))
        .body("hello room")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["recipients"],
        2
    );
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
    let r = c
        .post(format!("{base}/@channels/room:1?exclude={}", ids[0]))
        .body(vec![0xffu8, 0xfe])
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["recipients"],
        1
    );
    assert_eq!(
        next_message(&mut cs[1].0).await,
        Message::binary(vec![0xffu8, 0xfe])
    );
    silent(&mut cs[0].0).await;

    let r = c
        .delete(format!("{base}/@connections/{}/channels/room:1", ids[1]))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let r = c
        .post(format!("{base}/@channels/room:1"))
        .body("again")
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["recipients"],
        1
    );
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
    let base = control_url(&node);
    let c = http();
    let cs = clients(&node, 1).await;
    let id = &cs[0].1;
    // Unknown channel: 0 recipients, not an error.
    let r = c
        .post(format!("{base}/@channels/nobody"))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["recipients"],
        0
    );
    let r = c
        .get(format!("{base}/@channels/nobody"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["subscribers"],
        0
    );
    // Bad names: 400 with a JSON error.
    for bad in ["has%20space", "%F0%9F%98%80", &"x".repeat(129)] {
        let r = c
            .post(format!("{base}/@channels/{bad}"))
            .body("x")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.headers()["x-amzn-errortype"], "BadRequestException");
        let j: serde_json::Value = r.json().await.expect("json");
        assert!(
            j["message"].as_str().expect("message").contains("channel"),
            "{j}"
        );
        let r = c
            .put(format!("{base}/@connections/{id}/channels/{bad}"))
            .send()
            .await
            .expect("put");
        assert_eq!(r.status(), 400, "{bad}");
    }
    // Oversize publish: 413; bad exclude: 400; gone connection: 410.
    let r = c
        .post(format!("{base}/@channels/a"))
        .body(vec![b'x'; 101])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    let r = c
        .post(format!("{base}/@channels/a?exclude=nope"))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let gone =
        gangway_broker::ConnectionId::generate(gangway_broker::NodeTag::of("x")).expect("rng");
    let r = c
        .put(format!("{base}/@connections/{gone}/channels/a"))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 410);
    // Per-connection channel limit.
    for ch in ["a", "b"] {
        let r = c
            .put(format!("{base}/@connections/{id}/channels/{ch}"))
            .send()
            .await
            .expect("put");
        assert_eq!(r.status(), 204);
    }
    let r = c
        .put(format!("{base}/@connections/{id}/channels/c"))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
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
    let r = http()
        .post(format!("{}/@channels/news", control_url(&node)))
        .body("breaking")
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["recipients"],
        1
    );
    assert_eq!(next_message(&mut ws).await, Message::text("breaking"));
    node.shutdown().await;
}

#[tokio::test]
async fn broadcast_reaches_every_connection() {
    let node = node(ECHO).await;
    let mut cs = clients(&node, 3).await;
    let base = control_url(&node);
    let r = http()
        .post(format!("{base}/prod/@broadcast"))
        .body("to all")
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["recipients"],
        3
    );
    for (ws, _) in &mut cs {
        assert_eq!(next_message(ws).await, Message::text("to all"));
    }
    let r = http()
        .post(format!("{base}/@broadcast?exclude={}", cs[0].1))
        .body("not you")
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["recipients"],
        2
    );
    silent(&mut cs[0].0).await;
    node.shutdown().await;
}

#[tokio::test]
async fn batch_answers_one_result_per_item() {
    let node = node(&format!("{ECHO}[limits]\nmax_batch_items = 10\n")).await;
    let base = control_url(&node);
    let c = http();
    let mut cs = clients(&node, 2).await;
    let (a, b) = (cs[0].1.clone(), cs[1].1.clone());
    c.put(format!("{base}/@connections/{b}/channels/team"))
        .send()
        .await
        .expect("put");
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
    let r = c
        .post(format!("{base}/prod/@batch"))
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let results = r.json::<serde_json::Value>().await.expect("json")["results"].clone();
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
    let r = c
        .post(format!("{base}/@batch"))
        .body("[{")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let r = c
        .post(format!("{base}/@batch"))
        .body(r#"{"items": []}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let many: Vec<_> = (0..11)
        .map(|_| serde_json::json!({"channel": "x", "data": "y"}))
        .collect();
    let r = c
        .post(format!("{base}/@batch"))
        .json(&many)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
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
    let c = http();
    let base = control_url(&node);
    for n in 0..MESSAGES {
        let r = c
            .post(format!("{base}/@channels/fan"))
            .body(format!("msg-{n:03}"))
            .send()
            .await
            .expect("publish");
        assert_eq!(
            r.json::<serde_json::Value>().await.expect("json")["recipients"],
            CLIENTS
        );
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
    let base = control_url(&node);
    let r = http()
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
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
    let r = http()
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["reason"],
        "draining"
    );
    drain.await.expect("join");
    drop(raw);
}

#[tokio::test]
async fn openapi_lists_every_route_the_server_answers() {
    let node = node(ECHO).await;
    let doc: serde_json::Value = http()
        .get(format!("{}/openapi.json", control_url(&node)))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
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
