//! The event a backend receives: AWS's Lambda-proxy event for WebSocket APIs, field for field.
//!
//! Presence rules follow events AWS delivers, as captured in public fixtures (aws-lambda-go's
//! `events/testdata/apigw-websocket-request*.json`) and AWS's guide (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-mapping-template-reference.html>):
//! `messageId` and `body` only on MESSAGE; client `headers` and query parameters only on
//! CONNECT; AWS's fixed header set on DISCONNECT; `disconnectStatusCode`/`disconnectReason`
//! only on DISCONNECT; `connectedAt` and `requestTimeEpoch` always, as numbers;
//! `authorizer` on every event once `$connect` returned a `context`.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

use crate::config::ApiConfig;
use crate::conn::connection::Connection;

/// What every event of one connection shares.
#[derive(Debug, Clone, Copy)]
pub struct EventSource<'a> {
    /// `requestContext.stage`.
    pub stage: &'a str,
    /// `requestContext.apiId`.
    pub api_id: &'a str,
    /// `requestContext.domainName`.
    pub domain_name: &'a str,
    /// `requestContext.connectionId`.
    pub connection_id: &'a str,
    /// `requestContext.connectedAt`, ms since the epoch.
    pub connected_at_ms: i64,
    /// `requestContext.identity.sourceIp`.
    pub source_ip: &'a str,
    /// `requestContext.identity.userAgent`, when the client sent one.
    pub user_agent: Option<&'a str>,
    /// `requestContext.authorizer`: the `context` object `$connect` returned.
    pub authorizer: Option<&'a serde_json::Value>,
}

/// The payload of a MESSAGE event.
#[derive(Debug, Clone, Copy)]
pub enum MessageBody<'a> {
    /// A text frame: `body` as is, `isBase64Encoded: false`.
    Text(&'a str),
    /// A binary frame: `body` base64, `isBase64Encoded: true`.
    Binary(&'a [u8]),
}

/// Which event to build.
#[derive(Debug, Clone, Copy)]
pub enum EventKind<'a> {
    /// `$connect`: the upgrade request's headers and query string.
    Connect {
        /// Header (name, value) pairs in the client's case and order.
        headers: &'a [(String, String)],
        /// Query (name, value) pairs in order.
        query: &'a [(String, String)],
    },
    /// A message routed to `route_key`.
    Message {
        /// The selected route key.
        route_key: &'a str,
        /// `requestContext.messageId`.
        message_id: &'a str,
        /// The frame's payload.
        body: MessageBody<'a>,
    },
    /// `$disconnect`.
    Disconnect {
        /// WebSocket close code.
        status_code: u16,
        /// Close reason.
        reason: &'a str,
    },
}

impl EventKind<'_> {
    /// The route key the event is for.
    pub fn route_key(&self) -> &str {
        match self {
            EventKind::Connect { .. } => "$connect",
            EventKind::Message { route_key, .. } => route_key,
            EventKind::Disconnect { .. } => "$disconnect",
        }
    }

    /// `requestContext.eventType`: `CONNECT`, `MESSAGE` or `DISCONNECT`.
    pub fn event_type(&self) -> &'static str {
        match self {
            EventKind::Connect { .. } => "CONNECT",
            EventKind::Message { .. } => "MESSAGE",
            EventKind::Disconnect { .. } => "DISCONNECT",
        }
    }
}

