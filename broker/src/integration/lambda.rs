//! Lambda's proxy result, for `http` routes with `response_format = "lambda"`: a backend (an
//! AWS handler behind a thin Lambda-to-HTTP adapter) answers 200 with
//! `{"statusCode", "headers", "body", "isBase64Encoded"}`, and that object — not the HTTP
//! exchange — is the answer: `statusCode` decides accept/reject on `$connect` and success on
//! messages, `headers["Sec-WebSocket-Protocol"]` picks the subprotocol, `body` is the reply.
//!
//! A non-2xx HTTP status is the adapter's own failure and stays what it is. A 2xx whose body is
//! not such an object is a [`IntegrationError::MalformedResult`] (502 on `$connect`, an error
//! frame on messages), never a guess.

use base64::Engine as _;
use bytes::Bytes;

use crate::integration::{Answer, IntegrationError};

/// Reads `answer` as Lambda's proxy result (see the module documentation).
pub fn decode(answer: Answer) -> Result<Answer, IntegrationError> {
    if !answer.is_success() {
        return Ok(answer);
    }
    let bad = |why: &str| IntegrationError::MalformedResult(why.to_string());
    let value: serde_json::Value =
        serde_json::from_slice(&answer.body).map_err(|_| bad("the body is not JSON"))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad("the body is not an object"))?;
    let status = match object.get("statusCode") {
        Some(v) => v
            .as_u64()
            .filter(|s| (100..600).contains(s))
            .ok_or_else(|| bad("statusCode is not an HTTP status"))? as u16,
        None => return Err(bad("no statusCode")),
    };
    let subprotocol = match object.get("headers") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(h)) => h
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
            .map(|(_, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("a header value is not a string"))
            })
            .transpose()?,
        Some(_) => return Err(bad("headers is not an object")),
    };
    let base64 = match object.get("isBase64Encoded") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => return Err(bad("isBase64Encoded is not a boolean")),
    };
    let body = match object.get("body") {
        None | Some(serde_json::Value::Null) => Bytes::new(),
        Some(serde_json::Value::String(s)) if base64 => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| bad("body is not base64"))?,
        ),
        Some(serde_json::Value::String(s)) => Bytes::from(s.clone()),
        Some(_) => return Err(bad("body is not a string")),
    };
    Ok(Answer {
        status,
        subprotocol: subprotocol.or(answer.subprotocol),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Answer {
        Answer {
            status: 200,
            subprotocol: None,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn lambda_results_become_answers() {
        let a = decode(ok(
            r#"{"statusCode": 403, "headers": {"sec-websocket-protocol": "chat"}, "body": "no"}"#,
        ))
        .expect("valid");
        assert_eq!(
            (a.status, a.subprotocol.as_deref(), &a.body[..]),
            (403, Some("chat"), &b"no"[..])
        );
        let a = decode(ok(
            r#"{"statusCode": 200, "body": "aGk=", "isBase64Encoded": true}"#,
        ))
        .expect("valid");
        assert_eq!(&a.body[..], b"hi");
        let a = decode(ok(r#"{"statusCode": 200}"#)).expect("valid");
        assert!(a.body.is_empty() && a.is_success());
        // The adapter's own failure stays a failure.
        let failed = Answer {
            status: 500,
            subprotocol: None,
            body: Bytes::from_static(b"oops"),
        };
        assert_eq!(decode(failed).expect("passed through").status, 500);
    }

    #[test]
    fn malformed_results_are_errors() {
        for body in [
            "not json",
            "[]",
            r#"{"body": "x"}"#,
            r#"{"statusCode": "200"}"#,
            r#"{"statusCode": 99}"#,
            r#"{"statusCode": 200, "body": 5}"#,
            r#"{"statusCode": 200, "body": "!!", "isBase64Encoded": true}"#,
            r#"{"statusCode": 200, "isBase64Encoded": "yes"}"#,
            r#"{"statusCode": 200, "headers": []}"#,
            r#"{"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": 1}}"#,
        ] {
            assert!(
                matches!(decode(ok(body)), Err(IntegrationError::MalformedResult(_))),
                "{body}"
            );
        }
    }
}
