//! One socket's upgrade: read the HTTP request, take a connection slot, run `$connect`, answer
//! 101 (or the refusal), register the connection and subscribe the channels `$connect` named.
//!
//! Invariants: a slot is taken before `$connect` runs, so concurrent slow handshakes cannot
//! overshoot `max_connections`; the unfinished-upgrade unit is given back once this returns;
//! `domainName` is never the client's `Host` header.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::authorizer;
use crate::conn::capacity::Held;
use crate::conn::close;
use crate::conn::connection::Connection;
use crate::conn::id::{request_id, ConnectionId};
use crate::conn::transport::Transport;
use crate::error::ConnectionError;
use crate::fanout::history::Since;
use crate::fanout::recovery;
use crate::integration::event::{EventKind, EventSource};
use crate::integration::{Call, IntegrationError};
use crate::ops;
use crate::state::NodeState;
use crate::ws::handshake::{self, UpgradeRequest};
use crate::ws::meter::Metered;
use crate::ws::session::Ws;
use crate::ws::{access, forwarded};

/// A connection that completed its upgrade.
pub(crate) struct Opened<T> {
    pub(crate) conn: Arc<Connection>,
    /// Boxed so the stream exists once, not in every future that passes it along.
    pub(crate) ws: Box<Ws<T>>,
    /// Its connection slot, held until the session ends.
    pub(crate) slot: Held,
    /// Its API key's own inbound rate and burst, if the key has one.
    pub(crate) key_rate: Option<(u32, u32)>,
}

/// Outcome of the `$connect` step.
enum Verdict {
    Accept {
        subprotocol: Option<String>,
        answer: ConnectAnswer,
    },
    Reject {
        status: u16,
        reason: &'static str,
    },
}

