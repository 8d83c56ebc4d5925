//! A connection's dispatcher: calls backends for its messages, one at a time, in the order the
//! client sent them, and queues two-way answers back to the client.
//!
//! Spawned on a connection's first message that needs a backend; its queue is bounded by
//! `inbound_queue_messages`. It ends when the connection's task drops the sender, after it has
//! delivered every message already accepted.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::broker::{deliver, Shared};
use crate::connection::Connection;
use crate::event::{build_event, EventKind, MessageBody};
use crate::gateway_frame;
use crate::id::request_id;
use crate::integration::{Integration, Route};

/// One inbound message bound for a backend.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) route: Arc<Route>,
    pub(crate) message: Message,
}

/// Starts a dispatcher for `conn`.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    conn: Arc<Connection>,
) -> (mpsc::Sender<Inbound>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(shared.config.limits.inbound_queue_messages);
    let tracker = shared.connections.clone();
    let handle = tracker.spawn(run(shared, conn, rx));
    (tx, handle)
}

async fn run(shared: Arc<Shared>, conn: Arc<Connection>, mut rx: mpsc::Receiver<Inbound>) {
    while let Some(inbound) = rx.recv().await {
        dispatch_one(&shared, &conn, inbound).await;
    }
}

async fn dispatch_one(shared: &Shared, conn: &Connection, inbound: Inbound) {
    let Integration::Http { url, timeout } = &inbound.route.integration else {
        return;
    };
    let config = &shared.config;
    let rid = request_id();
    let source_ip = conn.source_ip.to_string();
    let body = match &inbound.message {
        Message::Text(t) => MessageBody::Text(t.as_str()),
        Message::Binary(b) => MessageBody::Binary(b),
        _ => return,
    };
    let event = build_event(
        &conn.event_source(&config.api, &source_ip),
        &EventKind::Message {
            route_key: &inbound.route.key,
            message_id: &rid,
            body,
        },
        &rid,
        Utc::now(),
    );
    let result = shared
        .integrations
        .call_http(
            &inbound.route.key,
            url,
            *timeout,
            &conn.id_text,
            "MESSAGE",
            event,
        )
        .await;
    match result {
        Ok(r) if r.is_success() => {
            if inbound.route.two_way && !r.body.is_empty() {
                let _ = deliver(shared, conn, crate::frame::text_or_binary(&r.body), "route");
            }
        }
        Ok(r) => {
            tracing::warn!(connection_id = %conn.id_text, route = %inbound.route.key, status = r.status, "backend answered with an error status");
            let _ = deliver(
                shared,
                conn,
                gateway_frame::error_for_request("Internal server error", &conn.id_text, &rid),
                "gateway",
            );
        }
        Err(e) => {
            tracing::warn!(connection_id = %conn.id_text, route = %inbound.route.key, error = %e, "backend call failed");
            let _ = deliver(
                shared,
                conn,
                gateway_frame::error_for_request("Internal server error", &conn.id_text, &rid),
                "gateway",
            );
        }
    }
}
