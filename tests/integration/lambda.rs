//! Issue 13, item 5 — Lambda-shaped answers: with `response_format = "lambda"` a backend (an
//! AWS handler behind a Lambda-to-HTTP adapter) answers Lambda's proxy result, and
//! `statusCode`, `headers` and `body` (base64 when `isBase64Encoded`) decide what happens;
//! malformed results are refused, never guessed at.

use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

fn lambda(status: u16, extra: &str) -> Reply {
    Reply::ok(format!("{{\"statusCode\": {status}{extra}}}"))
}

fn config(backend: &Backend) -> String {
    format!(
        "[api]\nwebhook_secret = \"lambda-test-secret\"\n\
         [routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\nresponse_format = \"lambda\"\n\
         [routes.\"$default\"]\nintegration = \"http\"\nurl = \"{}\"\nresponse_format = \"lambda\"\ntwo_way = true\n",
        backend.url("/connect"),
        backend.url("/message"),
    )
}

#[tokio::test]
async fn lambda_results_decide_connects_and_replies() {
    let backend = Backend::with(|call, _| {
        let query = &call.event["queryStringParameters"];
        match (call.event_type(), call.event["body"].as_str().unwrap_or("")) {
            ("CONNECT", _) if query["who"] == "mallory" => lambda(403, r#", "body": "no""#),
            ("CONNECT", _) if query["who"] == "broken" => Reply::ok("<html>oops</html>"),
            ("CONNECT", _) => lambda(
                200,
                r#", "headers": {"Sec-WebSocket-Protocol": "chat"}, "body": "{\"channels\": [\"room\"]}""#,
            ),
            ("MESSAGE", "b64") => lambda(200, r#", "body": "aGVsbG8=", "isBase64Encoded": true"#),
            ("MESSAGE", "fail") => lambda(500, r#", "body": "handler error""#),
            ("MESSAGE", "garbage") => Reply::ok("{\"statusCode\": \"200\"}"),
            ("MESSAGE", _) => lambda(200, r#", "body": "plain reply""#),
            _ => Reply::ok(""),
        }
    })
    .await;
    let node = node(&config(&backend)).await;

    // statusCode 200 accepts, the header picks the subprotocol, the body's channels apply.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        ws_url(&node, "/?who=alice"),
    )
    .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "chat".parse().expect("hv"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("chat")
    );
    let j = Control::of(&node)
        .publish("room", "", "to the room")
        .await
        .json();
    assert_eq!(j["recipients"], 1);
    assert_eq!(next_message(&mut ws).await, Message::text("to the room"));

    // Replies: the body, base64-decoded when flagged; a non-2xx statusCode or a malformed
    // result is AWS's error frame.
    send_text(&mut ws, "hi").await;
    assert_eq!(next_message(&mut ws).await, Message::text("plain reply"));
    send_text(&mut ws, "b64").await;
    assert_eq!(next_message(&mut ws).await, Message::text("hello"));
    for bad in ["fail", "garbage"] {
        send_text(&mut ws, bad).await;
        let j = next_json(&mut ws).await;
        assert_eq!(j["message"], "Internal server error", "{bad}");
    }

    // statusCode 403 refuses with 403; a 2xx that is not a Lambda result is a 502.
    for (who, status) in [("mallory", 403), ("broken", 502)] {
        let err = tokio_tungstenite::connect_async(ws_url(&node, &format!("/?who={who}")))
            .await
            .expect_err("refused");
        match err {
            tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), status),
            other => panic!("expected an HTTP error, got {other}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = Control::of(&node)
        .request(reqwest::Method::GET, "/metrics", "")
        .await;
    let text = &metrics.body;
    assert!(
        text.lines()
            .any(|l| l.starts_with("gangway_integration_errors_total")
                && l.contains("kind=\"malformed_result\"")
                && !l.ends_with(" 0")),
        "malformed results are counted"
    );
    node.shutdown().await;
}

#[test]
fn lambda_format_is_for_http_routes() {
    let err = gangway::GatewayConfig::from_toml_str(
        "[routes.\"$default\"]\nintegration = \"mock\"\nresponse_format = \"lambda\"\n",
    )
    .expect_err("mock");
    assert_eq!(err.problems[0].key, "routes.\"$default\".response_format");
    let err = gangway::GatewayConfig::from_toml_str(
        "[api]\nwebhook_secret = \"12345678\"\n[routes.\"$default\"]\nintegration = \"http\"\nurl = \"http://127.0.0.1:1/\"\nresponse_format = \"xml\"\n",
    )
    .expect_err("unknown");
    assert_eq!(err.problems[0].key, "routes.\"$default\".response_format");
}