impl<'a> EventSource<'a> {
    /// What every event of `conn` shares; `source_ip` is its address as text (the caller keeps
    /// the string).
    pub fn of(conn: &'a Connection, api: &'a ApiConfig, source_ip: &'a str) -> Self {
        EventSource {
            stage: &api.stage,
            api_id: &api.api_id,
            domain_name: &conn.domain_name,
            connection_id: &conn.id_text,
            connected_at_ms: conn.connected_at_ms,
            source_ip,
            user_agent: conn.user_agent.as_deref(),
            authorizer: conn.authorizer.as_deref(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<&'a str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_headers: Option<BTreeMap<&'a str, Vec<&'a str>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string_parameters: Option<BTreeMap<&'a str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_query_string_parameters: Option<BTreeMap<&'a str, Vec<&'a str>>>,
    request_context: RequestContext<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<std::borrow::Cow<'a, str>>,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext<'a> {
    route_key: &'a str,
    event_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    extended_request_id: &'a str,
    request_time: String,
    message_direction: &'static str,
    stage: &'a str,
    connected_at: i64,
    request_time_epoch: i64,
    identity: Identity<'a>,
    request_id: &'a str,
    domain_name: &'a str,
    connection_id: &'a str,
    api_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizer: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_reason: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    source_ip: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
}

/// `requestTime` in AWS's Common Log Format: `20/Jan/2024:11:55:00 +0000`.
pub fn clf_time(t: DateTime<Utc>) -> String {
    t.format("%d/%b/%Y:%H:%M:%S +0000").to_string()
}

/// Builds the JSON event. `request_id` doubles as `extendedRequestId`, as on AWS.
pub fn build_event(
    source: &EventSource<'_>,
    kind: &EventKind<'_>,
    request_id: &str,
    now: DateTime<Utc>,
) -> Vec<u8> {
    let (route_key, event_type) = (kind.route_key(), kind.event_type());
    let mut event = Event {
        headers: None,
        multi_value_headers: None,
        query_string_parameters: None,
        multi_value_query_string_parameters: None,
        request_context: RequestContext {
            route_key,
            event_type,
            message_id: None,
            extended_request_id: request_id,
            request_time: clf_time(now),
            message_direction: "IN",
            stage: source.stage,
            connected_at: source.connected_at_ms,
            request_time_epoch: now.timestamp_millis(),
            identity: Identity {
                source_ip: source.source_ip,
                user_agent: source.user_agent,
            },
            request_id,
            domain_name: source.domain_name,
            connection_id: source.connection_id,
            api_id: source.api_id,
            authorizer: source.authorizer,
            disconnect_status_code: None,
            disconnect_reason: None,
        },
        body: None,
        is_base64_encoded: false,
    };
    match kind {
        EventKind::Connect { headers, query } => {
            let (single, multi) = group(headers);
            event.headers = Some(single);
            event.multi_value_headers = Some(multi);
            if !query.is_empty() {
                let (single, multi) = group(query);
                event.query_string_parameters = Some(single);
                event.multi_value_query_string_parameters = Some(multi);
            }
        }
        EventKind::Message {
            message_id, body, ..
        } => {
            event.request_context.message_id = Some(message_id);
            match body {
                MessageBody::Text(t) => event.body = Some((*t).into()),
                MessageBody::Binary(b) => {
                    event.body = Some(base64::engine::general_purpose::STANDARD.encode(b).into());
                    event.is_base64_encoded = true;
                }
            }
        }
        EventKind::Disconnect {
            status_code,
            reason,
        } => {
            event.request_context.disconnect_status_code = Some(*status_code);
            event.request_context.disconnect_reason = Some(reason);
            // AWS sends this fixed, odd header set on DISCONNECT.
            let fixed: [(&str, &str); 4] = [
                ("Host", source.domain_name),
                ("x-api-key", ""),
                ("X-Forwarded-For", ""),
                ("x-restapi", ""),
            ];
            event.headers = Some(fixed.iter().copied().collect());
            event.multi_value_headers = Some(fixed.iter().map(|(k, v)| (*k, vec![*v])).collect());
        }
    }
    serde_json::to_vec(&event).unwrap_or_else(|_| b"{}".to_vec())
}

type Grouped<'a> = (BTreeMap<&'a str, &'a str>, BTreeMap<&'a str, Vec<&'a str>>);

/// Single-value map (the last value wins, as on AWS) and multi-value map.
fn group(pairs: &[(String, String)]) -> Grouped<'_> {
    let mut single = BTreeMap::new();
    let mut multi: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in pairs {
        single.insert(k.as_str(), v.as_str());
        multi.entry(k.as_str()).or_default().push(v.as_str());
    }
    (single, multi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::Value;

    fn source() -> EventSource<'static> {
        EventSource {
            stage: "prod",
            api_id: "gangway",
            domain_name: "localhost:8080",
            connection_id: "abc",
            connected_at_ms: 1_705_751_697_419,
            source_ip: "127.0.0.1",
            user_agent: Some("test-agent"),
            authorizer: None,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 20, 11, 55, 0)
            .single()
            .expect("valid time")
    }

    fn parse(v: Vec<u8>) -> Value {
        serde_json::from_slice(&v).expect("json")
    }

    #[test]
    fn message_event_has_aws_shape() {
        let e = parse(build_event(
            &source(),
            &EventKind::Message {
                route_key: "$default",
                message_id: "mid",
                body: MessageBody::Text("{\"a\":1}"),
            },
            "rid",
            now(),
        ));
        let rc = &e["requestContext"];
        assert_eq!(rc["routeKey"], "$default");
        assert_eq!(rc["eventType"], "MESSAGE");
        assert_eq!(rc["messageId"], "mid");
        assert_eq!(rc["requestId"], "rid");
        assert_eq!(rc["extendedRequestId"], "rid");
        assert_eq!(rc["requestTime"], "20/Jan/2024:11:55:00 +0000");
        assert_eq!(rc["requestTimeEpoch"], 1_705_751_700_000i64);
        assert_eq!(rc["connectedAt"], 1_705_751_697_419i64);
        assert_eq!(rc["messageDirection"], "IN");
        assert_eq!(rc["identity"]["sourceIp"], "127.0.0.1");
        assert_eq!(rc["identity"]["userAgent"], "test-agent");
        assert!(rc.get("authorizer").is_none());
        assert!(rc.get("disconnectStatusCode").is_none());
        assert_eq!(e["body"], "{\"a\":1}");
        assert_eq!(e["isBase64Encoded"], false);
        assert!(e.get("headers").is_none());
    }

    #[test]
    fn connect_event_carries_headers_and_query() {
        let headers = vec![
            ("Host".to_string(), "h".to_string()),
            ("X-Multi".to_string(), "1".to_string()),
            ("X-Multi".to_string(), "2".to_string()),
        ];
        let query = vec![("token".to_string(), "t".to_string())];
        let e = parse(build_event(
            &source(),
            &EventKind::Connect {
                headers: &headers,
                query: &query,
            },
            "rid",
            now(),
        ));
        assert_eq!(e["requestContext"]["eventType"], "CONNECT");
        assert!(e["requestContext"].get("messageId").is_none());
        assert_eq!(e["headers"]["X-Multi"], "2");
        assert_eq!(
            e["multiValueHeaders"]["X-Multi"],
            serde_json::json!(["1", "2"])
        );
        assert_eq!(e["queryStringParameters"]["token"], "t");
        assert!(e.get("body").is_none());
    }

    #[test]
    fn disconnect_event_has_code_reason_and_fixed_headers() {
        let auth = serde_json::json!({"principalId": "user"});
        let mut s = source();
        s.authorizer = Some(&auth);
        let e = parse(build_event(
            &s,
            &EventKind::Disconnect {
                status_code: 1001,
                reason: "Going away",
            },
            "rid",
            now(),
        ));
        let rc = &e["requestContext"];
        assert_eq!(rc["disconnectStatusCode"], 1001);
        assert_eq!(rc["disconnectReason"], "Going away");
        assert_eq!(rc["authorizer"]["principalId"], "user");
        assert_eq!(e["headers"]["x-restapi"], "");
        assert_eq!(
            e["multiValueHeaders"]["Host"],
            serde_json::json!(["localhost:8080"])
        );
    }

    #[test]
    fn binary_body_is_base64() {
        let e = parse(build_event(
            &source(),
            &EventKind::Message {
                route_key: "$default",
                message_id: "m",
                body: MessageBody::Binary(&[0, 159, 255]),
            },
            "r",
            now(),
        ));
        assert_eq!(e["body"], "AJ//");
        assert_eq!(e["isBase64Encoded"], true);
    }
}