/// Reads the upgrade, takes a connection slot, runs `$connect`, answers 101 and registers the
/// connection. `upgrading` (one unfinished upgrade) is given back when this returns.
pub(crate) async fn open<T: Transport>(
    state: &Arc<NodeState>,
    mut stream: T,
    peer: SocketAddr,
    upgrading: Held,
    before: forwarded::BeforeUpgrade,
) -> Option<Opened<T>> {
    let config = state.config.load_full();
    let limits = &config.limits;
    let metrics = &state.metrics;
    // One deadline for the PROXY header and the upgrade request together.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(limits.handshake_timeout_secs);
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    let edge = &config.edge;
    let mut peer_ip = peer.ip();
    let mut initial = Vec::new();
    let refuse = |e: &handshake::HandshakeError, ip| {
        metrics
            .handshakes_rejected_total
            .with_label_values(&[e.reason()])
            .inc();
        if let Some(status) = e.status() {
            access::refused(state, ip, None, status, e.reason());
        }
        tracing::debug!(%peer, error = ?e.to_string(), "upgrade refused");
    };
    if let forwarded::BeforeUpgrade::Settled(client) = before {
        peer_ip = client.unwrap_or(peer_ip);
    } else if edge.proxy_protocol && edge.trusts(peer.ip()) {
        match forwarded::read_proxy_header(&mut stream, left()).await {
            Ok((client, rest)) => {
                peer_ip = client.unwrap_or(peer_ip);
                initial = rest;
            }
            Err(e) => {
                refuse(&e, peer_ip);
                if let Some(status) = e.status() {
                    let _ = handshake::reject(&mut stream, status, &e.to_string()).await;
                }
                return None;
            }
        }
    }
    let (request, leftover) = match handshake::read_request_after(
        &mut stream,
        &config.api.stage,
        left(),
        initial,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            refuse(&e, peer_ip);
            if let Some(status) = e.status() {
                let _ = handshake::reject(&mut stream, status, &e.to_string()).await;
            }
            return None;
        }
    };
    // The client's address: what a trusted PROXY header and X-Forwarded-For say, else the peer.
    let client_ip = forwarded::client_address(peer_ip, &request.headers, edge);
    // Too many new connections from this address: 429 before any backend hears of it.
    if state
        .per_address
        .as_ref()
        .is_some_and(|p| !p.take(client_ip))
    {
        metrics
            .handshakes_rejected_total
            .with_label_values(&["rate_limited"])
            .inc();
        access::refused(
            state,
            client_ip,
            request.header("user-agent"),
            429,
            "rate_limited",
        );
        let _ = handshake::reject(&mut stream, 429, "Too Many Requests").await;
        return None;
    }
    // `recover` values are checked before any backend hears of the connection.
    let recover = match recovery::parse_recover(
        request.query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        limits.max_channels_per_connection,
    ) {
        Ok(r) => r,
        Err(message) => {
            metrics
                .handshakes_rejected_total
                .with_label_values(&["malformed"])
                .inc();
            access::refused(
                state,
                client_ip,
                request.header("user-agent"),
                400,
                "bad_recover",
            );
            let _ = handshake::reject(&mut stream, 400, &message).await;
            return None;
        }
    };
    // The slot is taken before $connect, so slow handshakes cannot all pass the cap.
    let slot = match state.slots.try_take() {
        Some(slot) if !state.refuses_upgrades() => slot,
        _ => {
            metrics
                .handshakes_rejected_total
                .with_label_values(&["capacity"])
                .inc();
            access::refused(
                state,
                client_ip,
                request.header("user-agent"),
                503,
                "capacity",
            );
            let _ = handshake::reject(&mut stream, 503, "Service Unavailable").await;
            return None;
        }
    };
    let id = match ConnectionId::generate(state.node_tag) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "random source failed");
            let _ = handshake::reject(&mut stream, 500, "Internal server error").await;
            return None;
        }
    };
    let id_text = id.to_string();
    let connected_at_ms = Utc::now().timestamp_millis();
    // Never the client's Host header: a handler that builds its @connections endpoint from
    // domainName would send its credentials wherever a client points it.
    let domain_name = config
        .api
        .domain_name
        .clone()
        .or_else(|| state.listen_domain.get().cloned())
        .unwrap_or_default();
    let user_agent = request.header("user-agent").map(str::to_string);
    let source_ip = client_ip.to_string();
    let source = EventSource {
        stage: &config.api.stage,
        api_id: &config.api.api_id,
        domain_name: &domain_name,
        connection_id: &id_text,
        connected_at_ms,
        source_ip: &source_ip,
        user_agent: user_agent.as_deref(),
        authorizer: None,
    };
    // API keys and the authorizer decide before $connect runs (and before any backend but the
    // authorizer hears of the connection).
    let admitted = match state.gate.load().as_ref() {
        None => authorizer::Admitted::default(),
        Some(gate) => match gate.check(&request.headers, &request.query, &source).await {
            Ok(a) => a,
            Err(refused) => {
                metrics
                    .handshakes_rejected_total
                    .with_label_values(&[if refused.status == 401 {
                        "unauthorized"
                    } else {
                        "forbidden"
                    }])
                    .inc();
                access::refused(
                    state,
                    client_ip,
                    request.header("user-agent"),
                    refused.status,
                    refused.reason,
                );
                let _ = handshake::reject(
                    &mut stream,
                    refused.status,
                    handshake::reason_phrase(refused.status),
                )
                .await;
                return None;
            }
        },
    };
    let authorizer_context = admitted.context.map(serde_json::Value::Object);
    let source = EventSource {
        authorizer: authorizer_context.as_ref(),
        ..source
    };

    let (subprotocol, answer) = match run_connect(state, &request, source).await {
        Verdict::Accept {
            subprotocol,
            answer,
        } => (subprotocol, answer),
        Verdict::Reject { status, reason } => {
            metrics
                .handshakes_rejected_total
                .with_label_values(&[reason])
                .inc();
            access::refused(
                state,
                client_ip,
                request.header("user-agent"),
                status,
                reason,
            );
            let _ = handshake::reject(&mut stream, status, handshake::reason_phrase(status)).await;
            return None;
        }
    };
    let conn = Arc::new(Connection::new(
        id,
        connected_at_ms,
        client_ip,
        user_agent,
        domain_name,
        merge_context(authorizer_context, answer.context),
    ));
    // Recorded before the client sees 101: a node that dies right after accepting must leave
    // a record, or nobody would ever send this connection's $disconnect.
    if let Some(c) = state.cluster() {
        c.register(&conn).await;
    }
    // After the record: a node that lost Redis meanwhile does not let the client in.
    if state.refuses_upgrades() {
        if let Some(c) = state.cluster() {
            c.unregister(&conn).await;
        }
        access::refused(
            state,
            client_ip,
            request.header("user-agent"),
            503,
            "fenced",
        );
        let _ = handshake::reject(&mut stream, 503, "Service Unavailable").await;
        return None;
    }
    if let Err(e) = handshake::accept(&mut stream, &request.key, subprotocol.as_deref()).await {
        tracing::debug!(%peer, error = %e, "client left during upgrade");
        if let Some(c) = state.cluster() {
            c.unregister(&conn).await;
        }
        return None;
    }
    state.registry.insert(Arc::clone(&conn));
    if state.cluster().is_some_and(|c| c.is_fenced()) {
        // Fenced since the check above: close it as its neighbours were.
        conn.outbox
            .request_close(close::SERVICE_RESTART, "Service Restart");
    }
    // Channels named by $connect are live before the client's first message, each with what
    // it missed when the client (or the backend) named where it stopped.
    subscribe_all(state, &conn, answer.channels, recover).await;
    metrics.connections.inc();
    metrics.connections_opened_total.inc();
    tracing::debug!(connection_id = %conn.id_text, %peer, "connected");

    let ws = WebSocketStream::from_partially_read(
        Metered::new(stream, limits.max_fragments_per_message),
        leftover,
        Role::Server,
        Some(state.ws_config),
    )
    .await;
    drop(upgrading);
    Some(Opened {
        conn,
        ws: Box::new(ws),
        slot,
        key_rate: admitted.key_rate,
    })
}

