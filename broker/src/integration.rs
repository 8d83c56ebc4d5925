//! Integrations: what a route does with an event — POST it to a backend (`http`) or answer
//! in-process (`mock`).
//!
//! Invariants: one shared keep-alive HTTP client that never follows redirects (a 3xx is a
//! non-2xx answer: a backend cannot send the signed event, with the client's headers, to
//! another URL); node-wide semaphores cap concurrent backend calls — one for `$connect` and
//! messages, one of its own for `$disconnect` deliveries, so a failing `$disconnect` backend
//! under connection churn cannot stall everyone's `$connect`; waiting for a permit counts
//! against the call's timeout; every call carries `X-Gangway-Signature`; response bodies are
//! read up to a bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::Semaphore;

use crate::config::{Config, IntegrationKind};
use crate::metrics::Metrics;
use crate::signature::{sign, SIGNATURE_HEADER};

/// What a route does.
#[derive(Debug, Clone)]
pub enum Integration {
    /// POST the event to `url`, waiting at most `timeout`.
    Http {
        /// Backend endpoint.
        url: reqwest::Url,
        /// Per-call timeout.
        timeout: Duration,
    },
    /// Echo the message, or answer `response`.
    Mock {
        /// Fixed answer; `None` echoes.
        response: Option<Bytes>,
    },
}

/// A configured route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route key.
    pub key: Arc<str>,
    /// What it does.
    pub integration: Integration,
    /// Whether a 2xx body goes back to the client.
    pub two_way: bool,
}

/// A backend's answer.
#[derive(Debug, Clone)]
pub struct BackendResponse {
    /// HTTP status.
    pub status: u16,
    /// `Sec-WebSocket-Protocol` response header, for `$connect`.
    pub subprotocol: Option<String>,
    /// Body, at most the configured bound.
    pub body: Bytes,
}

impl BackendResponse {
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a backend call produced no response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IntegrationError {
    /// The call took longer than the route's timeout.
    #[error("backend timed out after {0:?}")]
    Timeout(Duration),
    /// The backend could not be reached or broke the connection.
    #[error("backend unreachable: {0}")]
    Unreachable(String),
    /// The backend answered with a body over the bound.
    #[error("backend response larger than {0} bytes")]
    ResponseTooLarge(usize),
}

impl IntegrationError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            IntegrationError::Timeout(_) => "timeout",
            IntegrationError::Unreachable(_) => "unreachable",
            IntegrationError::ResponseTooLarge(_) => "response_too_large",
        }
    }
}

/// The routes of this node and the client that calls their backends.
#[derive(Debug)]
pub struct Integrations {
    routes: HashMap<String, Arc<Route>>,
    client: reqwest::Client,
    /// `$connect` and message calls.
    permits: Semaphore,
    /// `$disconnect` deliveries.
    disconnect_permits: Semaphore,
    secret: Vec<u8>,
    max_response_bytes: usize,
    metrics: Arc<Metrics>,
}

/// Failure to build the HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct ClientBuildError(#[from] reqwest::Error);

impl Integrations {
    /// Builds the routes of `config`, signing with `secret`.
    ///
    /// # Errors
    /// Fails when the HTTP client cannot be built (TLS set-up).
    pub fn new(
        config: &Config,
        secret: Vec<u8>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ClientBuildError> {
        // rustls needs a process-wide crypto provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let mut routes = HashMap::new();
        for (key, rc) in &config.routes {
            let integration = match rc.integration {
                IntegrationKind::Http => match rc.url.as_deref().map(reqwest::Url::parse) {
                    Some(Ok(url)) => Integration::Http {
                        url,
                        timeout: rc.timeout,
                    },
                    // Config validation guarantees a parseable URL; skip defensively.
                    _ => continue,
                },
                IntegrationKind::Mock => Integration::Mock {
                    response: rc.response.clone().map(Bytes::from),
                },
            };
            routes.insert(
                key.clone(),
                Arc::new(Route {
                    key: Arc::from(key.as_str()),
                    integration,
                    two_way: rc.two_way,
                }),
            );
        }
        Ok(Integrations {
            routes,
            client,
            permits: Semaphore::new(config.limits.max_concurrent_integration_calls),
            disconnect_permits: Semaphore::new(config.limits.max_concurrent_disconnect_calls),
            secret,
            max_response_bytes: config.limits.max_message_bytes,
            metrics,
        })
    }

    /// The route with this key.
    pub fn route(&self, key: &str) -> Option<&Arc<Route>> {
        self.routes.get(key)
    }

    /// True when a route with this key exists.
    pub fn has_route(&self, key: &str) -> bool {
        self.routes.contains_key(key)
    }

    /// POSTs a signed event to a backend. Waits for a node-wide permit first (`$disconnect`
    /// calls for one of their own); the wait counts against `timeout`.
    pub async fn call_http(
        &self,
        route_key: &str,
        url: &reqwest::Url,
        timeout: Duration,
        connection_id: &str,
        event_type: &'static str,
        event: Vec<u8>,
    ) -> Result<BackendResponse, IntegrationError> {
        let started = Instant::now();
        let permits = if route_key == "$disconnect" {
            &self.disconnect_permits
        } else {
            &self.permits
        };
        let result = tokio::time::timeout(timeout, async {
            let _permit = permits.acquire().await;
            self.post(url, route_key, connection_id, event_type, event)
                .await
        })
        .await
        .unwrap_or(Err(IntegrationError::Timeout(timeout)));
        self.metrics
            .integration_duration_seconds
            .with_label_values(&[route_key])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(r) if !r.is_success() => self
                .metrics
                .integration_errors_total
                .with_label_values(&[route_key, "status"])
                .inc(),
            Err(e) => self
                .metrics
                .integration_errors_total
                .with_label_values(&[route_key, e.kind()])
                .inc(),
            Ok(_) => {}
        }
        result
    }

    async fn post(
        &self,
        url: &reqwest::Url,
        route_key: &str,
        connection_id: &str,
        event_type: &'static str,
        event: Vec<u8>,
    ) -> Result<BackendResponse, IntegrationError> {
        let signature = sign(&self.secret, chrono::Utc::now().timestamp(), &event);
        let mut response = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header("X-Gangway-Route-Key", route_key)
            .header("X-Gangway-Event-Type", event_type)
            .header("X-Gangway-Connection-Id", connection_id)
            .body(event)
            .send()
            .await
            .map_err(|e| IntegrationError::Unreachable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let subprotocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| IntegrationError::Unreachable(error_chain(&e)))?
        {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(IntegrationError::ResponseTooLarge(self.max_response_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(BackendResponse {
            status,
            subprotocol,
            body: body.freeze(),
        })
    }
}

/// An error with its sources, for logs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
