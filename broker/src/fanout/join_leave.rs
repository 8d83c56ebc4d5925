//! Join and leave messages: on a channel whose rule has `join_leave = true`, every subscriber
//! is told when another connection subscribes (`{"type":"join",…}`) or leaves — unsubscribed,
//! or closed (`{"type":"leave",…}`). They carry no offset and are not kept: they say who is
//! there now, which a recovering client learns from the presence API instead.
//!
//! A connection of a node that dies without draining gets no leave message (nobody is left to
//! send it); the presence API stops listing it once the node is judged dead.

use std::sync::Arc;

use crate::conn::connection::Connection;
use crate::fanout::{envelope, fan_out, Audience};
use crate::state::NodeState;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The connection subscribed.
    Join,
    /// It unsubscribed or closed.
    Leave,
}

/// Tells `channel`'s other subscribers (on every node) that `conn` joined or left, when the
/// channel's rule asks for it. Never waits: another node hears of it through a task.
pub fn announce(state: &NodeState, channel: &str, conn: &Connection, change: Change) {
    if !state
        .config()
        .channels
        .get(channel)
        .is_some_and(|r| r.join_leave)
    {
        return;
    }
    let info = conn.info();
    let principal = info
        .authorizer
        .as_ref()
        .and_then(|a| a.get("principalId"))
        .and_then(|p| p.as_str());
    let kind = match change {
        Change::Join => "join",
        Change::Leave => "leave",
    };
    let payload = envelope::join_leave(channel, kind, &conn.id_text, principal);
    fan_out(
        state,
        Audience::Channel(channel),
        &payload,
        Some(conn.id),
        "publish",
        false,
    );
    if let Some(c) = state.cluster() {
        let (c, channel, id) = (Arc::clone(c), channel.to_string(), conn.id);
        tokio::spawn(async move {
            if let Err(e) = c.channel_event(&channel, Some(id), &payload).await {
                tracing::debug!(channel, error = %e, "join/leave message not sent to the cluster");
            }
        });
    }
}
