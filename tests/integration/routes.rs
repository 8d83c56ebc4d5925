//! Data plane against a real backend: `$connect`, route selection, integrations, events,
//! `$disconnect`, ordering, failures.

use std::time::Duration;

use crate::support::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

fn routes_toml(backend: &Backend, extra: &str) -> String {
    format!(
        r#"
[routes."$connect"]
integration = "http"
url = "{connect}"
[routes."$disconnect"]
integration = "http"
url = "{disconnect}"
[routes."$default"]
integration = "http"
url = "{default}"
two_way = true
[routes.sendmessage]
integration = "http"
url = "{message}"
two_way = true
[routes.oneway]
integration = "http"
url = "{message}"
{extra}
"#,
        connect = backend.url("/connect"),
        disconnect = backend.url("/disconnect"),
        default = backend.url("/default"),
        message = backend.url("/message"),
    )
}

/// Echoes MESSAGE bodies back as `echo:<body>`; accepts CONNECT with a context.
async fn echo_backend() -> Backend {
    Backend::with(|call, _| match call.event_type() {
        "CONNECT" => Reply::ok(r#"{"context":{"principalId":"user-1","tier":"gold"}}"#),
        "MESSAGE" => Reply::ok(format!(
            "echo:{}",
            call.event["body"].as_str().unwrap_or_default()
        )),
        _ => Reply::ok(""),
    })
    .await
}

#[tokio::test]
async fn embedded_default_echoes_text_and_binary_byte_exact() {
    let node = gangway::Node::start({
        let mut c = gangway::GatewayConfig {
            broker: gangway_broker::Config::embedded_default(),
            ..Default::default()
        };
        c.listen.websocket = "127.0.0.1:0".parse().expect("addr");
        c.listen.control = "127.0.0.1:0".parse().expect("addr");
        c
    })
    .await
    .expect("start");
    let mut ws = connect(&node).await;
    send_text(&mut ws, "hello {not json").await;
    assert_eq!(
        next_message(&mut ws).await,
        Message::text("hello {not json")
    );
    ws.send(Message::binary(vec![0u8, 255, 1, 2]))
        .await
        .expect("send");
    assert_eq!(
        next_message(&mut ws).await,
        Message::binary(vec![0u8, 255, 1, 2])
    );
    node.shutdown().await;
}

#[tokio::test]
async fn connect_event_has_aws_shape_and_is_signed() {
    let backend = echo_backend().await;
    let node = node(&routes_toml(&backend, "")).await;
    let url = format!("{}?token=abc&x=1&x=2", ws_url(&node, "/prod"));
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .expect("request");
    req.headers_mut()
        .insert("User-Agent", "gangway-test/1".parse().expect("hv"));
    req.headers_mut()
        .insert("X-Custom", "custom-value".parse().expect("hv"));
    let (_ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    let call = backend.wait_event("CONNECT", 1).await;
    assert_eq!(call.path, "/connect");
    let e = &call.event;
    let rc = &e["requestContext"];
    assert_eq!(rc["routeKey"], "$connect");
    assert_eq!(rc["eventType"], "CONNECT");
    assert_eq!(rc["messageDirection"], "IN");
    assert_eq!(rc["stage"], "prod");
    assert_eq!(rc["apiId"], "gangway");
    assert!(rc["connectedAt"].is_i64());
    assert!(rc["requestTimeEpoch"].is_i64());
    assert!(rc.get("messageId").is_none());
    assert!(rc.get("disconnectStatusCode").is_none());
    assert_eq!(rc["requestId"], rc["extendedRequestId"]);
    assert_eq!(rc["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(rc["identity"]["userAgent"], "gangway-test/1");
    assert_eq!(rc["domainName"], node.websocket_addr.to_string());
    let time = rc["requestTime"].as_str().expect("requestTime");
    assert!(time.ends_with(" +0000") && time.len() == 26, "{time}");
    assert_eq!(e["headers"]["x-custom"], "custom-value");
    assert_eq!(e["queryStringParameters"]["token"], "abc");
    assert_eq!(e["queryStringParameters"]["x"], "2");
    assert_eq!(
        e["multiValueQueryStringParameters"]["x"],
        serde_json::json!(["1", "2"])
    );
    assert_eq!(e["isBase64Encoded"], false);
    assert!(e.get("body").is_none());
    // Signature over "<t>.<body>" with the configured secret.
    let sig = call
        .header("x-gangway-signature")
        .expect("signature header");
    let now = chrono_now();
    assert!(gangway_broker::signature::verify(
        SECRET.as_bytes(),
        sig,
        &call.body,
        now,
        300
    ));
    assert_eq!(call.header("x-gangway-event-type"), Some("CONNECT"));
    node.shutdown().await;
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[tokio::test]
async fn connect_rejection_uses_the_backend_status() {
    let backend = Backend::with(|_, _| Reply::status(403)).await;
    let node = node(&routes_toml(&backend, "")).await;
    let err = tokio_tungstenite::connect_async(ws_url(&node, "/"))
        .await
        .expect_err("rejected");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected an HTTP error, got {other}"),
    }
    // No $disconnect for a connection that never opened.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(backend
        .calls()
        .iter()
        .all(|c| c.event_type() != "DISCONNECT"));
    node.shutdown().await;
}

#[tokio::test]
async fn connect_backend_down_or_slow_fails_the_upgrade() {
    // Nothing listens on the backend port: 502.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead_url = format!("http://{}/connect", dead.local_addr().expect("addr"));
    drop(dead);
    let node1 = node(&format!(
        "[routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{dead_url}\"\n"
    ))
    .await;
    match tokio_tungstenite::connect_async(ws_url(&node1, "/")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 502),
        other => panic!("expected 502, got {other:?}"),
    }
    // A backend slower than timeout_ms: 504.
    let slow = Backend::with(|_, _| Reply::ok("").after(Duration::from_secs(3))).await;
    let node2 = node(&format!(
        "[routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\ntimeout_ms = 200\n",
        slow.url("/connect")
    ))
    .await;
    match tokio_tungstenite::connect_async(ws_url(&node2, "/")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 504),
        other => panic!("expected 504, got {other:?}"),
    }
    node1.shutdown().await;
    node2.shutdown().await;
}

#[tokio::test]
async fn connect_finishes_before_101_and_posts_meanwhile_are_gone() {
    // The backend, while handling $connect, pushes to the connection: AWS answers 410.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let backend = Backend::with(move |call, _| {
        if call.event_type() == "CONNECT" {
            let _ = tx.send(call.connection_id());
            return Reply::ok("").after(Duration::from_millis(500));
        }
        Reply::ok("")
    })
    .await;
    let node = node(&routes_toml(&backend, "")).await;
    let control = control_url(&node);
    let client = tokio::spawn({
        let url = ws_url(&node, "/");
        async move {
            tokio_tungstenite::connect_async(url)
                .await
                .map(|(ws, _)| ws)
        }
    });
    let id = tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("in time")
        .expect("id");
    let status = http()
        .post(format!("{control}/@connections/{id}"))
        .body("early")
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status, 410);
    assert!(!client.is_finished(), "the 101 must wait for $connect");
    let mut ws = client.await.expect("join").expect("connected");
    // Now the same id works.
    let status = http()
        .post(format!("{control}/@connections/{id}"))
        .body("welcome")
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status, 200);
    assert_eq!(next_message(&mut ws).await, Message::text("welcome"));
    node.shutdown().await;
}

