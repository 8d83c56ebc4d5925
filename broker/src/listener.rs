//! The public listener: accepts TCP, runs the upgrade and `$connect`, then hands the socket to
//! its session, and sends `$disconnect` when the session ends.
//!
//! Invariant: a connection is in the registry only between a successful `$connect` (101 sent)
//! and the end of its session, so a push to an id still in `$connect` answers 410, as on AWS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::broker::{ConnectionError, Shared};
use crate::capacity::Held;
use crate::connection::Connection;
use crate::disconnect;
use crate::event::{build_event, EventKind, EventSource};
use crate::handshake::{self, UpgradeRequest};
use crate::id::{request_id, ConnectionId};
use crate::integration::{Integration, IntegrationError};
use crate::session::{self, Ws};
use crate::socket::SharedSocket;

/// Accepts until the node starts draining.
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        let _ = shared.listen_domain.set(addr.to_string());
    }
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => match shared.handshakes.try_take() {
                Some(upgrading) => {
                    let s = Arc::clone(&shared);
                    shared.connections.spawn(handle(s, stream, peer, upgrading));
                }
                None => {
                    // Too many sockets have not finished their upgrade: refuse this one at
                    // once, without a task (the write cannot block on a fresh socket).
                    shared
                        .metrics
                        .handshakes_rejected_total
                        .with_label_values(&["handshakes_full"])
                        .inc();
                    let _ = stream.try_write(BUSY_RESPONSE);
                }
            },
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("websocket listener stopped accepting");
}

