//! Operations on this node's own connections: what the owner of a connection does when asked —
//! by this node's control API through the façade, or by another node through the cluster. The
//! same code answers both, so a failure reads the same from every node.

use std::sync::Arc;

use crate::conn::close;
use crate::conn::connection::Connection;
use crate::conn::frame;
use crate::conn::id::ConnectionId;
use crate::conn::op::{ConnOp, Listed, OpOutcome};
use crate::error::ConnectionError;
use crate::fanout::channels;
use crate::fanout::{deliver, join_leave};
use crate::state::NodeState;

/// Runs `op` on connection `id` of this node.
pub async fn execute(
    state: &NodeState,
    id: ConnectionId,
    op: ConnOp,
) -> Result<OpOutcome, ConnectionError> {
    match op {
        ConnOp::Post(payload) => post(state, id, &payload).map(|()| OpOutcome::Done),
        ConnOp::Get => Ok(OpOutcome::Info(lookup(state, id)?.info())),
        ConnOp::Delete { code, reason } => {
            delete(state, id, code, &reason).map(|()| OpOutcome::Done)
        }
        ConnOp::Subscribe(channel) => {
            let conn = lookup(state, id)?;
            subscribe(state, &conn, &channel)
                .await
                .map(|()| OpOutcome::Done)
        }
        ConnOp::Unsubscribe(channel) => {
            let conn = lookup(state, id)?;
            unsubscribe(state, &conn, &channel)
                .await
                .map(|()| OpOutcome::Done)
        }
        ConnOp::PostMany(items) => Ok(OpOutcome::Each(
            items
                .iter()
                .map(|(id, payload)| post(state, *id, payload))
                .collect(),
        )),
        ConnOp::List { after, limit } => Ok(list(state, after, limit)),
        ConnOp::ListChannel {
            channel,
            after,
            limit,
        } => Ok(list_channel(state, &channel, after, limit)),
    }
}

/// A page of this node's subscribers of `channel` (see [`ConnOp::ListChannel`]).
pub fn list_channel(
    state: &NodeState,
    channel: &str,
    after: ConnectionId,
    limit: u32,
) -> OpOutcome {
    let mut subs: Vec<Arc<Connection>> = Vec::new();
    state.channels.for_each_subscriber(channel, |c| {
        if c.id > after {
            subs.push(Arc::clone(c));
        }
    });
    let limit = limit as usize;
    let more = subs.len() > limit;
    if more {
        subs.select_nth_unstable_by_key(limit, |c| c.id);
        subs.truncate(limit);
    }
    subs.sort_unstable_by_key(|c| c.id);
    let items = subs
        .iter()
        .map(|c| Listed {
            id: c.id,
            info: c.info(),
            channels: Vec::new(),
        })
        .collect();
    OpOutcome::Listed { items, more }
}

/// A page of this node's open connections (see [`ConnOp::List`]).
pub fn list(state: &NodeState, after: ConnectionId, limit: u32) -> OpOutcome {
    let (conns, more) = state.registry.page_after(after, limit as usize);
    let items = conns
        .iter()
        .map(|c| Listed {
            id: c.id,
            info: c.info(),
            channels: c.channels_lock().iter().map(|ch| ch.to_string()).collect(),
        })
        .collect();
    OpOutcome::Listed { items, more }
}

/// The record of an open connection of this node.
pub fn lookup(state: &NodeState, id: ConnectionId) -> Result<Arc<Connection>, ConnectionError> {
    state.registry.get(&id).ok_or(ConnectionError::Gone)
}

/// Checks a payload against `max_message_bytes`.
pub fn check_size(state: &NodeState, data: &[u8]) -> Result<(), ConnectionError> {
    let max = state.config().limits.max_message_bytes;
    if data.len() > max {
        return Err(ConnectionError::PayloadTooLarge {
            size: data.len(),
            max,
        });
    }
    Ok(())
}

/// Checks a close code a caller chose (1000 or 3000–4999) and its reason (≤ 123 bytes).
pub fn check_close(code: u16, reason: &str) -> Result<(), ConnectionError> {
    if !close::is_user_code(code) {
        return Err(ConnectionError::InvalidClose(format!(
            "close code {code} is not allowed: use 1000 or 3000-4999"
        )));
    }
    if reason.len() > 123 {
        return Err(ConnectionError::InvalidClose(format!(
            "close reason is {} bytes; at most 123 fit in a close frame",
            reason.len()
        )));
    }
    Ok(())
}

/// Checks a channel name.
pub fn check_channel(name: &str) -> Result<(), ConnectionError> {
    channels::validate_name(name).map_err(ConnectionError::InvalidChannel)
}

/// PostToConnection: queues `payload` as a text frame when it is UTF-8, binary otherwise.
pub fn post(state: &NodeState, id: ConnectionId, payload: &[u8]) -> Result<(), ConnectionError> {
    check_size(state, payload)?;
    let conn = lookup(state, id)?;
    deliver(state, &conn, frame::text_or_binary(payload), "push")
}

/// DeleteConnection: asks the connection to close with `code` and `reason`.
pub fn delete(
    state: &NodeState,
    id: ConnectionId,
    code: u16,
    reason: &str,
) -> Result<(), ConnectionError> {
    check_close(code, reason)?;
    let conn = lookup(state, id)?;
    if conn.outbox.request_close(code, reason) {
        Ok(())
    } else {
        Err(ConnectionError::Gone)
    }
}

/// Subscribes an open connection to `channel` (idempotent); returns once the subscription is
/// live cluster-wide.
pub async fn subscribe(
    state: &NodeState,
    conn: &Arc<Connection>,
    channel: &str,
) -> Result<(), ConnectionError> {
    check_channel(channel)?;
    let max = state.config().limits.max_channels_per_connection;
    match state.channels.subscribe(channel, conn, max) {
        Ok(new) => {
            if let Some(c) = state.cluster() {
                c.reconcile(channel).await;
            }
            if new {
                join_leave::announce(state, channel, conn, join_leave::Change::Join);
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Unsubscribes a connection from `channel` (idempotent for a live connection).
pub async fn unsubscribe(
    state: &NodeState,
    conn: &Connection,
    channel: &str,
) -> Result<(), ConnectionError> {
    check_channel(channel)?;
    if state.channels.unsubscribe(channel, conn) {
        join_leave::announce(state, channel, conn, join_leave::Change::Leave);
        if let Some(c) = state.cluster() {
            c.reconcile(channel).await;
        }
    }
    Ok(())
}
