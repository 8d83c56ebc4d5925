//! The AWS-compatible `@connections` API against real clients.

use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

const ECHO: &str = "[routes.\"$default\"]\nintegration = \"mock\"\n";

#[tokio::test]
async fn post_get_delete_round_trip() {
    let node = node(ECHO).await;
    let (mut ws, id) = connect_with_id(&node).await;
    let api = Control::of(&node);
    let prod = api.stage("prod");

    // POST: 200, empty body, exact bytes as a text frame.
    let r = prod.post(&id, "héllo").await;
    assert_eq!(r.status, 200);
    assert!(r.request_id.is_some());
    assert!(r.body.is_empty());
    assert_eq!(next_message(&mut ws).await, Message::text("héllo"));

    // Non-UTF-8 bytes arrive as a binary frame; %40 and no stage work too.
    let r = api
        .request(
            Method::POST,
            &format!("/%40connections/{id}"),
            vec![0xffu8, 0, 1],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        next_message(&mut ws).await,
        Message::binary(vec![0xffu8, 0, 1])
    );

    // GET: RFC 3339 times and the identity.
    let r = prod
        .request(Method::GET, &format!("/%40connections/{id}"), "")
        .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    let connected_at = j["connectedAt"].as_str().expect("connectedAt");
    assert!(
        connected_at.ends_with('Z') && connected_at.contains('T'),
        "{connected_at}"
    );
    assert!(j["lastActiveAt"].is_string());
    assert_eq!(j["identity"]["sourceIp"], "127.0.0.1");

    // DELETE: 204, the client sees close 1000, then the id is gone.
    assert_eq!(prod.delete(&id, "").await.status, 204);
    assert_eq!(expect_close(&mut ws).await.0, 1000);
    eventually("unregistered", || node.broker.connection_count() == 0).await;
    let r = prod.post(&id, "x").await;
    assert_eq!(r.status, 410);
    assert_eq!(r.error_type.as_deref(), Some("GoneException"));
    assert!(r.json()["message"].is_string());
    node.shutdown().await;
}

#[tokio::test]
async fn delete_with_code_and_reason() {
    let node = node(ECHO).await;
    let (mut ws, id) = connect_with_id(&node).await;
    let api = Control::of(&node);
    for bad in ["code=1001", "code=2999", "code=5000", "code=abc"] {
        let r = api.delete(&id, &format!("?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.error_type.as_deref(), Some("BadRequestException"));
    }
    let long = "x".repeat(124);
    let r = api.delete(&id, &format!("?code=4000&reason={long}")).await;
    assert_eq!(r.status, 400);
    let r = api.delete(&id, "?code=4000&reason=kicked%20out").await;
    assert_eq!(r.status, 204);
    assert_eq!(
        expect_close(&mut ws).await,
        (4000, "kicked out".to_string())
    );
    node.shutdown().await;
}

#[tokio::test]
async fn bad_ids_and_paths() {
    let node = node(ECHO).await;
    let api = Control::of(&node);
    // Malformed ids: 400 BadRequestException.
    for id in ["abc", "R0oXAdfD0kwCH6w%3D", "%FF%FE"] {
        let r = api.post(id, "x").await;
        assert_eq!(r.status, 400, "{id}");
        assert_eq!(r.error_type.as_deref(), Some("BadRequestException"));
        assert!(r.request_id.is_some());
    }
    // A well-formed id nobody holds: 410.
    let unknown = gangway_broker::ConnectionId::generate(gangway_broker::NodeTag::of("x"))
        .expect("rng")
        .to_string();
    for method in [Method::POST, Method::GET, Method::DELETE] {
        let r = api
            .stage("prod")
            .request(method.clone(), &format!("/@connections/{unknown}"), "")
            .await;
        assert_eq!(r.status, 410, "{method}");
        assert_eq!(r.error_type.as_deref(), Some("GoneException"));
    }
    // Another stage: 403 as on AWS; unknown path: 404; wrong method: 405 — all JSON.
    let r = api.stage("dev").get(&unknown).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_type.as_deref(), Some("ForbiddenException"));
    let r = api.request(Method::GET, "/nothing/here", "").await;
    assert_eq!(r.status, 404);
    let _ = r.json();
    let r = api
        .request(Method::PUT, &format!("/@connections/{unknown}"), "")
        .await;
    assert_eq!(r.status, 405);
    let r = api.request(Method::GET, "/healthz", "").await;
    assert_eq!(r.status, 200);
    assert!(r.request_id.is_some());
    node.shutdown().await;
}

#[tokio::test]
async fn oversize_push_is_413() {
    let node = node(&format!(
        "{ECHO}[limits]\nmax_message_bytes = 1000\nmax_frame_bytes = 1000\n"
    ))
    .await;
    let (mut ws, id) = connect_with_id(&node).await;
    let api = Control::of(&node);
    let r = api.post(&id, vec![b'a'; 1001]).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error_type.as_deref(), Some("PayloadTooLargeException"));
    assert_eq!(api.post(&id, vec![b'a'; 1000]).await.status, 200);
    assert_eq!(next_message(&mut ws).await.len(), 1000);
    node.shutdown().await;
}

