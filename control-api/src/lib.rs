//! Gangway's control plane: the AWS-compatible `@connections` API, channels, broadcast and
//! batch, health, readiness, metrics and the OpenAPI document, over a [`Broker`], on its own
//! listener.
//!
//! Layout: [`path`] parses request paths (AWS's `@`/`%40` and encoded ids); [`routes`] maps
//! them to operations (and feeds [`openapi`]) and holds a handler file per resource
//! (`connections`, `channels`, `broadcast`, `batch`, `probes`); [`auth`] checks callers
//! ([`auth::bearer`] tokens, [`auth::sigv4`] signatures, or local-only); [`body`] reads bodies
//! within bounds; [`config`] is `[control]` and [`access`] the one in force; [`reload`] is the
//! seam through which the binary reloads the node; [`error`] is the one error shape and the
//! one table from broker errors to statuses; this file wires them into actix-web.
//!
//! Every response carries `x-amzn-RequestId`. Broker calls are `async`: they may wait for another
//! node's answer through Redis (at most `rpc_timeout_ms`) but never on a WebSocket client, so a
//! slow client cannot stall the control API.

pub mod access;
pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod openapi;
pub mod path;
pub mod peer;
pub mod reload;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use gangway_broker::request_id;
use gangway_broker::Broker;

pub use crate::access::Access;
pub use crate::reload::{Outcome as ReloadOutcome, Reload};

use crate::auth::Caller;
use crate::body::UnverifiedBudget;
use crate::error::ApiError;
use crate::path::ControlPath;
use crate::routes::Op;

/// Options of the control server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// actix worker threads.
    pub workers: usize,
    /// `[control]`: who may call (a reload replaces it).
    pub access: Arc<Access>,
    /// What `POST /@admin/reload` runs; `None`: the endpoint answers 404.
    pub reload: Option<Arc<dyn Reload>>,
    /// Serve HTTPS with this configuration (its certificate resolver may be swapped by a
    /// reload); `None`: plain HTTP.
    pub tls: Option<rustls::ServerConfig>,
}

impl Default for ServerOptions {
    /// Two workers; no credentials (local callers only); no reload.
    fn default() -> Self {
        ServerOptions {
            workers: 2,
            access: Access::new(config::ControlConfig::default()),
            reload: None,
            tls: None,
        }
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
    let data = web::Data::new(State {
        broker,
        access: options.access,
        reload: options.reload,
        budget,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(serve_request))
    })
    .workers(options.workers.max(1))
    .disable_signals()
    .shutdown_timeout(5);
    let server = match options.tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// What every request handler shares.
struct State {
    broker: Broker,
    /// `[control]` in force.
    access: Arc<Access>,
    /// `POST /@admin/reload`.
    reload: Option<Arc<dyn Reload>>,
    /// Bodies read before their SigV4 signature can be checked.
    budget: UnverifiedBudget,
}

/// The single entry point: resolve the operation, check credentials, run it.
async fn serve_request(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
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
        if !state.access.current().requires_auth() {
            auth::check_local(req)?;
        }
        Bytes::new()
    } else {
        authenticated_body(req, payload, state, op).await?
    };
    let call = routes::Call {
        broker,
        body,
        query: req.query_string(),
        reload: state.reload.as_deref(),
    };
    op.run(call, target).await
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
    let control = state.access.current();
    let timeout = Duration::from_secs(control.body_timeout_secs);
    let caller = auth::authenticate(req, &control)?;
    let admit = |key: access::CredentialKey| {
        if state.access.admit(&key) {
            Ok(())
        } else {
            Err(ApiError::new(
                429,
                "LimitExceededException",
                "Too many requests for this credential: slow down (rate_per_credential)",
            ))
        }
    };
    match caller {
        Caller::Local => {
            admit("local".into())?;
            body::read(req, payload, limit, timeout).await
        }
        Caller::Bearer => {
            admit(auth::bearer_key(req))?;
            body::read(req, payload, limit, timeout).await
        }
        Caller::SigV4(pre) => {
            let declared = body::declared_length(req)?;
            if declared.is_some_and(|n| n > limit) {
                return Err(body::too_large(limit));
            }
            let _room = state.budget.reserve(declared.unwrap_or(limit))?;
            let body = body::read(req, payload, limit, timeout).await?;
            auth::verify_body(req, &pre, &body)?;
            // Charged only now: a forged signature cannot spend the key's budget.
            admit(format!("sigv4:{}", pre.access_key_id()))?;
            Ok(body)
        }
    }
}
