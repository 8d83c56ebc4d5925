//! The access log: one `info` line per connection at target `gangway::access` (JSON with
//! `--log-format json`), written when the connection ends — or when its upgrade is refused
//! with an HTTP status — so an operator sees who connected, what `$connect` said, how it
//! ended and how much it carried. `[log] access = false` turns it off.
//!
//! The client's strings (user agent, close reason) are logged escaped (`Debug`), so a client
//! cannot forge a log line.
//!
//! Cheap by construction: the counters it reports are kept anyway (the session counts what
//! it reads; the outbox counts what it accepts, under the lock every push already takes), and
//! the line is formatted only when the filter lets `gangway::access` through at `info`.

use std::net::IpAddr;

use chrono::Utc;

use crate::conn::connection::Connection;
use crate::state::NodeState;
use crate::ws::session::Ended;

/// The tracing target of access lines (filter it with `gangway::access=off`, for example).
pub const TARGET: &str = "gangway::access";

/// An upgrade refused with `status` before it became a connection.
pub(crate) fn refused(
    state: &NodeState,
    client: IpAddr,
    user_agent: Option<&str>,
    status: u16,
    reason: &str,
) {
    if !state.config().access_log {
        return;
    }
    tracing::info!(
        target: TARGET,
        source_ip = %client,
        user_agent = ?user_agent.unwrap_or(""),
        stage = %state.config().api.stage,
        connect_status = status,
        refusal = reason,
        "refused"
    );
}

/// A connection that ended as `ended` says.
pub(crate) fn closed(state: &NodeState, conn: &Connection, ended: &Ended) {
    if !state.config().access_log {
        return;
    }
    let sent = conn.outbox.sent();
    let duration_ms = Utc::now()
        .timestamp_millis()
        .saturating_sub(conn.connected_at_ms)
        .max(0);
    tracing::info!(
        target: TARGET,
        connection_id = %conn.id_text,
        source_ip = %conn.source_ip,
        user_agent = ?conn.user_agent.as_deref().unwrap_or(""),
        stage = %state.config().api.stage,
        connect_status = 101u16,
        close_code = ended.code,
        close_reason = ?ended.reason,
        closed_by = ended.label,
        duration_ms,
        messages_in = ended.received,
        messages_out = sent.frames,
        bytes_in = ended.received_bytes,
        bytes_out = sent.bytes,
        "closed"
    );
}
