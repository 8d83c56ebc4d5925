//! The AWS-compatible `@connections` API against real clients.

mod support;

use support::*;
use tokio_tungstenite::tungstenite::Message;

const ECHO: &str = "[routes.\"$default\"]\nintegration = \"mock\"\n";

/// Connects the node's only client and learns its id from the registry.
async fn connected(node: &gangway::Node) -> (Client, String) {
    let ws = connect(node).await;
    eventually("registered", || node.broker.connection_count() == 1).await;
    let id = node
        .broker
        .connection_ids()
        .pop()
        .expect("an open connection");
    (ws, id)
}

#[tokio::test]
async fn post_get_delete_round_trip() {
    let node = node(ECHO).await;
    let (mut ws, id) = connected(&node).await;
    let base = control_url(&node);
    let c = http();

    // POST: 200, empty body, exact bytes as a text frame.
    let r = c
        .post(format!("{base}/prod/@connections/{id}"))
        .body("héllo")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-amzn-requestid").is_some());
    assert!(r.bytes().await.expect("body").is_empty());
    assert_eq!(next_message(&mut ws).await, Message::text("héllo"));

    // Non-UTF-8 bytes arrive as a binary frame; %40 and no stage work too.
    let r = c
        .post(format!("{base}/%40connections/{id}"))
        .body(vec![0xffu8, 0, 1])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(
        next_message(&mut ws).await,
        Message::binary(vec![0xffu8, 0, 1])
    );

    // GET: RFC 3339 times and the identity.
    let r = c
        .get(format!("{base}/prod/%40connections/{id}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.expect("json");
    let connected_at = j["connectedAt"].as_str().expect("connectedAt");
    assert!(
        connected_at.ends_with('Z') && connected_at.contains('T'),
        "{connected_at}"
    );
    assert!(j["lastActiveAt"].is_string());
    assert_eq!(j["identity"]["sourceIp"], "127.0.0.1");

    // DELETE: 204, the client sees close 1000, then the id is gone.
    let r = c
        .delete(format!("{base}/prod/@connections/{id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    assert_eq!(expect_close(&mut ws).await.0, 1000);
    eventually("unregistered", || node.broker.connection_count() == 0).await;
    let r = c
        .post(format!("{base}/prod/@connections/{id}"))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 410);
    assert_eq!(r.headers()["x-amzn-errortype"], "GoneException");
    let j: serde_json::Value = r.json().await.expect("json");
    assert!(j["message"].is_string());
    node.shutdown().await;
}

#[tokio::test]
async fn delete_with_code_and_reason() {
    let node = node(ECHO).await;
    let (mut ws, id) = connected(&node).await;
    let base = control_url(&node);
    let c = http();
    for bad in ["code=1001", "code=2999", "code=5000", "code=abc"] {
        let r = c
            .delete(format!("{base}/@connections/{id}?{bad}"))
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.headers()["x-amzn-errortype"], "BadRequestException");
    }
    let long = "x".repeat(124);
    let r = c
        .delete(format!("{base}/@connections/{id}?code=4000&reason={long}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 400);
    let r = c
        .delete(format!(
            "{base}/@connections/{id}?code=4000&reason=kicked%20out"
        ))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    assert_eq!(
        expect_close(&mut ws).await,
        (4000, "kicked out".to_string())
    );
    node.shutdown().await;
}

#[tokio::test]
async fn bad_ids_and_paths() {
    let node = node(ECHO).await;
    let base = control_url(&node);
    let c = http();
    // Malformed ids: 400 BadRequestException.
    for id in ["abc", "R0oXAdfD0kwCH6w%3D", "%FF%FE"] {
        let r = c
            .post(format!("{base}/@connections/{id}"))
            .body("x")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 400, "{id}");
        assert_eq!(r.headers()["x-amzn-errortype"], "BadRequestException");
        assert!(r.headers().get("x-amzn-requestid").is_some());
    }
    // A well-formed id nobody holds: 410.
    let unknown = gangway_broker::ConnectionId::generate(gangway_broker::NodeTag::of("x"))
        .expect("rng")
        .to_string();
    for method in [
        reqwest::Method::POST,
        reqwest::Method::GET,
        reqwest::Method::DELETE,
    ] {
        let r = c
            .request(
                method.clone(),
                format!("{base}/prod/@connections/{unknown}"),
            )
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), 410, "{method}");
        assert_eq!(r.headers()["x-amzn-errortype"], "GoneException");
    }
    // Another stage: 403 as on AWS; unknown path: 404; wrong method: 405 — all JSON.
    let r = c
        .get(format!("{base}/dev/@connections/{unknown}"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-amzn-errortype"], "ForbiddenException");
    let r = c
        .get(format!("{base}/nothing/here"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 404);
    let _: serde_json::Value = r.json().await.expect("json error body");
    let r = c
        .put(format!("{base}/@connections/{unknown}"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 405);
    let r = c.get(format!("{base}/healthz")).send().await.expect("req");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-amzn-requestid").is_some());
    node.shutdown().await;
}

#[tokio::test]
async fn oversize_push_is_413() {
    let node = node(&format!(
        "{ECHO}[limits]\nmax_message_bytes = 1000\nmax_frame_bytes = 1000\n"
    ))
    .await;
    let (mut ws, id) = connected(&node).await;
    let base = control_url(&node);
    let r = http()
        .post(format!("{base}/@connections/{id}"))
        .body(vec![b'a'; 1001])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["x-amzn-errortype"], "PayloadTooLargeException");
    let r = http()
        .post(format!("{base}/@connections/{id}"))
        .body(vec![b'a'; 1000])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(next_message(&mut ws).await.len(), 1000);
    node.shutdown().await;
}

#[tokio::test]
async fn bearer_tokens_are_required_when_configured() {
    let node = node(&format!("{ECHO}[control]\ntokens = [\"token-one-1234\"]\n")).await;
    let (mut ws, id) = connected(&node).await;
    let url = format!("{}/@connections/{id}", control_url(&node));
    let c = http();
    let r = c.post(&url).body("x").send().await.expect("post");
    assert_eq!(r.status(), 401);
    let r = c
        .post(&url)
        .bearer_auth("wrong-token")
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-amzn-errortype"], "ForbiddenException");
    let r = c
        .post(&url)
        .header("Authorization", "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=00")
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        403,
        "an unverifiable signature is never accepted"
    );
    let r = c
        .post(&url)
        .bearer_auth("token-one-1234")
        .body("ok")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(next_message(&mut ws).await, Message::text("ok"));
    // Probes need no credentials.
    let r = c
        .get(format!("{}/healthz", control_url(&node)))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    node.shutdown().await;
}

#[tokio::test]
async fn full_send_queue_answers_429_and_disconnects_the_slow_client() {
    let node = node(&format!(
        "{ECHO}[limits]\nmax_message_bytes = 16384\nmax_frame_bytes = 16384\nsend_queue_max_bytes = 65536\nwrite_timeout_secs = 1\n"
    ))
    .await;
    // A client that never reads: the kernel buffers fill, then the outbox.
    let (ws, id) = connected(&node).await;
    let payload = bytes::Bytes::from(vec![b'x'; 16384]);
    let mut limited = false;
    for _ in 0..20_000 {
        match node.broker.post_to_connection(&id, payload.clone()).await {
            Ok(()) => tokio::task::yield_now().await,
            Err(gangway_broker::ConnectionError::LimitExceeded) => {
                limited = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(limited, "the queue never filled");
    // Through HTTP, the same connection now answers 429 or (once closing) 410.
    let r = http()
        .post(format!("{}/@connections/{id}", control_url(&node)))
        .body("x")
        .send()
        .await
        .expect("post");
    assert!(r.status() == 410 || r.status() == 429, "{}", r.status());
    eventually("slow consumer disconnected", || {
        node.broker.connection_count() == 0
    })
    .await;
    let metrics = node.broker.metrics().render();
    assert!(
        metrics.contains("gangway_outbound_dropped_total{reason=\"queue_full\"}"),
        "{metrics}"
    );
    drop(ws);
    node.shutdown().await;
}

#[tokio::test]
async fn metrics_are_served() {
    let node = node(ECHO).await;
    let (_ws, id) = connected(&node).await;
    let c = http();
    c.post(format!("{}/@connections/{id}", control_url(&node)))
        .body("x")
        .send()
        .await
        .expect("post");
    let text = c
        .get(format!("{}/metrics", control_url(&node)))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(text.contains("gangway_connections 1"), "{text}");
    assert!(
        text.contains(
            "gangway_control_requests_total{operation=\"PostToConnection\",status=\"200\"} 1"
        ),
        "{text}"
    );
    node.shutdown().await;
}
