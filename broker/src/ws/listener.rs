//! The public listener: accepts TCP, runs each socket's lifecycle — upgrade, session, cleanup —
//! and sends `$disconnect` when the session ends.
//!
//! Invariant: a connection is in the registry only between a successful `$connect` (101 sent)
//! and the end of its session, so a push to an id still in `$connect` answers 410, as on AWS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::conn::capacity::Held;
use crate::conn::transport::{PlainTcp, Transport};
use crate::fanout::join_leave;
use crate::integration::disconnect;
use crate::state::NodeState;
use crate::ws::forwarded::{self, BeforeUpgrade};
use crate::ws::{access, session, upgrade};

/// What a socket beyond `max_pending_handshakes` gets before it is closed.
const BUSY_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
    Content-Length: 34\r\nConnection: close\r\n\r\n{\"message\":\"Service Unavailable\"}";

/// Accepts until the node starts draining; with `tls`, each socket's TLS handshake runs first
/// (within `handshake_timeout_secs`, holding the socket's unfinished-upgrade unit).
pub(crate) async fn accept_loop(
    state: Arc<NodeState>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    if let Ok(addr) = listener.local_addr() {
        let _ = state.listen_domain.set(addr.to_string());
    }
    loop {
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => match state.handshakes.try_take() {
                Some(upgrading) => {
                    let _ = stream.set_nodelay(true);
                    let s = Arc::clone(&state);
                    match &tls {
                        None => {
                            state.connections.spawn(serve_socket(
                                s,
                                PlainTcp::new(stream),
                                peer,
                                upgrading,
                                BeforeUpgrade::Open,
                            ));
                        }
                        Some(acceptor) => {
                            let acceptor = acceptor.clone();
                            state.connections.spawn(async move {
                                let config = s.config();
                                let limit =
                                    Duration::from_secs(config.limits.handshake_timeout_secs);
                                // One deadline for the PROXY header and the TLS handshake.
                                let deadline = tokio::time::Instant::now() + limit;
                                let mut stream = stream;
                                let mut before = BeforeUpgrade::Settled(None);
                                if config.edge.proxy_protocol && config.edge.trusts(peer.ip()) {
                                    match forwarded::read_proxy_header_before_tls(
                                        &mut stream,
                                        limit,
                                    )
                                    .await
                                    {
                                        Ok(client) => before = BeforeUpgrade::Settled(client),
                                        Err(e) => {
                                            s.metrics
                                                .handshakes_rejected_total
                                                .with_label_values(&[e.reason()])
                                                .inc();
                                            tracing::debug!(%peer, error = %e, "PROXY header refused");
                                            return;
                                        }
                                    }
                                }
                                drop(config);
                                match tokio::time::timeout_at(deadline, acceptor.accept(stream))
                                    .await
                                {
                                    Ok(Ok(tls)) => {
                                        serve_socket(s, tls, peer, upgrading, before).await
                                    }
                                    other => {
                                        s.metrics
                                            .handshakes_rejected_total
                                            .with_label_values(&["tls"])
                                            .inc();
                                        if let Ok(Err(e)) = other {
                                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                        }
                                    }
                                }
                            });
                        }
                    }
                }
                None => {
                    // Too many sockets have not finished their upgrade: refuse this one at
                    // once, without a task (the write cannot block on a fresh socket).
                    state
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

/// One accepted socket, from upgrade to `$disconnect`.
async fn serve_socket<T: Transport>(
    state: Arc<NodeState>,
    transport: T,
    peer: SocketAddr,
    upgrading: Held,
    before: BeforeUpgrade,
) {
    // Everything the upgrade needed (request headers, buffers) is freed before the session
    // runs: only the connection record, its slot and the WebSocket stream outlive `open`.
    // Boxed: the upgrade's large future (it holds a backend call) lives on the heap only
    // while the upgrade runs, instead of widening every connection's task for its lifetime.
    let Some(opened) = Box::pin(upgrade::open(&state, transport, peer, upgrading, before)).await
    else {
        return;
    };
    let conn = opened.conn;
    let ended = session::run(
        Arc::clone(&state),
        Arc::clone(&conn),
        opened.ws,
        opened.key_rate,
    )
    .await;
    let metrics = &state.metrics;
    state.registry.remove(&conn.id);
    drop(opened.slot);
    let discarded = conn.outbox.close();
    let removed = state.channels.remove_connection(&conn);
    for channel in &removed.channels {
        join_leave::announce(&state, channel, &conn, join_leave::Change::Leave);
    }
    if let Some(c) = state.cluster() {
        for channel in removed.emptied {
            c.reconcile(&channel).await;
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
    access::closed(&state, &conn, &ended);
    let delivery = disconnect::schedule(
        &state,
        Arc::clone(&conn),
        ended.code,
        ended.reason,
        ended.dispatcher,
    );
    if let Some(c) = state.cluster().cloned() {
        // The record stays in Redis until this node's $disconnect was handled: if the node
        // dies first, a survivor sends it (same requestId); nobody is ever left unreported.
        match delivery {
            Some(d) => {
                state.disconnects.spawn(async move {
                    let _ = d.await;
                    c.unregister(&conn).await;
                });
            }
            None => c.unregister(&conn).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle connections must stay small: the per-connection task is one future, and its size is
    /// what every idle connection pays (plus its buffers). Keep an eye on it.
    #[tokio::test]
    async fn connection_task_future_stays_small() {
        let state = crate::test_state(crate::config::Config::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let upgrading = state.handshakes.try_take().expect("room");
        let fut = serve_socket(
            Arc::clone(&state),
            PlainTcp::new(client),
            addr,
            upgrading,
            BeforeUpgrade::Open,
        );
        let size = std::mem::size_of_val(&fut);
        println!("connection task future: {size} bytes");
        assert!(size <= 1200, "connection future grew to {size} bytes");
    }
}