#[tokio::test]
async fn bearer_tokens_are_required_when_configured() {
    let node = node(&format!("{ECHO}[control]\ntokens = [\"token-one-1234\"]\n")).await;
    let (mut ws, id) = connect_with_id(&node).await;
    let api = Control::of(&node);
    assert_eq!(api.post(&id, "x").await.status, 401);
    let r = api.bearer("wrong-token").post(&id, "x").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_type.as_deref(), Some("ForbiddenException"));
    let r = http()
        .post(format!("{}/@connections/{id}", control_url(&node)))
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
    assert_eq!(
        api.bearer("token-one-1234").post(&id, "ok").await.status,
        200
    );
    assert_eq!(next_message(&mut ws).await, Message::text("ok"));
    // Probes need no credentials.
    assert_eq!(api.request(Method::GET, "/healthz", "").await.status, 200);
    node.shutdown().await;
}

#[tokio::test]
async fn full_send_queue_answers_429_and_disconnects_the_slow_client() {
    let node = node(&format!(
        "{ECHO}[limits]\nmax_message_bytes = 16384\nmax_frame_bytes = 16384\nsend_queue_max_bytes = 65536\nwrite_timeout_secs = 1\n"
    ))
    .await;
    // A client that never reads: the kernel buffers fill, then the outbox.
    let (ws, id) = connect_with_id(&node).await;
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
    let status = Control::of(&node).post(&id, "x").await.status;
    assert!(status == 410 || status == 429, "{status}");
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
    let (_ws, id) = connect_with_id(&node).await;
    let api = Control::of(&node);
    api.post(&id, "x").await;
    let text = api.request(Method::GET, "/metrics", "").await.body;
    assert!(text.contains("gangway_connections 1"), "{text}");
    assert!(
        text.contains(
            "gangway_control_requests_total{operation=\"PostToConnection\",status=\"200\"} 1"
        ),
        "{text}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn the_node_description_peers_ask_for_needs_credentials() {
    let node = node(&format!("{ECHO}[control]\ntokens = [\"token-one-1234\"]\n")).await;
    let api = Control::of(&node);
    assert_eq!(api.request(Method::GET, "/@node", "").await.status, 401);
    assert_eq!(
        api.bearer("wrong-token")
            .request(Method::GET, "/@node", "")
            .await
            .status,
        403
    );
    let r = api
        .bearer("token-one-1234")
        .request(Method::GET, "/prod/@node", "")
        .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["cluster"], false);
    assert_eq!(j["redis"], "none");
    assert_eq!(j["fenced"], false);
    node.shutdown().await;
}

