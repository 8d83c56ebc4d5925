//! The node's inbox: every message Redis delivers to it — requests from other nodes (run with
//! [`crate::ops::execute`], answered with the typed result), answers to this node's calls, and
//! other nodes' publishes and broadcasts (delivered with [`crate::fanout::fan_out`]).
//!
//! Invariants:
//! - what arrives from Redis is decoded without trusting it: malformed messages and payloads
//!   over this node's `max_message_bytes` are dropped and counted, never delivered;
//! - a node's own publishes come back from Redis and are skipped (it delivered locally);
//! - nothing here waits on a WebSocket client; requests are answered on tracked tasks of their
//!   own (a subscribe waits for Redis).

use std::sync::Arc;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::wire::Msg;
use super::{keys, Cluster};
use crate::conn::id::{ConnectionId, NodeTag};
use crate::fanout::{self, fan_out, Audience};
use crate::state::NodeState;

fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// Reads the inbox until the cluster stops.
pub(super) async fn read(
    state: Arc<NodeState>,
    cluster: Arc<Cluster>,
    mut rx: mpsc::Receiver<PushInfo>,
) {
    while let Some(info) = rx.recv().await {
        match info.kind {
            PushKind::Message | PushKind::SMessage => {}
            PushKind::Disconnection => {
                cluster.set_up(false);
                continue;
            }
            _ => continue,
        }
        let Some(payload) = info.data.get(1).and_then(bulk) else {
            continue;
        };
        match Msg::decode(payload) {
            Ok(msg) => on_message(&state, &cluster, msg),
            Err(e) => {
                state
                    .metrics
                    .cluster_dropped_total
                    .with_label_values(&["malformed"])
                    .inc();
                tracing::warn!(error = %e, "undecodable cluster message");
            }
        }
    }
}

fn count_in(state: &NodeState, kind: &str) {
    state
        .metrics
        .cluster_messages_total
        .with_label_values(&["in", kind])
        .inc();
}

fn on_message(state: &Arc<NodeState>, cluster: &Arc<Cluster>, msg: Msg) {
    match msg {
        Msg::Request {
            req_id,
            reply_to,
            conn,
            op,
        } => {
            count_in(state, "request");
            let (state, c) = (Arc::clone(state), Arc::clone(cluster));
            cluster.spawn(async move {
                let result = crate::ops::execute(&state, conn, op).await;
                let reply = Msg::Reply { req_id, result };
                if let Err(e) = c.send(&keys::inbox(reply_to), &reply).await {
                    tracing::warn!(error = %e, "cannot answer a cross-node call");
                }
            });
        }
        Msg::Reply { req_id, result } => {
            count_in(state, "reply");
            cluster.calls.answer(req_id, result);
        }
        Msg::Count { req_id, count } => {
            count_in(state, "reply");
            cluster.calls.answer_count(req_id, count);
        }
        Msg::HistoryPublish {
            origin: _,
            channel,
            exclude,
            payload,
            epoch,
            offset,
        } => {
            // The publisher's own messages come back too: Redis's order is the channel's.
            if too_large(state, &payload) {
                return;
            }
            count_in(state, "publish");
            fanout::relay(state, &channel, &payload, exclude, offset, &epoch);
        }
        Msg::Publish {
            origin,
            channel,
            exclude,
            payload,
        } => fan_in(
            state,
            cluster,
            origin,
            Audience::Channel(&channel),
            &payload,
            exclude,
        ),
        Msg::ChannelEvent {
            origin,
            channel,
            exclude,
            payload,
        } => {
            if origin == cluster.tag || too_large(state, &payload) {
                return;
            }
            count_in(state, "publish");
            fan_out(
                state,
                Audience::Channel(&channel),
                &payload,
                exclude,
                "cluster_publish",
                false,
            );
        }
        Msg::Broadcast {
            origin,
            exclude,
            payload,
        } => fan_in(
            state,
            cluster,
            origin,
            Audience::Everyone,
            &payload,
            exclude,
        ),
        Msg::CountQuery {
            req_id,
            reply_to,
            channel,
        } => {
            if reply_to == cluster.tag {
                return;
            }
            let count = state.channels.subscriber_count(&channel) as u64;
            let c = Arc::clone(cluster);
            cluster.spawn(async move {
                let _ = c
                    .send(&keys::inbox(reply_to), &Msg::Count { req_id, count })
                    .await;
            });
        }
    }
}

/// Another node checked the size, but what arrives from Redis is checked again: a message over
/// this node's limit is never sent to its clients (counted as dropped).
fn too_large(state: &NodeState, payload: &[u8]) -> bool {
    let over = payload.len() > state.config().limits.max_message_bytes;
    if over {
        state
            .metrics
            .cluster_dropped_total
            .with_label_values(&["too_large"])
            .inc();
    }
    over
}

/// Delivers another node's publish or broadcast to this node's connections.
fn fan_in(
    state: &NodeState,
    cluster: &Cluster,
    origin: NodeTag,
    audience: Audience<'_>,
    payload: &[u8],
    exclude: Option<ConnectionId>,
) {
    if origin == cluster.tag {
        return;
    }
    if too_large(state, payload) {
        return;
    }
    let (kind, source) = match audience {
        Audience::Channel(_) => ("publish", "cluster_publish"),
        Audience::Everyone => ("broadcast", "cluster_broadcast"),
    };
    count_in(state, kind);
    // Never write-through here: this runs on a runtime worker, which must not spend a long
    // fan-out in system calls while other connections wait for it.
    match audience {
        // The channel's rule applies here too (the JSON envelope is wrapped by each node).
        Audience::Channel(name) => {
            fanout::publish(state, name, payload, exclude, source, false);
        }
        Audience::Everyone => {
            fan_out(state, audience, payload, exclude, source, false);
        }
    }
}