#[tokio::test]
async fn connect_selects_subprotocol() {
    let backend = Backend::with(|call, _| {
        if call.event_type() == "CONNECT" {
            Reply::ok("").header("Sec-WebSocket-Protocol", "chat.v2")
        } else {
            Reply::ok("")
        }
    })
    .await;
    let node = node(&routes_toml(&backend, "")).await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        ws_url(&node, "/"),
    )
    .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "chat.v1, chat.v2".parse().expect("hv"),
    );
    let (_ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("chat.v2")
    );
    let connect = backend.wait_event("CONNECT", 1).await;
    assert_eq!(
        connect.event["headers"]["Sec-WebSocket-Protocol"],
        "chat.v1, chat.v2"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn messages_route_by_expression_and_carry_the_authorizer_context() {
    let backend = echo_backend().await;
    let node = node(&routes_toml(&backend, "")).await;
    let mut ws = connect(&node).await;
    let connect_call = backend.wait_event("CONNECT", 1).await;
    let id = connect_call.connection_id();

    send_text(&mut ws, r#"{"action":"sendmessage","text":"hi"}"#).await;
    assert_eq!(
        next_message(&mut ws).await,
        Message::text(r#"echo:{"action":"sendmessage","text":"hi"}"#)
    );
    let m = backend.wait_event("MESSAGE", 1).await;
    assert_eq!(m.path, "/message");
    let rc = &m.event["requestContext"];
    assert_eq!(rc["routeKey"], "sendmessage");
    assert_eq!(rc["connectionId"], id.as_str());
    assert!(rc["messageId"].is_string());
    assert_eq!(rc["authorizer"]["principalId"], "user-1");
    assert_eq!(rc["authorizer"]["tier"], "gold");
    assert_eq!(
        rc["connectedAt"],
        connect_call.event["requestContext"]["connectedAt"]
    );
    assert!(
        m.event.get("headers").is_none(),
        "MESSAGE events carry no headers"
    );
    assert_eq!(m.event["isBase64Encoded"], false);

    // Unmatched key, non-JSON and binary go to $default.
    send_text(&mut ws, r#"{"action":"unknown"}"#).await;
    assert_eq!(
        next_message(&mut ws).await,
        Message::text(r#"echo:{"action":"unknown"}"#)
    );
    send_text(&mut ws, "plain text").await;
    assert_eq!(
        next_message(&mut ws).await,
        Message::text("echo:plain text")
    );
    ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(next_message(&mut ws).await, Message::text("echo:AQID"));
    let calls = backend
        .wait_for("4 messages", |c| {
            c.iter().filter(|c| c.event_type() == "MESSAGE").count() >= 4
        })
        .await;
    let msgs: Vec<_> = calls
        .iter()
        .filter(|c| c.event_type() == "MESSAGE")
        .collect();
    assert_eq!(msgs[1].event["requestContext"]["routeKey"], "$default");
    assert_eq!(msgs[3].event["isBase64Encoded"], true);

    // One-way routes send nothing back; the next two-way answer arrives first.
    send_text(&mut ws, r#"{"action":"oneway"}"#).await;
    send_text(&mut ws, r#"{"action":"sendmessage","n":2}"#).await;
    assert_eq!(
        next_message(&mut ws).await,
        Message::text(r#"echo:{"action":"sendmessage","n":2}"#)
    );
    node.shutdown().await;
}

#[tokio::test]
async fn no_default_route_answers_forbidden() {
    let backend = Backend::start().await;
    let node = node(&format!(
        "[routes.known]\nintegration = \"http\"\nurl = \"{}\"\n",
        backend.url("/known")
    ))
    .await;
    let mut ws = connect(&node).await;
    send_text(&mut ws, r#"{"action":"other"}"#).await;
    let f = next_json(&mut ws).await;
    assert_eq!(f["message"], "Forbidden");
    assert!(f["connectionId"].is_string());
    assert!(f["requestId"].is_string());
    send_text(&mut ws, "not json").await;
    assert_eq!(next_json(&mut ws).await["message"], "Forbidden");
    node.shutdown().await;
}

#[tokio::test]
async fn failing_backend_sends_internal_server_error() {
    let backend = Backend::with(|call, _| match call.event_type() {
        "MESSAGE" if call.event["body"].as_str().unwrap_or("").contains("slow") => {
            Reply::ok("late").after(Duration::from_secs(2))
        }
        "MESSAGE" => Reply::status(500),
        _ => Reply::ok(""),
    })
    .await;
    let node = node(&format!(
        "{}\n",
        routes_toml(&backend, "").replace(
            "[routes.oneway]",
            "[routes.timeouts]\nintegration = \"http\"\nurl = \"PLACEHOLDER\"\ntimeout_ms = 200\ntwo_way = true\n[routes.oneway]"
        ).replace("PLACEHOLDER", &backend.url("/message"))
    ))
    .await;
    let mut ws = connect(&node).await;
    send_text(&mut ws, r#"{"action":"sendmessage"}"#).await;
    let f = next_json(&mut ws).await;
    assert_eq!(f["message"], "Internal server error");
    let event = backend.wait_event("MESSAGE", 1).await;
    assert_eq!(f["requestId"], event.event["requestContext"]["requestId"]);
    send_text(&mut ws, r#"{"action":"timeouts","body":"slow"}"#).await;
    assert_eq!(next_json(&mut ws).await["message"], "Internal server error");
    node.shutdown().await;
}

#[tokio::test]
async fn a_slow_backend_does_not_stall_other_connections() {
    let backend = Backend::with(|call, _| match call.event["body"].as_str() {
        Some(b) if b.contains("slow") => Reply::ok("slow-done").after(Duration::from_secs(3)),
        Some(_) => Reply::ok("fast-done"),
        None => Reply::ok(""),
    })
    .await;
    let node = node(&routes_toml(&backend, "")).await;
    let mut slow = connect(&node).await;
    let mut fast = connect(&node).await;
    for _ in 0..5 {
        send_text(&mut slow, r#"{"action":"sendmessage","slow":true}"#).await;
    }
    backend.wait_event("MESSAGE", 1).await;
    let started = std::time::Instant::now();
    for _ in 0..20 {
        send_text(&mut fast, r#"{"action":"sendmessage"}"#).await;
        assert_eq!(next_message(&mut fast).await, Message::text("fast-done"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fast connection waited for the slow one: {:?}",
        started.elapsed()
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_connections_messages_reach_the_backend_in_order() {
    // Early messages are answered slowly, so a concurrent dispatcher would reorder them.
    let backend = Backend::with(|call, i| {
        if call.event_type() == "MESSAGE" {
            Reply::ok("").after(Duration::from_millis(if i % 3 == 0 { 30 } else { 1 }))
        } else {
            Reply::ok("")
        }
    })
    .await;
    let node = node(&routes_toml(&backend, "")).await;
    let mut ws = connect(&node).await;
    for n in 0..60 {
        send_text(&mut ws, &format!(r#"{{"action":"oneway","n":{n}}}"#)).await;
    }
    let calls = backend
        .wait_for("60 messages", |c| {
            c.iter().filter(|c| c.event_type() == "MESSAGE").count() >= 60
        })
        .await;
    let order: Vec<i64> = calls
        .iter()
        .filter(|c| c.event_type() == "MESSAGE")
        .map(|c| {
            let body: serde_json::Value =
                serde_json::from_str(c.event["body"].as_str().expect("body")).expect("json");
            body["n"].as_i64().expect("n")
        })
        .collect();
    assert_eq!(order, (0..60).collect::<Vec<_>>());
    node.shutdown().await;
}

#[tokio::test]
async fn disconnect_event_reports_code_reason_and_context() {
    let backend = echo_backend().await;
    let node = node(&routes_toml(&backend, "")).await;
    let mut ws = connect(&node).await;
    let id = backend.wait_event("CONNECT", 1).await.connection_id();
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4001),
        reason: "bye now".into(),
    }))
    .await
    .expect("close");
    let d = backend.wait_event("DISCONNECT", 1).await;
    assert_eq!(d.path, "/disconnect");
    let rc = &d.event["requestContext"];
    assert_eq!(rc["routeKey"], "$disconnect");
    assert_eq!(rc["connectionId"], id.as_str());
    assert_eq!(rc["disconnectStatusCode"], 4001);
    assert_eq!(rc["disconnectReason"], "bye now");
    assert_eq!(rc["authorizer"]["principalId"], "user-1");
    assert!(rc.get("messageId").is_none());
    assert_eq!(d.event["headers"]["x-restapi"], "");
    // The connection is gone for the control API.
    let status = http()
        .get(format!("{}/@connections/{id}", control_url(&node)))
        .send()
        .await
        .expect("get")
        .status();
    assert_eq!(status, 410);
    node.shutdown().await;
}

#[tokio::test]
async fn dropped_tcp_reports_1006() {
    let backend = Backend::start().await;
    let node = node(&routes_toml(&backend, "")).await;
    let ws = connect(&node).await;
    backend.wait_event("CONNECT", 1).await;
    drop(ws);
    let d = backend.wait_event("DISCONNECT", 1).await;
    assert_eq!(d.event["requestContext"]["disconnectStatusCode"], 1006);
    node.shutdown().await;
}

#[tokio::test]
async fn disconnect_is_retried_until_the_backend_takes_it() {
    // The first two deliveries fail with 503.
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = counter.clone();
    let backend = Backend::with(move |call, _| {
        if call.event_type() == "DISCONNECT"
            && c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2
        {
            Reply::status(503)
        } else {
            Reply::ok("")
        }
    })
    .await;
    let node = node(&routes_toml(&backend, "")).await;
    let mut ws = connect(&node).await;
    backend.wait_event("CONNECT", 1).await;
    ws.close(None).await.expect("close");
    let third = backend.wait_event("DISCONNECT", 3).await;
    let calls = backend.calls();
    let disconnects: Vec<_> = calls
        .iter()
        .filter(|c| c.event_type() == "DISCONNECT")
        .collect();
    assert_eq!(disconnects.len(), 3);
    // Same event each time: same requestId, so a backend can de-duplicate.
    assert_eq!(
        disconnects[0].event["requestContext"]["requestId"],
        third.event["requestContext"]["requestId"]
    );
    assert_eq!(third.event["requestContext"]["disconnectStatusCode"], 1005);
    eventually("delivered metric", || {
        node.broker
            .metrics()
            .render()
            .contains("gangway_disconnect_events_total{outcome=\"delivered\"} 1")
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_clients_with_1001_and_sends_their_disconnects() {
    let backend = Backend::start().await;
    let node = node(&routes_toml(&backend, "")).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(connect(&node).await);
    }
    backend.wait_event("CONNECT", 5).await;
    let shutdown = tokio::spawn(node.shutdown());
    for ws in &mut clients {
        let (code, _) = expect_close(ws).await;
        assert_eq!(code, 1001);
    }
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("drained")
        .expect("join");
    // Every $disconnect landed before shutdown returned.
    let disconnects: Vec<_> = backend
        .calls()
        .into_iter()
        .filter(|c| c.event_type() == "DISCONNECT")
        .collect();
    assert_eq!(disconnects.len(), 5);
    assert!(disconnects
        .iter()
        .all(|d| d.event["requestContext"]["disconnectStatusCode"] == 1001));
}
