//! The `http` integration: POSTs AWS's Lambda-proxy event to a backend URL, signed.
//!
//! Invariants: one shared keep-alive HTTP client that never follows redirects (a 3xx is a
//! non-2xx answer: a backend cannot send the signed event, with the client's headers, to
//! another URL); node-wide semaphores cap concurrent calls — one for `$connect` and messages,
//! one of its own for `$disconnect` deliveries, so a failing `$disconnect` backend under
//! connection churn cannot stall everyone's `$connect`; waiting for a permit counts against
//! the call's timeout; every call carries `X-Gangway-Signature`; answers are read up to
//! `max_message_bytes`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::config::{Config, ResponseFormat};
use crate::integration::event::build_event;
use crate::integration::signature::{sign, SIGNATURE_HEADER};
use crate::integration::{lambda, Answer, Call, Integration, IntegrationError};
use crate::metrics::Metrics;

/// The HTTP client every `http` route shares.
#[derive(Debug)]
pub struct Client {
    client: reqwest::Client,
    /// `$connect` and message calls.
    permits: Semaphore,
    /// `$disconnect` deliveries.
    disconnect_permits: Semaphore,
    secret: Vec<u8>,
    max_response_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Client {
    /// A client for `config`'s limits, signing with `secret`.
    ///
    /// # Errors
    /// Fails when the TLS set-up fails.
    pub fn new(
        config: &Config,
        secret: Vec<u8>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
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
        Ok(Client {
            client,
            permits: Semaphore::new(config.limits.max_concurrent_integration_calls),
            disconnect_permits: Semaphore::new(config.limits.max_concurrent_disconnect_calls),
            secret,
            max_response_bytes: config.limits.max_message_bytes,
            metrics,
        })
    }

    /// POSTs the signed event of `call` to `url`: waits for a permit (of `permits`), all within
    /// `timeout`, reads the answer as `format` says, and records the call's latency and failure
    /// (of the answer as read: a Lambda result's `statusCode` counts) in the metrics.
    async fn call(
        &self,
        url: &reqwest::Url,
        timeout: Duration,
        format: ResponseFormat,
        call: Call<'_>,
        permits: &Semaphore,
    ) -> Result<Answer, IntegrationError> {
        let started = Instant::now();
        let route_key = call.kind.route_key();
        let result = tokio::time::timeout(timeout, async {
            let _permit = permits.acquire().await;
            let answer = self.post(url, call).await?;
            match format {
                ResponseFormat::Raw => Ok(answer),
                ResponseFormat::Lambda => lambda::decode(answer),
            }
        })
        .await
        .unwrap_or(Err(IntegrationError::Timeout(timeout)));
        let m = &self.metrics;
        m.integration_duration_seconds
            .with_label_values(&[route_key])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(r) if !r.is_success() => m
                .integration_errors_total
                .with_label_values(&[route_key, "status"])
                .inc(),
            Err(e) => m
                .integration_errors_total
                .with_label_values(&[route_key, e.kind()])
                .inc(),
            Ok(_) => {}
        }
        result
    }

    async fn post(&self, url: &reqwest::Url, call: Call<'_>) -> Result<Answer, IntegrationError> {
        let event = build_event(
            &call.source,
            &call.kind,
            call.request_id,
            chrono::Utc::now(),
        );
        let signature = sign(&self.secret, chrono::Utc::now().timestamp(), &event);
        let mut response = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header("X-Gangway-Route-Key", call.kind.route_key())
            .header("X-Gangway-Event-Type", call.kind.event_type())
            .header("X-Gangway-Connection-Id", call.source.connection_id)
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
        Ok(Answer {
            status,
            subprotocol,
            body: body.freeze(),
        })
    }
}

/// One `http` route: its URL, timeout and answer format over the shared [`Client`].
#[derive(Debug)]
pub struct Http {
    url: reqwest::Url,
    timeout: Duration,
    format: ResponseFormat,
    client: Arc<Client>,
}

impl Http {
    /// A route POSTing to `url`, each call within `timeout`, reading answers as `format`.
    pub fn new(
        url: reqwest::Url,
        timeout: Duration,
        format: ResponseFormat,
        client: Arc<Client>,
    ) -> Self {
        Http {
            url,
            timeout,
            format,
            client,
        }
    }

    async fn call(&self, call: Call<'_>, permits: &Semaphore) -> Result<Answer, IntegrationError> {
        self.client
            .call(&self.url, self.timeout, self.format, call, permits)
            .await
    }
}

impl Integration for Http {
    fn connect<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        Box::pin(self.call(call, &self.client.permits))
    }

    fn answer_now(&self, _message: &Message) -> Option<Bytes> {
        None
    }

    fn message<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        Box::pin(self.call(call, &self.client.permits))
    }

    fn delivers_disconnect(&self) -> bool {
        true
    }

    fn disconnect<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        Box::pin(self.call(call, &self.client.disconnect_permits))
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