/// What a socket beyond `max_pending_handshakes` gets before it is closed.
const BUSY_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
    Content-Length: 34\r\nConnection: close\r\n\r\n{\"message\":\"Service Unavailable\"}";

/// Outcome of the `$connect` step.
enum ConnectDecision {
    Accept {
        subprotocol: Option<String>,
        answer: ConnectAnswer,
    },
    Reject {
        status: u16,
        message: &'static str,
        reason: &'static str,
    },
}

/// One accepted socket, from upgrade to `$disconnect`.
async fn handle(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, upgrading: Held) {
    // Everything the upgrade needed (request headers, buffers) is freed before the session
    // runs: only the connection record, its slot and the WebSocket stream outlive `open`.
    // Boxed: the upgrade's large future (it holds a backend call) lives on the heap only
    // while the upgrade runs, instead of widening every connection's task for its lifetime.
    let Some((conn, ws, slot)) = Box::pin(open(&shared, stream, peer, upgrading)).await else {
        return;
    };
    let ended = session::run(Arc::clone(&shared), Arc::clone(&conn), ws).await;
    let metrics = &shared.metrics;
    shared.registry.remove(&conn.id);
    drop(slot);
    let discarded = conn.outbox.close();
    let emptied = shared.channels.remove_connection(&conn);
    if let Some(c) = shared.cluster.get() {
        // This node sends the $disconnect: take the record out of the cluster's hands first.
        c.unregister_connection(&conn).await;
        for channel in emptied {
            c.reconcile(&shared, &channel).await;
        }
    }
    if discarded > 0 {
        metrics
            .outbound_dropped_total
            .with_label_values(&["connection_closed"])
            .inc_by(discarded as u64);
    }
    metrics.connections.dec();
    metrics
        .connections_closed_total
        .with_label_values(&[ended.label])
        .inc();
    tracing::debug!(connection_id = %conn.id_text, code = ended.code, reason = ?ended.reason, "disconnected");
    disconnect::schedule(&shared, conn, ended.code, ended.reason, ended.dispatcher);
}

/// Reads the upgrade, takes a connection slot, runs `$connect`, answers 101 and registers the
/// connection. `upgrading` (one unfinished upgrade) is given back when this returns.
async fn open(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    upgrading: Held,
) -> Option<(Arc<Connection>, Box<Ws>, Held)> {
    let _ = stream.set_nodelay(true);
    let config = Arc::clone(&shared.config);
    let limits = &config.limits;
    let metrics = &shared.metrics;
    let handshake_timeout = Duration::from_secs(limits.handshake_timeout_secs);
    let (request, leftover) =
        match handshake::read_request(&mut stream, &config.api.stage, handshake_timeout).await {
            Ok(r) => r,
            Err(e) => {
                metrics
                    .handshakes_rejected_total
                    .with_label_values(&[e.reason()])
                    .inc();
                if let Some(status) = e.status() {
                    let _ = handshake::reject(&mut stream, status, &e.to_string()).await;
                }
                tracing::debug!(%peer, error = ?e.to_string(), "upgrade refused");
                return None;
            }
        };
    // The slot is taken before $connect, so slow handshakes cannot all pass the cap.
    let slot = match shared.slots.try_take() {
        Some(slot) if !shared.shutdown.is_cancelled() => slot,
        _ => {
            metrics
                .handshakes_rejected_total
                .with_label_values(&["capacity"])
                .inc();
            let _ = handshake::reject(&mut stream, 503, "Service Unavailable").await;
            return None;
        }
    };
    let id = match ConnectionId::generate(shared.node_tag) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "random source failed");
            let _ = handshake::reject(&mut stream, 500, "Internal server error").await;
            return None;
        }
    };
    let id_text = id.to_string();
    let now = Utc::now();
    let connected_at_ms = now.timestamp_millis();
    // Never the client's Host header: a handler that builds its @connections endpoint from
    // domainName would send its credentials wherever a client points it.
    let domain_name = config
        .api
        .domain_name
        .clone()
        .or_else(|| shared.listen_domain.get().cloned())
        .unwrap_or_default();
    let user_agent = request.header("user-agent").map(str::to_string);
    let source_ip = peer.ip().to_string();

    let decision = run_connect(
        shared,
        &request,
        EventSource {
            stage: &config.api.stage,
            api_id: &config.api.api_id,
            domain_name: &domain_name,
            connection_id: &id_text,
            connected_at_ms,
            source_ip: &source_ip,
            user_agent: user_agent.as_deref(),
            authorizer: None,
        },
    )
    .await;
    let (subprotocol, answer) = match decision {
        ConnectDecision::Accept {
            subprotocol,
            answer,
        } => (subprotocol, answer),
        ConnectDecision::Reject {
            status,
            message,
            reason,
        } => {
            metrics
                .handshakes_rejected_total
                .with_label_values(&[reason])
                .inc();
            let _ = handshake::reject(&mut stream, status, message).await;
            return None;
        }
    };
    if shared.shutdown.is_cancelled() {
        let _ = handshake::reject(&mut stream, 503, "Service Unavailable").await;
        return None;
    }
    if let Err(e) = handshake::accept(&mut stream, &request.key, subprotocol.as_deref()).await {
        tracing::debug!(%peer, error = %e, "client left during upgrade");
        return None;
    }

    let conn = Arc::new(Connection::new(
        id,
        connected_at_ms,
        peer.ip(),
        user_agent,
        domain_name,
        answer.context,
    ));
    shared.registry.insert(Arc::clone(&conn));
    // Channels named by $connect are live before the client's first message.
    if let Some(c) = shared.cluster.get() {
        c.register_connection(&conn).await;
    }
    let mut refused: Vec<(&str, ConnectionError)> = Vec::new();
    for channel in &answer.channels {
        let subscribed = match crate::channels::validate_name(channel) {
            Ok(()) => crate::broker::subscribe(shared, &conn, channel).await,
            Err(e) => Err(ConnectionError::InvalidChannel(e)),
        };
        if let Err(e) = subscribed {
            refused.push((channel, e));
        }
    }
    if let Some((first, error)) = refused.first() {
        // One line per answer, whatever it holds; names are the backend's, so escaped.
        tracing::warn!(
            connection_id = %conn.id_text,
            refused = refused.len(),
            of = answer.channels.len(),
            first_channel = ?first,
            first_error = ?error.to_string(),
            "$connect channels not subscribed"
        );
    }
    metrics.connections.inc();
    metrics.connections_opened_total.inc();
    tracing::debug!(connection_id = %conn.id_text, %peer, "connected");

    let ws = WebSocketStream::from_partially_read(
        SharedSocket::new(stream, limits.max_fragments_per_message),
        leftover,
        Role::Server,
        Some(shared.ws_config),
    )
    .await;
    drop(upgrading);
    // Boxed so the stream exists once, not in every future that passes it along.
    Some((conn, Box::new(ws), slot))
}

