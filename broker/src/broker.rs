//! The broker handle: one node's data plane, shared by the WebSocket listener and the control API.
//!
//! Everything the control API needs (push, get, delete) is a synchronous, non-blocking call on
//! [`Broker`], so it can be used from any runtime or thread.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::RngCore as _;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channels::{self, Channels, SubscribeError};
use crate::close;
use crate::config::Config;
use crate::connection::Connection;
use crate::id::{ConnectionId, InvalidConnectionId, NodeTag};
use crate::integration::{ClientBuildError, Integrations};
use crate::metrics::Metrics;
use crate::outbox::PushOutcome;
use crate::registry::Registry;

/// Per-connection read buffer. tungstenite's default is 128 KiB, allocated eagerly; small keeps
/// idle connections cheap, and larger messages simply take more reads.
pub const READ_BUFFER_BYTES: usize = 1024;
/// Frames are collected up to this many bytes before a write is forced.
pub const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Errors starting a broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The webhook client could not be built.
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

/// Why an operation on a connection id failed. The control API maps each to an HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectionError {
    /// The id is not a Gangway connection id (400 BadRequestException).
    #[error(transparent)]
    BadId(#[from] InvalidConnectionId),
    /// No such open connection: never existed, closed, or still in `$connect` (410).
    #[error("connection is gone")]
    Gone,
    /// The payload is over `max_message_bytes` (413).
    #[error("message is {size} bytes; the limit is {max}")]
    PayloadTooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The connection's outbound queue is full (429).
    #[error("the connection's send queue is full")]
    LimitExceeded,
    /// A close code outside 1000 and 3000–4999, or a reason over 123 bytes (400).
    #[error("{0}")]
    InvalidClose(String),
    /// A channel name that breaks the naming rules (400).
    #[error("{0}")]
    InvalidChannel(String),
    /// The connection is already subscribed to the most channels allowed (400).
    #[error("the connection is already subscribed to {max} channels, the most allowed")]
    TooManyChannels {
        /// `max_channels_per_connection`.
        max: usize,
    },
}

/// What a publish or broadcast did on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Connections the frame was queued for.
    pub recipients: usize,
    /// Recipients whose send queue was full (slow-consumer policy applied).
    pub dropped_queue_full: usize,
    /// Recipients that were closing.
    pub dropped_closing: usize,
}

/// What GetConnection returns.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// ms since the epoch.
    pub connected_at_ms: i64,
    /// ms since the epoch.
    pub last_active_at_ms: i64,
    /// Client address.
    pub source_ip: String,
    /// Client `User-Agent`.
    pub user_agent: Option<String>,
}

