//! `$disconnect` delivery: at least once, retried with backoff.
//!
//! AWS calls `$disconnect` "best effort". Gangway retries a failed delivery (transport error,
//! timeout, 429 or 5xx) up to `disconnect_max_attempts` times with exponential backoff, keeping
//! the same `requestId` so a backend can drop duplicates. That `requestId` is derived from the
//! connection id ([`disconnect_request_id`]), so a reaper's or a restarted node's copy carries
//! it too. Deliveries are tracked, so a draining
//! node waits for them (up to its grace period).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::conn::connection::Connection;
use crate::conn::id::disconnect_request_id;
use crate::integration::event::{EventKind, EventSource};
use crate::integration::Call;
use crate::state::NodeState;

/// First retry delay; doubles each attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Sends `$disconnect` for `conn` (when its route delivers one), after its dispatcher has
/// finished the messages it had already accepted. Returns the delivery task, if any.
pub(crate) fn schedule(
    state: &Arc<NodeState>,
    conn: Arc<Connection>,
    code: u16,
    reason: String,
    dispatcher: Option<JoinHandle<()>>,
) -> Option<JoinHandle<()>> {
    let route = state.routes().get("$disconnect").cloned()?;
    if !route.integration.delivers_disconnect() {
        return None;
    }
    let s = Arc::clone(state);
    Some(state.disconnects.spawn(async move {
        if let Some(d) = dispatcher {
            let _ = d.await;
        }
        let rid = disconnect_request_id(conn.id);
        let source_ip = conn.source_ip.to_string();
        let config = s.config.load_full();
        let call = Call {
            source: EventSource::of(&conn, &config.api, &source_ip),
            kind: EventKind::Disconnect {
                status_code: code,
                reason: &reason,
            },
            request_id: &rid,
        };
        let metrics = &s.metrics;
        let max_attempts = s.config().limits.disconnect_max_attempts;
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=max_attempts {
            let retry = match route.integration.disconnect(call).await {
                Ok(r) if r.is_success() => {
                    metrics.disconnect_events_total.with_label_values(&["delivered"]).inc();
                    return;
                }
                Ok(r) => r.status == 429 || r.status >= 500,
                Err(_) => true,
            };
            if !retry {
                metrics.disconnect_events_total.with_label_values(&["rejected"]).inc();
                tracing::warn!(connection_id = %conn.id_text, "backend refused $disconnect; not retrying");
                return;
            }
            if attempt < max_attempts {
                metrics.disconnect_events_total.with_label_values(&["retried"]).inc();
                tracing::debug!(connection_id = %conn.id_text, attempt, "$disconnect delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        metrics.disconnect_events_total.with_label_values(&["failed"]).inc();
        tracing::error!(connection_id = %conn.id_text, attempts = max_attempts, "$disconnect event could not be delivered");
    }))
}
