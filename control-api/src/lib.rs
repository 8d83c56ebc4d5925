//! Gangway's control plane: the AWS-compatible `@connections` API (and health, metrics) over a
//! [`Broker`], on its own listener.
//!
//! Layout: [`path`] parses request paths (AWS's `@`/`%40` and encoded ids); [`auth`] checks
//! credentials; [`error`] is the one error shape; this file wires them into actix-web.
//!
//! Every response carries `x-amzn-RequestId`. Broker calls are synchronous and never wait on a
//! WebSocket client, so a slow client cannot stall the control API.

pub mod auth;
pub mod error;
pub mod path;

use actix_web::dev::Server;
use actix_web::http::Method;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::BytesMut;
use chrono::{TimeZone, Utc};
use futures_util::StreamExt as _;
use gangway_broker::id::request_id;
use gangway_broker::Broker;

use crate::error::ApiError;
use crate::path::ControlPath;

/// Options of the control server.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// actix worker threads.
    pub workers: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions { workers: 2 }
    }
}

/// Starts the control API on an already-bound listener. The returned [`Server`] must be
/// awaited or spawned; stop it through its handle. OS signals are left to the caller.
///
/// # Errors
/// Fails when the listener cannot be used.
pub fn serve(
    broker: Broker,
    listener: std::net::TcpListener,
    options: ServerOptions,
) -> std::io::Result<Server> {
    let data = web::Data::new(broker);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(handle))
    })
    .workers(options.workers.max(1))
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run())
}

/// The single entry point: route by the raw path, then by method.
async fn handle(req: HttpRequest, body: web::Payload, broker: web::Data<Broker>) -> HttpResponse {
    let rid = request_id();
    let stage = &broker.config().api.stage;
    let target = path::parse(req.uri().path(), stage);
    let (operation, result) = dispatch(&req, body, &broker, target).await;
    let mut response = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(request_id = %rid, error = %e, "control request failed");
            }
            e.to_response()
        }
    };
    broker
        .metrics()
        .control_requests_total
        .with_label_values(&[operation, response.status().as_str()])
        .inc();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&rid) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-amzn-requestid"),
            v,
        );
    }
    response
}

async fn dispatch(
    req: &HttpRequest,
    body: web::Payload,
    broker: &Broker,
    target: ControlPath,
) -> (&'static str, Result<HttpResponse, ApiError>) {
    let method = req.method();
    match target {
        ControlPath::Health if method == Method::GET => (
            "health",
            Ok(HttpResponse::Ok()
                .content_type("application/json")
                .body(r#"{"status":"ok"}"#)),
        ),
        ControlPath::Metrics if method == Method::GET => (
            "metrics",
            Ok(HttpResponse::Ok()
                .content_type("text/plain; version=0.0.4")
                .body(broker.metrics().render())),
        ),
        ControlPath::Health | ControlPath::Metrics => ("unknown", Err(method_not_allowed())),
        ControlPath::Unknown => ("unknown", Err(ApiError::not_found())),
        ControlPath::WrongStage => ("unknown", Err(ApiError::forbidden())),
        ControlPath::BadId => (
            "connection",
            Err(ApiError::bad_request(
                "Invalid connectionId: not valid percent-encoded UTF-8",
            )),
        ),
        ControlPath::Connection(id) => {
            let operation = match *method {
                Method::POST => "PostToConnection",
                Method::GET => "GetConnection",
                Method::DELETE => "DeleteConnection",
                _ => return ("unknown", Err(method_not_allowed())),
            };
            if let Err(e) = auth::check(req, &broker.config().control) {
                return (operation, Err(e));
            }
            let result = match *method {
                Method::POST => post(broker, &id, body).await,
                Method::GET => get(broker, &id),
                _ => delete(broker, &id, req.query_string()),
            };
            (operation, result)
        }
    }
}

fn method_not_allowed() -> ApiError {
    ApiError::new(405, "MethodNotAllowedException", "Method Not Allowed")
}

async fn post(broker: &Broker, id: &str, mut body: web::Payload) -> Result<HttpResponse, ApiError> {
    let max = broker.config().limits.max_message_bytes;
    let mut data = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?;
        if data.len() + chunk.len() > max {
            return Err(ApiError::new(
                413,
                "PayloadTooLargeException",
                format!("message is over {max} bytes"),
            ));
        }
        data.extend_from_slice(&chunk);
    }
    broker.post_to_connection(id, data.freeze())?;
    Ok(HttpResponse::Ok().finish())
}

fn get(broker: &Broker, id: &str) -> Result<HttpResponse, ApiError> {
    let info = broker.get_connection(id)?;
    let mut identity = serde_json::json!({ "sourceIp": info.source_ip });
    if let Some(ua) = info.user_agent {
        identity["userAgent"] = serde_json::Value::String(ua);
    }
    let body = serde_json::json!({
        "connectedAt": rfc3339(info.connected_at_ms),
        "identity": identity,
        "lastActiveAt": rfc3339(info.last_active_at_ms),
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string()))
}

fn delete(broker: &Broker, id: &str, query: &str) -> Result<HttpResponse, ApiError> {
    let mut code = None;
    let mut reason = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "code" => {
                code = Some(v.parse::<u16>().map_err(|_| {
                    ApiError::bad_request(format!("code must be a number, not {v:?}"))
                })?)
            }
            "reason" => reason = Some(v.into_owned()),
            _ => {}
        }
    }
    broker.delete_connection(id, code, reason.as_deref())?;
    Ok(HttpResponse::NoContent().finish())
}

/// RFC 3339 with milliseconds, as AWS writes GetConnection times.
fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
