//! What every backend-calling integration shares: node-wide permits, the call's deadline and
//! the metrics of its outcome.
//!
//! Invariants: one semaphore for `$connect` and message calls and one of its own for
//! `$disconnect` deliveries, so a failing `$disconnect` backend under connection churn cannot
//! stall everyone's `$connect`; waiting for a permit counts against the call's timeout; every
//! call's latency and failure (of the answer as read: a Lambda result's `statusCode` counts) is
//! recorded under its route key.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::integration::{Answer, IntegrationError};
use crate::metrics::Metrics;

/// Which semaphore a call waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// `$connect` and messages.
    Calls,
    /// `$disconnect` deliveries.
    Disconnect,
}

/// The node-wide budget of backend calls (see the module documentation).
#[derive(Debug)]
pub struct Budget {
    calls: Semaphore,
    disconnects: Semaphore,
    /// The largest answer body any integration reads (`max_message_bytes`).
    pub max_response_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Budget {
    /// The budget `config`'s limits allow.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        Budget {
            calls: Semaphore::new(config.limits.max_concurrent_integration_calls),
            disconnects: Semaphore::new(config.limits.max_concurrent_disconnect_calls),
            max_response_bytes: config.limits.max_message_bytes,
            metrics,
        }
    }

    /// Runs `call` for `route_key` holding a permit of `lane`, all within `timeout`, and
    /// records its latency and outcome.
    pub async fn run(
        &self,
        lane: Lane,
        route_key: &str,
        timeout: Duration,
        call: impl Future<Output = Result<Answer, IntegrationError>>,
    ) -> Result<Answer, IntegrationError> {
        let started = Instant::now();
        let permits = match lane {
            Lane::Calls => &self.calls,
            Lane::Disconnect => &self.disconnects,
        };
        let result = tokio::time::timeout(timeout, async {
            let _permit = permits.acquire().await;
            call.await
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
}