// Issue 12: an operator (and the walkthrough) finds connection ids without a backend.
#[tokio::test]
async fn connections_are_listed_a_page_at_a_time() {
    let node = node(&format!("{ECHO}[control]\ntokens = [\"list-token-1\"]\n")).await;
    let anonymous = Control::of(&node);
    let api = anonymous.bearer("list-token-1");
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (ws, id) = connect_with_id(&node).await;
        clients.push(ws);
        ids.push(id);
    }
    assert_eq!(
        api.request(
            Method::PUT,
            &format!("/@connections/{}/channels/news", ids[0]),
            ""
        )
        .await
        .status,
        204
    );
    // Credentials are required, like every other @connections call.
    assert_eq!(
        anonymous
            .request(Method::GET, "/@connections", "")
            .await
            .status,
        401
    );
    let all = api.stage("prod").list_connections(2).await;
    let mut listed: Vec<String> = all
        .iter()
        .map(|i| i["connectionId"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(listed.len(), 5, "{all:?}");
    listed.sort();
    listed.dedup();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed, expected);
    let first = all
        .iter()
        .find(|i| i["connectionId"] == ids[0].as_str())
        .expect("listed");
    assert_eq!(first["channels"], serde_json::json!(["news"]));
    assert_eq!(first["identity"]["sourceIp"], "127.0.0.1");
    assert!(first["connectedAt"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(first["lastActiveAt"].is_string());
    // One page holds everything: no cursor.
    let j = api.request(Method::GET, "/@connections", "").await.json();
    assert_eq!(j["items"].as_array().map(Vec::len), Some(5));
    assert!(j.get("nextCursor").is_none());
    // Bad limits and cursors are refused with the reason.
    for bad in ["limit=0", "limit=1001", "limit=x", "cursor=nope"] {
        let r = api
            .request(Method::GET, &format!("/@connections?{bad}"), "")
            .await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.error_type.as_deref(), Some("BadRequestException"));
    }
    // Closed connections leave the list.
    drop(clients);
    eventually("closed", || node.broker.connection_count() == 0).await;
    assert!(api.list_connections(10).await.is_empty());
    node.shutdown().await;
}

// Issue 13, item 4: a token bucket per credential; a forged SigV4 signature cannot spend a
// key's budget (charged only after the body verified); probes are never limited.
#[tokio::test]
async fn each_credential_has_a_request_budget() {
    let node = node(&format!(
        "{ECHO}[control]\ntokens = [\"token-aaaaaa\", \"token-bbbbbb\"]\n\
         rate_per_credential = 1\nburst_per_credential = 2\n\
         [[control.aws_credentials]]\naccess_key_id = \"AKIDBUDGET\"\nsecret_access_key = \"budget-secret\"\n"
    ))
    .await;
    let api = Control::of(&node);
    let a = api.bearer("token-aaaaaa");
    for _ in 0..2 {
        assert_eq!(
            a.request(Method::GET, "/@connections", "").await.status,
            200
        );
    }
    let r = a.request(Method::GET, "/@connections", "").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_type.as_deref(), Some("LimitExceededException"));
    // Another credential has its own budget; probes are not limited.
    let b = api.bearer("token-bbbbbb");
    assert_eq!(
        b.request(Method::GET, "/@connections", "").await.status,
        200
    );
    assert_eq!(api.request(Method::GET, "/healthz", "").await.status, 200);

    // SigV4: three forged requests for the key (403 each) spend nothing.
    let addr = node.control_addr.to_string();
    let signed = |secret: &str| {
        let credential = gangway_control_api::config::AwsCredential {
            access_key_id: "AKIDBUDGET".into(),
            secret_access_key: secret.into(),
        };
        gangway_control_api::auth::sigv4::sign(
            &credential,
            "GET",
            &addr,
            "/@connections",
            b"",
            chrono::Utc::now(),
        )
    };
    let send = |(authorization, date): (String, String)| {
        let url = format!("http://{addr}/@connections");
        async move {
            http()
                .get(url)
                .header("authorization", authorization)
                .header("x-amz-date", date)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    for _ in 0..3 {
        assert_eq!(send(signed("wrong-secret")).await, 403);
    }
    assert_eq!(send(signed("budget-secret")).await, 200);
    assert_eq!(send(signed("budget-secret")).await, 200);
    assert_eq!(send(signed("budget-secret")).await, 429);
    node.shutdown().await;
}
