//! A connection's dispatcher: hands its messages to their routes' integrations, one at a time,
//! in the order the client sent them, and queues two-way answers back to the client.
//!
//! Spawned on a connection's first message that its route does not answer at once; its queue
//! is bounded by `inbound_queue_messages`. It ends when the connection's task drops the sender,
//! after it has delivered every message already accepted.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::connection::Connection;
use crate::conn::frame;
use crate::conn::id::request_id;
use crate::fanout::deliver;
use crate::integration::event::{EventKind, EventSource, MessageBody};
use crate::integration::{Call, Route};
use crate::state::NodeState;

/// One inbound message bound for an integration.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) route: Arc<Route>,
    pub(crate) message: Message,
}

/// Starts a dispatcher for `conn`.
pub(crate) fn spawn(
    state: Arc<NodeState>,
    conn: Arc<Connection>,
) -> (mpsc::Sender<Inbound>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(state.config().limits.inbound_queue_messages);
    let tracker = state.connections.clone();
    let handle = tracker.spawn(run(state, conn, rx));
    (tx, handle)
}

async fn run(state: Arc<NodeState>, conn: Arc<Connection>, mut rx: mpsc::Receiver<Inbound>) {
    while let Some(inbound) = rx.recv().await {
        dispatch_one(&state, &conn, inbound).await;
    }
}

async fn dispatch_one(state: &NodeState, conn: &Connection, inbound: Inbound) {
    let body = match &inbound.message {
        Message::Text(t) => MessageBody::Text(t.as_str()),
        Message::Binary(b) => MessageBody::Binary(b),
        _ => return,
    };
    let rid = request_id();
    let source_ip = conn.source_ip.to_string();
    let config = state.config.load_full();
    let call = Call {
        source: EventSource::of(conn, &config.api, &source_ip),
        kind: EventKind::Message {
            route_key: &inbound.route.key,
            message_id: &rid,
            body,
        },
        request_id: &rid,
    };
    match inbound.route.integration.message(call).await {
        Ok(r) if r.is_success() => {
            if inbound.route.two_way && !r.body.is_empty() {
                let _ = deliver(state, conn, frame::text_or_binary(&r.body), "route");
            }
            return;
        }
        Ok(r) => {
            tracing::warn!(connection_id = %conn.id_text, route = %inbound.route.key, status = r.status, "backend answered with an error status");
        }
        Err(e) => {
            tracing::warn!(connection_id = %conn.id_text, route = %inbound.route.key, error = %e, "backend call failed");
        }
    }
    let error = frame::gateway_error_for("Internal server error", &conn.id_text, &rid);
    let _ = deliver(state, conn, error, "gateway");
}
