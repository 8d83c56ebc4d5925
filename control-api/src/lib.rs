//! Gangway's control plane: the AWS-compatible `@connections` API, channels, broadcast and
//! batch, health, readiness, metrics and the OpenAPI document, over a [`Broker`], on its own
//! listener.
//!
//! Layout: [`path`] parses request paths (AWS's `@`/`%40` and encoded ids); [`routes`] maps
//! them to operations (and feeds [`openapi`]); [`auth`] checks bearer tokens and [`sigv4`]
//! signatures; [`batch`] runs `@batch`; [`error`] is the one error shape; this file wires them
//! into actix-web.
//!
//! Every response carries `x-amzn-RequestId`. Broker calls are synchronous and never wait on a
//! WebSocket client, so a slow client cannot stall the control API.

pub mod auth;
pub mod batch;
pub mod body;
pub mod error;
pub mod openapi;
pub mod path;
pub mod routes;
pub mod sigv4;

use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use gangway_broker::request_id;
use gangway_broker::Broker;

use crate::auth::Caller;
use crate::body::UnverifiedBudget;
use crate::error::ApiError;
use crate::path::ControlPath;
use crate::routes::Op;

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
    let budget = UnverifiedBudget::new(broker.config().limits.max_batch_bytes);
    let data = web::Data::new(State { broker, budget });
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

/// What every request handler shares.
struct State {
    broker: Broker,
    /// Bodies read before their SigV4 signature can be checked.
    budget: UnverifiedBudget,
}

/// The single entry point: resolve the operation, check credentials, run it.
async fn handle(req: HttpRequest, body: web::Payload, state: web::Data<State>) -> HttpResponse {
    let broker = &state.broker;
    let rid = request_id();
    let target = path::parse(req.uri().path(), &broker.config().api.stage);
    let (operation, result) = match routes::resolve(&target, req.method()) {
        Ok(op) => (op.name(), run(&req, body, &state, op, target).await),
        Err(e) => ("unknown", Err(e)),
    };
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

async fn run(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    op: Op,
    target: ControlPath,
) -> Result<HttpResponse, ApiError> {
    let broker = &state.broker;
    let body = if op.is_public() {
        // Probes and scrapers need no credentials; without any configured, they too must be
        // local programs (no DNS rebinding to read metrics from a web page).
        if !broker.config().control.requires_auth() {
            auth::check_local(req)?;
        }
        Bytes::new()
    } else {
        authenticated_body(req, payload, state, op).await?
    };
    let query = req.query_string();
    match (op, target) {
        (Op::Health, _) => Ok(json_response(200, r#"{"status":"ok"}"#.into())),
        (Op::Ready, _) => Ok(match broker.not_ready_reason() {
            Some(reason) => json_response(
                503,
                serde_json::json!({"status": "not ready", "reason": reason}).to_string(),
            ),
            None => json_response(200, r#"{"status":"ready"}"#.into()),
        }),
        (Op::Metrics, _) => Ok(HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(broker.metrics().render())),
        (Op::OpenApi, _) => Ok(json_response(200, openapi::document().to_string())),
        (Op::PostToConnection, ControlPath::Connection(id)) => {
            broker.post_to_connection(&id, body).await?;
            Ok(HttpResponse::Ok().finish())
        }
        (Op::GetConnection, ControlPath::Connection(id)) => get_connection(broker, &id).await,
        (Op::DeleteConnection, ControlPath::Connection(id)) => {
            let (code, reason) = close_params(query)?;
            broker
                .delete_connection(&id, code, reason.as_deref())
                .await?;
            Ok(HttpResponse::NoContent().finish())
        }
        (Op::Subscribe, ControlPath::ConnectionChannel(id, channel)) => {
            broker.subscribe(&id, &channel).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        (Op::Unsubscribe, ControlPath::ConnectionChannel(id, channel)) => {
            broker.unsubscribe(&id, &channel).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        (Op::Publish, ControlPath::Channel(channel)) => {
            let exclude = query_param(query, "exclude");
            let fan = broker.publish(&channel, &body, exclude.as_deref()).await?;
            Ok(json_response(200, fan_out_body(&fan)))
        }
        (Op::GetChannel, ControlPath::Channel(channel)) => {
            let n = broker.subscriber_count(&channel).await?;
            Ok(json_response(200, format!(r#"{{"subscribers":{n}}}"#)))
        }
        (Op::Broadcast, _) => {
            let exclude = query_param(query, "exclude");
            let fan = broker.broadcast(&body, exclude.as_deref()).await?;
            Ok(json_response(200, fan_out_body(&fan)))
        }
        (Op::Batch, _) => Ok(json_response(
            200,
            batch::run(broker, &body).await?.to_string(),
        )),
        // `routes::resolve` only pairs operations with their own paths.
        _ => Err(ApiError::not_found()),
    }
}

/// `{"recipients": N}`, plus `"cluster": "unavailable"` when other nodes could not be reached.
fn fan_out_body(fan: &gangway_broker::FanOut) -> String {
    let mut body = serde_json::json!({ "recipients": fan.recipients });
    if fan.cluster_failed {
        body["cluster"] = "unavailable".into();
    }
    body.to_string()
}

fn json_response(status: u16, body: String) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .content_type("application/json")
    .body(body)
}

/// Checks the caller from the headers, then reads the body (bounded in size and time) and,
/// for SigV4, verifies the signature over it. A SigV4 body is read only once everything but
/// the body checked out, and only within the shared budget of unverified bodies.
async fn authenticated_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    op: Op,
) -> Result<Bytes, ApiError> {
    let config = state.broker.config();
    let limit = match op {
        Op::PostToConnection | Op::Publish | Op::Broadcast => config.limits.max_message_bytes,
        Op::Batch => config.limits.max_batch_bytes,
        _ => 0,
    };
    let timeout = Duration::from_secs(config.control.body_timeout_secs);
    match auth::authenticate(req, &config.control)? {
        Caller::Local | Caller::Bearer => body::read(req, payload, limit, timeout).await,
        Caller::SigV4(pre) => {
            let declared = body::declared_length(req)?;
            if declared.is_some_and(|n| n > limit) {
                return Err(body::too_large(limit));
            }
            let _room = state.budget.reserve(declared.unwrap_or(limit))?;
            let body = body::read(req, payload, limit, timeout).await?;
            auth::verify_body(req, &pre, &body)?;
            Ok(body)
        }
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn close_params(query: &str) -> Result<(Option<u16>, Option<String>), ApiError> {
    let code = match query_param(query, "code") {
        None => None,
        Some(v) => Some(
            v.parse::<u16>()
                .map_err(|_| ApiError::bad_request(format!("code must be a number, not {v:?}")))?,
        ),
    };
    Ok((code, query_param(query, "reason")))
}

async fn get_connection(broker: &Broker, id: &str) -> Result<HttpResponse, ApiError> {
    let info = broker.get_connection(id).await?;
    let mut identity = serde_json::json!({ "sourceIp": info.source_ip });
    if let Some(ua) = info.user_agent {
        identity["userAgent"] = serde_json::Value::String(ua);
    }
    let body = serde_json::json!({
        "connectedAt": rfc3339(info.connected_at_ms),
        "identity": identity,
        "lastActiveAt": rfc3339(info.last_active_at_ms),
    });
    Ok(json_response(200, body.to_string()))
}

/// RFC 3339 with milliseconds, as AWS writes GetConnection times.
fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
