//! Probes: `GET /healthz` (the process answers), `GET /readyz` (the node should get traffic),
//! `GET /metrics` (Prometheus text) and `GET /openapi.json`.

use actix_web::HttpResponse;
use gangway_broker::Broker;

use super::json_response;

/// `GET /healthz`.
pub fn health() -> HttpResponse {
    json_response(200, r#"{"status":"ok"}"#.into())
}

/// `GET /readyz`: 503 with the reason while draining or cut off from Redis.
pub fn ready(broker: &Broker) -> HttpResponse {
    match broker.not_ready_reason() {
        Some(reason) => json_response(
            503,
            serde_json::json!({"status": "not ready", "reason": reason}).to_string(),
        ),
        None => json_response(200, r#"{"status":"ready"}"#.into()),
    }
}

/// `GET /metrics`.
pub fn metrics(broker: &Broker) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(broker.metrics().render())
}

/// `GET /openapi.json`.
pub fn openapi() -> HttpResponse {
    json_response(200, crate::openapi::document().to_string())
}