/// Subscribes the channels a `$connect` answer named — recovering those the backend gave a
/// `since` or the client a `recover` value (the backend's wins) — and tells the client about
/// each `recover` for a channel it did not end up in; one log line for all the refusals.
async fn subscribe_all(
    state: &NodeState,
    conn: &Arc<Connection>,
    channels: Vec<ConnectChannel>,
    mut recover: recovery::RecoverRequests,
) {
    let mut refused: Vec<(String, ConnectionError)> = Vec::new();
    let of = channels.len();
    for ConnectChannel { name, since } in channels {
        let since = since.or_else(|| recover.remove(&name));
        recover.remove(&name);
        let done = match since {
            Some(since) => recover_one(state, conn, &name, &since).await,
            None => ops::subscribe(state, conn, &name).await,
        };
        if let Err(e) = done {
            refused.push((name, e));
        }
    }
    let mut unsubscribed: Vec<&String> = recover.keys().collect();
    unsubscribed.sort();
    for name in unsubscribed {
        recovery::refuse_unsubscribed(state, conn, name);
    }
    if let Some((first, error)) = refused.first() {
        // One line per answer, whatever it holds; names are the backend's, so escaped.
        tracing::warn!(
            connection_id = %conn.id_text,
            refused = refused.len(),
            of,
            first_channel = ?first,
            first_error = ?error.to_string(),
            "$connect channels not subscribed"
        );
    }
}

/// Subscribes `conn` to `name` with what it missed since `since`; live cluster-wide on return.
async fn recover_one(
    state: &NodeState,
    conn: &Arc<Connection>,
    name: &str,
    since: &Since,
) -> Result<(), ConnectionError> {
    ops::check_channel(name)?;
    match state.cluster() {
        Some(c) => recovery::subscribe_recovering_via(state, c.as_ref(), conn, name, since).await?,
        None => recovery::subscribe_recovering(state, conn, name, since)?,
    };
    Ok(())
}

