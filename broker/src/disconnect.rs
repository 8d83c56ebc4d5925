//! `$disconnect` delivery: at least once, retried with backoff.
//!
//! AWS calls `$disconnect` "best effort". Gangway retries a failed delivery (transport error,
//! timeout, 429 or 5xx) up to `disconnect_max_attempts` times with exponential backoff, keeping
//! the same `requestId` so a backend can drop duplicates. Deliveries are tracked, so a draining
//! node waits for them (up to its grace period).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;

use crate::broker::Shared;
use crate::connection::Connection;
use crate::event::{build_event, EventKind};
use crate::id::request_id;
use crate::integration::Integration;

/// First retry delay; doubles each attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Sends `$disconnect` for `conn` (if the route is an http integration), after its dispatcher
/// has finished the messages it had already accepted. Returns the delivery task, if any.
pub(crate) fn schedule(
    shared: &Arc<Shared>,
    conn: Arc<Connection>,
    code: u16,
    reason: String,
    dispatcher: Option<JoinHandle<()>>,
) -> Option<JoinHandle<()>> {
    let route = shared.integrations.route("$disconnect").cloned()?;
    let Integration::Http { url, timeout } = route.integration.clone() else {
        return None;
    };
    let s = Arc::clone(shared);
    Some(shared.disconnects.spawn(async move {
        if let Some(d) = dispatcher {
            let _ = d.await;
        }
        let config = &s.config;
        let rid = request_id();
        let source_ip = conn.source_ip.to_string();
        let event = build_event(
            &conn.event_source(&config.api, &source_ip),
            &EventKind::Disconnect {
                status_code: code,
                reason: &reason,
            },
            &rid,
            Utc::now(),
        );
        let max_attempts = config.limits.disconnect_max_attempts;
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=max_attempts {
            let result = s
                .integrations
                .call_http("$disconnect", &url, timeout, &conn.id_text, "DISCONNECT", event.clone())
                .await;
            let retry = match &result {
                Ok(r) if r.is_success() => {
                    s.metrics.disconnect_events_total.with_label_values(&["delivered"]).inc();
                    return;
                }
                Ok(r) => r.status == 429 || r.status >= 500,
                Err(_) => true,
            };
            if !retry {
                s.metrics.disconnect_events_total.with_label_values(&["rejected"]).inc();
                tracing::warn!(connection_id = %conn.id_text, "backend refused $disconnect; not retrying");
                return;
            }
            if attempt < max_attempts {
                s.metrics.disconnect_events_total.with_label_values(&["retried"]).inc();
                tracing::debug!(connection_id = %conn.id_text, attempt, "$disconnect delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        s.metrics.disconnect_events_total.with_label_values(&["failed"]).inc();
        tracing::error!(connection_id = %conn.id_text, attempts = max_attempts, "$disconnect event could not be delivered");
    }))
}