async fn run_connect(
    shared: &Shared,
    request: &UpgradeRequest,
    source: EventSource<'_>,
) -> ConnectDecision {
    let Some(route) = shared.integrations.route("$connect") else {
        return ConnectDecision::Accept {
            subprotocol: None,
            answer: ConnectAnswer::default(),
        };
    };
    let response = match &route.integration {
        Integration::Mock { response } => {
            return ConnectDecision::Accept {
                subprotocol: None,
                answer: response
                    .as_deref()
                    .map(ConnectAnswer::parse)
                    .unwrap_or_default(),
            }
        }
        Integration::Http { url, timeout } => {
            let rid = request_id();
            let event = build_event(
                &source,
                &EventKind::Connect {
                    headers: &request.headers,
                    query: &request.query,
                },
                &rid,
                Utc::now(),
            );
            shared
                .integrations
                .call_http(
                    "$connect",
                    url,
                    *timeout,
                    source.connection_id,
                    "CONNECT",
                    event,
                )
                .await
        }
    };
    match response {
        Ok(r) if r.is_success() => ConnectDecision::Accept {
            answer: ConnectAnswer::parse(&r.body),
            subprotocol: r.subprotocol,
        },
        Ok(r) => ConnectDecision::Reject {
            status: if (400..600).contains(&r.status) {
                r.status
            } else {
                502
            },
            message: handshake::reason_phrase(r.status),
            reason: "connect_rejected",
        },
        Err(e) => {
            tracing::warn!(connection_id = source.connection_id, error = %e, "$connect integration failed");
            match e {
                IntegrationError::Timeout(_) => ConnectDecision::Reject {
                    status: 504,
                    message: "Gateway Timeout",
                    reason: "connect_timeout",
                },
                _ => ConnectDecision::Reject {
                    status: 502,
                    message: "Bad Gateway",
                    reason: "connect_failed",
                },
            }
        }
    }
}

/// What a `$connect` answer body may carry (JSON): `context` and `channels`.
#[derive(Debug, Default, PartialEq)]
struct ConnectAnswer {
    /// `context` object: `requestContext.authorizer` of later events.
    context: Option<serde_json::Value>,
    /// `channels`: names to subscribe before the first message.
    channels: Vec<String>,
}

impl ConnectAnswer {
    fn parse(body: &[u8]) -> ConnectAnswer {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return ConnectAnswer::default();
        };
        ConnectAnswer {
            context: match value.get("context") {
                Some(ctx @ serde_json::Value::Object(_)) => Some(ctx.clone()),
                _ => None,
            },
            channels: value
                .get("channels")
                .and_then(|c| c.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectAnswer;

    #[test]
    fn context_and_channels_are_read_from_json_bodies_only() {
        let a = ConnectAnswer::parse(br#"{"context":{"user":"u1"},"channels":["a","b"]}"#);
        assert_eq!(a.context, Some(serde_json::json!({"user":"u1"})));
        assert_eq!(a.channels, vec!["a", "b"]);
        assert_eq!(ConnectAnswer::parse(b"ok"), ConnectAnswer::default());
        assert_eq!(ConnectAnswer::parse(br#"{"context":"str"}"#).context, None);
        assert_eq!(ConnectAnswer::parse(b""), ConnectAnswer::default());
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Idle connections must stay small: the per-connection task is one future, and its size is
    /// what every idle connection pays (plus its buffers). Keep an eye on it.
    #[tokio::test]
    async fn connection_task_future_stays_small() {
        let broker = crate::Broker::new(crate::Config::default()).expect("broker");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let upgrading = broker.shared.handshakes.try_take().expect("room");
        let fut = handle(Arc::clone(&broker.shared), client, addr, upgrading);
        let size = std::mem::size_of_val(&fut);
        println!("connection task future: {size} bytes");
        assert!(size <= 1200, "connection future grew to {size} bytes");
    }
}