/// State shared by every task of the node.
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) node_id: String,
    pub(crate) node_tag: NodeTag,
    pub(crate) registry: Registry,
    pub(crate) channels: Channels,
    pub(crate) integrations: Integrations,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) ws_config: WebSocketConfig,
    /// Cancelled when the node starts draining.
    pub(crate) shutdown: CancellationToken,
    /// Connection and handshake tasks (and their dispatchers).
    pub(crate) connections: TaskTracker,
    /// `$disconnect` deliveries.
    pub(crate) disconnects: TaskTracker,
}

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("node_id", &self.shared.node_id)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Builds a node from a validated config. Generates the node id and webhook secret when
    /// the config has none (the generated secret is logged once, so backends can use it).
    ///
    /// # Errors
    /// Fails when the webhook HTTP client cannot be built.
    pub fn new(config: Config) -> Result<Broker, BrokerError> {
        let node_id = config.cluster.node_id.clone().unwrap_or_else(|| {
            let mut raw = [0u8; 6];
            rand::rng().fill_bytes(&mut raw);
            format!("node-{}", hex::encode(raw))
        });
        let secret = match &config.api.webhook_secret {
            Some(s) => s.as_bytes().to_vec(),
            None => {
                let mut raw = [0u8; 32];
                rand::rng().fill_bytes(&mut raw);
                let s = hex::encode(raw);
                if config.routes.values().any(|r| r.url.is_some()) {
                    tracing::warn!(
                        webhook_secret = %s,
                        "no [api] webhook_secret configured; generated one for this run"
                    );
                }
                s.into_bytes()
            }
        };
        let metrics = Arc::new(Metrics::new());
        let integrations = Integrations::new(&config, secret, Arc::clone(&metrics))?;
        let limits = &config.limits;
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(WRITE_BUFFER_BYTES)
            .max_write_buffer_size(WRITE_BUFFER_BYTES + 2 * limits.max_message_bytes + 1024)
            .max_message_size(Some(limits.max_message_bytes))
            .max_frame_size(Some(limits.max_frame_bytes))
            .accept_unmasked_frames(false);
        Ok(Broker {
            shared: Arc::new(Shared {
                node_tag: NodeTag::of(&node_id),
                node_id,
                config: Arc::new(config),
                registry: Registry::new(),
                channels: Channels::new(),
                integrations,
                metrics,
                ws_config,
                shutdown: CancellationToken::new(),
                connections: TaskTracker::new(),
                disconnects: TaskTracker::new(),
            }),
        })
    }

    /// The configuration this node runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.len()
    }

    /// Ids of the connections open on this node (a snapshot; for operators and tests).
    pub fn connection_ids(&self) -> Vec<String> {
        let mut ids = Vec::with_capacity(self.shared.registry.len());
        self.shared
            .registry
            .for_each(|c| ids.push(c.id_text.to_string()));
        ids
    }

    /// True once draining started.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Accepts WebSocket clients on `listener` until [`Broker::shutdown`] is called.
    pub async fn serve(&self, listener: TcpListener) {
        crate::listener::accept_loop(Arc::clone(&self.shared), listener).await
    }

    /// Drains the node: stops accepting, closes every client with 1001, waits (up to
    /// `shutdown_grace_secs`) for connections to end and their `$disconnect` events to land.
    pub async fn shutdown(&self) {
        let s = &self.shared;
        s.shutdown.cancel();
        let grace = Duration::from_secs(s.config.limits.shutdown_grace_secs);
        let deadline = tokio::time::Instant::now() + grace;
        s.connections.close();
        if tokio::time::timeout_at(deadline, s.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = s.registry.len(),
                "shutdown grace period ended before every connection closed"
            );
        }
        s.disconnects.close();
        if tokio::time::timeout_at(deadline, s.disconnects.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period ended with $disconnect events still pending");
        }
    }

    fn lookup(&self, id: &str) -> Result<Arc<Connection>, ConnectionError> {
        let id = ConnectionId::parse(id)?;
        self.shared.registry.get(&id).ok_or(ConnectionError::Gone)
    }

    /// PostToConnection: queues `data` for the client — a text frame when it is UTF-8, binary
    /// otherwise. Never waits on the client.
    pub fn post_to_connection(&self, id: &str, data: Bytes) -> Result<(), ConnectionError> {
        let max = self.shared.config.limits.max_message_bytes;
        if data.len() > max {
            return Err(ConnectionError::PayloadTooLarge {
                size: data.len(),
                max,
            });
        }
        let conn = self.lookup(id)?;
        self.deliver(&conn, crate::frame::text_or_binary(&data), "push")
    }

    /// Queues an encoded frame on a connection, applying its slow-consumer policy, and counts it.
    pub(crate) fn deliver(
        &self,
        conn: &Connection,
        frame: Bytes,
        source: &'static str,
    ) -> Result<(), ConnectionError> {
        deliver(&self.shared, conn, frame, source)
    }

    /// Subscribes a connection to a channel (idempotent).
    pub fn subscribe(&self, id: &str, channel: &str) -> Result<(), ConnectionError> {
        channels::validate_name(channel).map_err(ConnectionError::InvalidChannel)?;
        let conn = self.lookup(id)?;
        subscribe(&self.shared, &conn, channel)
    }

    /// Unsubscribes a connection from a channel (idempotent for a live connection).
    pub fn unsubscribe(&self, id: &str, channel: &str) -> Result<(), ConnectionError> {
        channels::validate_name(channel).map_err(ConnectionError::InvalidChannel)?;
        let conn = self.lookup(id)?;
        self.shared.channels.unsubscribe(channel, &conn);
        Ok(())
    }

    /// Local subscribers of a channel.
    pub fn subscriber_count(&self, channel: &str) -> Result<usize, ConnectionError> {
        channels::validate_name(channel).map_err(ConnectionError::InvalidChannel)?;
        Ok(self.shared.channels.subscriber_count(channel))
    }

    /// Sends `data` to every local subscriber of `channel` except `exclude`. The frame is
    /// encoded once and shared; no subscriber is waited for.
    pub fn publish(
        &self,
        channel: &str,
        data: &[u8],
        exclude: Option<&str>,
    ) -> Result<FanOut, ConnectionError> {
        channels::validate_name(channel).map_err(ConnectionError::InvalidChannel)?;
        self.check_size(data)?;
        let exclude = exclude.map(ConnectionId::parse).transpose()?;
        let frame = crate::frame::text_or_binary(data);
        let mut fan = FanOutState::new(&self.shared, frame, exclude);
        self.shared
            .channels
            .for_each_subscriber(channel, |c| fan.push(c));
        Ok(fan.finish("publish"))
    }

    /// Sends `data` to every connection on this node except `exclude`.
    pub fn broadcast(&self, data: &[u8], exclude: Option<&str>) -> Result<FanOut, ConnectionError> {
        self.check_size(data)?;
        let exclude = exclude.map(ConnectionId::parse).transpose()?;
        let frame = crate::frame::text_or_binary(data);
        let mut fan = FanOutState::new(&self.shared, frame, exclude);
        self.shared.registry.for_each(|c| fan.push(c));
        Ok(fan.finish("broadcast"))
    }

    fn check_size(&self, data: &[u8]) -> Result<(), ConnectionError> {
        let max = self.shared.config.limits.max_message_bytes;
        if data.len() > max {
            return Err(ConnectionError::PayloadTooLarge {
                size: data.len(),
                max,
            });
        }
        Ok(())
    }

    /// GetConnection.
    pub fn get_connection(&self, id: &str) -> Result<ConnectionInfo, ConnectionError> {
        let conn = self.lookup(id)?;
        Ok(ConnectionInfo {
            connected_at_ms: conn.connected_at_ms,
            last_active_at_ms: conn.last_active_ms(),
            source_ip: conn.source_ip.to_string(),
            user_agent: conn.user_agent.as_deref().map(str::to_string),
        })
    }

    /// DeleteConnection: closes the connection with `code` (default 1000) and `reason`.
    pub fn delete_connection(
        &self,
        id: &str,
        code: Option<u16>,
        reason: Option<&str>,
    ) -> Result<(), ConnectionError> {
        let code = code.unwrap_or(close::NORMAL);
        if !close::is_user_code(code) {
            return Err(ConnectionError::InvalidClose(format!(
                "close code {code} is not allowed: use 1000 or 3000-4999"
            )));
        }
        let reason = reason.unwrap_or("");
        if reason.len() > 123 {
            return Err(ConnectionError::InvalidClose(format!(
                "close reason is {} bytes; at most 123 fit in a close frame",
                reason.len()
            )));
        }
        let conn = self.lookup(id)?;
        if conn.outbox.request_close(code, reason) {
            Ok(())
        } else {
            Err(ConnectionError::Gone)
        }
    }
}