async fn run_connect(
    state: &NodeState,
    request: &UpgradeRequest,
    source: EventSource<'_>,
) -> Verdict {
    let Some(route) = state.routes().get("$connect").cloned() else {
        return Verdict::Accept {
            subprotocol: None,
            answer: ConnectAnswer::default(),
        };
    };
    let rid = request_id();
    let call = Call {
        source,
        kind: EventKind::Connect {
            headers: &request.headers,
            query: &request.query,
        },
        request_id: &rid,
    };
    match route.integration.connect(call).await {
        Ok(r) if r.is_success() => Verdict::Accept {
            answer: ConnectAnswer::parse(&r.body),
            subprotocol: r.subprotocol,
        },
        // A 3xx is a refusal like any other non-2xx (redirects are never followed).
        Ok(r) => Verdict::Reject {
            status: if (400..600).contains(&r.status) {
                r.status
            } else {
                502
            },
            reason: "connect_rejected",
        },
        Err(e) => {
            tracing::warn!(connection_id = source.connection_id, error = %e, "$connect integration failed");
            match e {
                IntegrationError::Timeout(_) => Verdict::Reject {
                    status: 504,
                    reason: "connect_timeout",
                },
                _ => Verdict::Reject {
                    status: 502,
                    reason: "connect_failed",
                },
            }
        }
    }
}

/// `requestContext.authorizer` of later events: the authorizer's result, with the keys of a
/// `$connect` answer's `context` (a Gangway extension) laid over it.
fn merge_context(
    authorizer: Option<serde_json::Value>,
    answer: Option<serde_json::Value>,
) -> Option<serde_json::Value> {
    match (authorizer, answer) {
        (Some(serde_json::Value::Object(mut a)), Some(serde_json::Value::Object(b))) => {
            a.extend(b);
            Some(serde_json::Value::Object(a))
        }
        (a, None) => a,
        (_, b) => b,
    }
}

/// What a `$connect` answer body may carry (JSON): `context` and `channels`.
#[derive(Debug, Default, PartialEq)]
struct ConnectAnswer {
    /// `context` object: `requestContext.authorizer` of later events.
    context: Option<serde_json::Value>,
    /// `channels`: names (or `{"name", "since": {"offset", "epoch"}}` objects) to subscribe
    /// before the first message.
    channels: Vec<ConnectChannel>,
}

/// One entry of a `$connect` answer's `channels`.
#[derive(Debug, PartialEq)]
struct ConnectChannel {
    name: String,
    /// Where the client stopped, as the backend says.
    since: Option<Since>,
}

impl ConnectChannel {
    /// A name, or an object with a `name` and maybe a valid `since`; anything else is skipped
    /// (an invalid `since` subscribes without recovery).
    fn parse(v: &serde_json::Value) -> Option<ConnectChannel> {
        if let Some(name) = v.as_str() {
            return Some(ConnectChannel {
                name: name.to_string(),
                since: None,
            });
        }
        let name = v.get("name")?.as_str()?.to_string();
        let since = v.get("since").and_then(|s| {
            let offset = s.get("offset")?.as_u64()?;
            let epoch = s.get("epoch")?.as_str()?;
            recovery::valid_epoch(epoch).then(|| Since {
                offset,
                epoch: epoch.to_string(),
            })
        });
        Some(ConnectChannel { name, since })
    }
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
                .map(|a| a.iter().filter_map(ConnectChannel::parse).collect())
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
        let names: Vec<&str> = a.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        let a = ConnectAnswer::parse(
            br#"{"channels":["a",{"name":"b","since":{"offset":4,"epoch":"e1"}},{"name":"c","since":{"offset":-1,"epoch":"e"}},{"nope":1},7]}"#,
        );
        assert_eq!(a.channels.len(), 3);
        assert_eq!(a.channels[1].since.as_ref().map(|s| s.offset), Some(4));
        assert_eq!(a.channels[2].since, None);
        assert_eq!(ConnectAnswer::parse(b"ok"), ConnectAnswer::default());
        assert_eq!(ConnectAnswer::parse(br#"{"context":"str"}"#).context, None);
        assert_eq!(ConnectAnswer::parse(b""), ConnectAnswer::default());
    }
}