/// Subscribes an open connection, mapping refusals to errors.
pub(crate) fn subscribe(
    shared: &Shared,
    conn: &Arc<Connection>,
    channel: &str,
) -> Result<(), ConnectionError> {
    let max = shared.config.limits.max_channels_per_connection;
    match shared.channels.subscribe(channel, conn, max) {
        Ok(_) => Ok(()),
        Err(SubscribeError::Closed) => Err(ConnectionError::Gone),
        Err(SubscribeError::TooMany { max }) => Err(ConnectionError::TooManyChannels { max }),
    }
}

/// One fan-out in progress: counts locally, updates metrics once at the end.
struct FanOutState<'a> {
    shared: &'a Shared,
    frame: Bytes,
    exclude: Option<ConnectionId>,
    out: FanOut,
}

impl<'a> FanOutState<'a> {
    fn new(shared: &'a Shared, frame: Bytes, exclude: Option<ConnectionId>) -> Self {
        FanOutState {
            shared,
            frame,
            exclude,
            out: FanOut::default(),
        }
    }

    fn push(&mut self, conn: &Arc<Connection>) {
        if self.exclude == Some(conn.id) {
            return;
        }
        let limits = &self.shared.config.limits;
        match conn.outbox.push(
            self.frame.clone(),
            limits.send_queue_max_bytes,
            limits.slow_consumer_policy,
        ) {
            PushOutcome::Queued => self.out.recipients += 1,
            PushOutcome::Full => {
                self.out.dropped_queue_full += 1;
                tracing::warn!(connection_id = %conn.id_text, "send queue full: fan-out message dropped");
            }
            PushOutcome::Closed => self.out.dropped_closing += 1,
        }
    }

    fn finish(self, source: &'static str) -> FanOut {
        let m = &self.shared.metrics;
        m.messages_sent_total
            .with_label_values(&[source])
            .inc_by(self.out.recipients as u64);
        if self.out.dropped_queue_full > 0 {
            m.outbound_dropped_total
                .with_label_values(&["queue_full"])
                .inc_by(self.out.dropped_queue_full as u64);
        }
        if self.out.dropped_closing > 0 {
            m.outbound_dropped_total
                .with_label_values(&["connection_closing"])
                .inc_by(self.out.dropped_closing as u64);
        }
        self.out
    }
}

/// See [`Broker::deliver`].
pub(crate) fn deliver(
    shared: &Shared,
    conn: &Connection,
    frame: Bytes,
    source: &'static str,
) -> Result<(), ConnectionError> {
    let limits = &shared.config.limits;
    match conn.outbox.push(
        frame,
        limits.send_queue_max_bytes,
        limits.slow_consumer_policy,
    ) {
        PushOutcome::Queued => {
            shared
                .metrics
                .messages_sent_total
                .with_label_values(&[source])
                .inc();
            Ok(())
        }
        PushOutcome::Full => {
            shared
                .metrics
                .outbound_dropped_total
                .with_label_values(&["queue_full"])
                .inc();
            tracing::warn!(connection_id = %conn.id_text, source, "send queue full: message dropped");
            Err(ConnectionError::LimitExceeded)
        }
        PushOutcome::Closed => {
            shared
                .metrics
                .outbound_dropped_total
                .with_label_values(&["connection_closing"])
                .inc();
            Err(ConnectionError::Gone)
        }
    }
}
