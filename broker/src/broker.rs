//! The broker handle: one node's data plane, shared by the WebSocket listener and the control API.
//!
//! Everything the control API needs (push, get, delete) is a synchronous, non-blocking call on
//! [`Broker`], so it can be used from any runtime or thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use rand::RngCore as _;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capacity::Capacity;
use crate::channels::{self, Channels, SubscribeError};
use crate::close;
use crate::cluster::wire::Op;
use crate::cluster::{Cluster, ClusterError, ClusterSettings};
use crate::config::Config;
use crate::connection::Connection;
use crate::id::{ConnectionId, InvalidConnectionId, NodeTag};
use crate::integration::{ClientBuildError, Integrations};
use crate::metrics::Metrics;
use crate::outbox::PushOutcome;
use crate::registry::Registry;
use crate::write_through::WriteThrough;

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
    /// The Redis URL cannot be used.
    #[error("cannot use [cluster] redis_url: {0}")]
    Redis(#[from] redis::RedisError),
    /// `[cluster] tls_ca_file` cannot be read.
    #[error("cannot read [cluster] tls_ca_file {}: {source}", path.display())]
    TlsCa {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
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
    /// The owner node refused the operation with this status (400 or 413) and message.
    #[error("{1}")]
    Rejected(u16, String),
    /// The cluster cannot answer now: Redis unreachable, or the owner node silent (503).
    #[error("{0}")]
    Unavailable(String),
}

impl ConnectionError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            ConnectionError::BadId(_)
            | ConnectionError::InvalidClose(_)
            | ConnectionError::InvalidChannel(_)
            | ConnectionError::TooManyChannels { .. } => 400,
            ConnectionError::Gone => 410,
            ConnectionError::PayloadTooLarge { .. } => 413,
            ConnectionError::LimitExceeded => 429,
            ConnectionError::Rejected(status, _) => *status,
            ConnectionError::Unavailable(_) => 503,
        }
    }
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
    /// The message could not be handed to the cluster (Redis unreachable): only this node's
    /// subscribers got it.
    pub cluster_failed: bool,
}

/// What GetConnection returns.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

impl ConnectionInfo {
    fn of(conn: &Connection) -> ConnectionInfo {
        ConnectionInfo {
            connected_at_ms: conn.connected_at_ms,
            last_active_at_ms: conn.last_active_ms(),
            source_ip: conn.source_ip.to_string(),
            user_agent: conn.user_agent.as_deref().map(str::to_string),
        }
    }

    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn from_json(body: &[u8]) -> Option<ConnectionInfo> {
        serde_json::from_slice(body).ok()
    }
}

/// State shared by every task of the node.
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) node_id: String,
    pub(crate) node_tag: NodeTag,
    pub(crate) registry: Registry,
    pub(crate) channels: Channels,
    /// Cluster membership, when `[cluster] redis_url` is set.
    pub(crate) cluster: std::sync::OnceLock<Arc<Cluster>>,
    pub(crate) integrations: Integrations,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) ws_config: WebSocketConfig,
    /// Cancelled when the node starts draining.
    pub(crate) shutdown: CancellationToken,
    /// Connection and handshake tasks (and their dispatchers).
    pub(crate) connections: TaskTracker,
    /// `$disconnect` deliveries.
    pub(crate) disconnects: TaskTracker,
    /// Decides which fan-outs write straight to the sockets.
    pub(crate) write_through: WriteThrough,
    /// Connection slots (`max_connections`): taken before `$connect`, held until the end.
    pub(crate) slots: Capacity,
    /// Sockets that have not finished their upgrade (`max_pending_handshakes`).
    pub(crate) handshakes: Capacity,
    /// The WebSocket listener's address: `domainName` when `[api] domain_name` is not set.
    pub(crate) listen_domain: std::sync::OnceLock<String>,
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
    /// Builds a node from a validated config. Generates the node id when the config has none. With
    /// `[cluster] redis_url` it joins the cluster, and must then be called inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// Fails when the webhook HTTP client cannot be built or the Redis URL is unusable.
    pub fn new(config: Config) -> Result<Broker, BrokerError> {
        let node_id = config.cluster.node_id.clone().unwrap_or_else(|| {
            let mut raw = [0u8; 6];
            rand::rng().fill_bytes(&mut raw);
            format!("node-{}", hex::encode(raw))
        });
        // Validation requires a secret whenever a route calls a backend; without one nothing
        // is ever signed, so a random key stands in (never logged).
        let secret = match &config.api.webhook_secret {
            Some(s) => s.as_bytes().to_vec(),
            None => {
                let mut raw = [0u8; 32];
                rand::rng().fill_bytes(&mut raw);
                raw.to_vec()
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
        let tls_ca_pem = match &config.cluster.tls_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| BrokerError::TlsCa {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let settings = config
            .cluster
            .redis_url
            .clone()
            .map(|redis_url| ClusterSettings {
                redis_url,
                mode: config.cluster.mode,
                seed_urls: config.cluster.seed_urls.clone(),
                heartbeat: Duration::from_millis(config.cluster.heartbeat_interval_ms),
                node_ttl: Duration::from_millis(config.cluster.node_ttl_ms),
                rpc_timeout: Duration::from_millis(config.cluster.rpc_timeout_ms),
                tls_ca_pem,
            });
        let write_through = WriteThrough::new(config.limits.write_through_max_recipients);
        let slots = Capacity::new(config.limits.max_connections);
        let handshakes = Capacity::new(config.limits.max_pending_handshakes);
        let shared = Arc::new(Shared {
            node_tag: NodeTag::of(&node_id),
            node_id,
            config: Arc::new(config),
            registry: Registry::new(),
            channels: Channels::new(),
            write_through,
            listen_domain: std::sync::OnceLock::new(),
            slots,
            handshakes,
            cluster: std::sync::OnceLock::new(),
            integrations,
            metrics,
            ws_config,
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
            disconnects: TaskTracker::new(),
        });
        if let Some(settings) = settings {
            // Redis is connected lazily: the node starts (not ready) even while Redis is down.
            let cluster = Cluster::start(&shared, settings)?;
            let _ = shared.cluster.set(cluster);
        }
        Ok(Broker { shared })
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

    /// In cluster mode, waits (at most `limit`) until the node has joined; true when it has,
    /// or when there is no cluster. A node that has not joined still serves local traffic.
    pub async fn wait_joined(&self, limit: Duration) -> bool {
        match self.shared.cluster.get() {
            Some(c) => c.wait_joined(limit).await,
            None => true,
        }
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
        // Each open connection learns through its outbox (connections registered from now on
        // check the token themselves).
        s.registry.for_each(|c| {
            c.outbox
                .request_close(close::GOING_AWAY, "Server shutting down");
        });
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
        if let Some(c) = s.cluster.get() {
            c.deregister().await;
        }
    }

    /// Why the node is not ready, if it is not: draining, or Redis unreachable.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.is_shutting_down() {
            Some("draining")
        } else if self.shared.cluster.get().is_some_and(|c| !c.is_up()) {
            Some("redis unreachable")
        } else {
            None
        }
    }

    /// The cluster membership, when the id belongs to another node and clustering is on.
    fn remote(&self, id: ConnectionId) -> Option<&Arc<Cluster>> {
        if id.node() == self.shared.node_tag {
            None
        } else {
            self.shared.cluster.get()
        }
    }

    /// PostToConnection: queues `data` for the client — a text frame when it is UTF-8, binary
    /// otherwise. Never waits on the client; a connection on another node is reached through
    /// the cluster and its owner's answer is returned.
    pub async fn post_to_connection(&self, id: &str, data: Bytes) -> Result<(), ConnectionError> {
        self.check_size(&data)?;
        let cid = ConnectionId::parse(id)?;
        match self.remote(cid) {
            Some(c) => remote_result(c.call(cid, Op::Post(data.to_vec())).await?).map(|_| ()),
            None => {
                let conn = lookup(&self.shared, cid)?;
                self.deliver(&conn, crate::frame::text_or_binary(&data), "push")
            }
        }
    }

    /// Many pushes at once (a batch): this node's connections are served in order at once; the
    /// pushes for each other node travel together in one message, and the nodes are asked
    /// concurrently. One result per push, in the given order.
    pub async fn post_many(
        &self,
        pushes: Vec<(ConnectionId, Bytes)>,
    ) -> Vec<Result<(), ConnectionError>> {
        let mut results: Vec<Option<Result<(), ConnectionError>>> = vec![None; pushes.len()];
        let mut remote: HashMap<NodeTag, Vec<(usize, ConnectionId, Vec<u8>)>> = HashMap::new();
        for (i, (cid, data)) in pushes.into_iter().enumerate() {
            match self.remote(cid) {
                Some(_) => remote
                    .entry(cid.node())
                    .or_default()
                    .push((i, cid, data.to_vec())),
                None => results[i] = Some(post_local(&self.shared, cid, &data)),
            }
        }
        if let Some(cluster) = self.shared.cluster.get() {
            let calls = remote.into_values().map(|group| async move {
                let first = group[0].1;
                let indices: Vec<usize> = group.iter().map(|(i, _, _)| *i).collect();
                let op = Op::PostMany(group.into_iter().map(|(_, c, d)| (c, d)).collect());
                let answer = cluster.call(first, op).await;
                (indices, answer)
            });
            for (indices, answer) in futures_util::future::join_all(calls).await {
                match answer
                    .map_err(ConnectionError::from)
                    .and_then(remote_result)
                {
                    Ok(body) => {
                        for (k, i) in indices.into_iter().enumerate() {
                            let status = body
                                .get(2 * k..2 * k + 2)
                                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                                .unwrap_or(503);
                            results[i] = Some(remote_result((status, Vec::new())).map(|_| ()));
                        }
                    }
                    Err(e) => {
                        for i in indices {
                            results[i] = Some(Err(e.clone()));
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(ConnectionError::Gone)))
            .collect()
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

    /// Subscribes a connection to a channel (idempotent). Returns once the subscription is
    /// live cluster-wide, so a publish right after it reaches the connection.
    pub async fn subscribe(&self, id: &str, channel: &str) -> Result<(), ConnectionError> {
        channels::validate_name(channel).map_err(ConnectionError::InvalidChannel)?;
        let cid = ConnectionId::parse(id)?;
        match self.remote(cid) {
            Some(c) => {
                remote_result(c.call(cid, Op::Subscribe(channel.to_string())).await?).map(|_| ())
            }
            None => {
                let conn = lookup(&self.shared, cid)?;
                subscribe(&self.shared, &conn, channel).await
            }
        }
    }

    /// Unsubscribes a connection from a channel (idempotent for a live connection).
    pub async fn unsubscribe(&self, id: &str, channel: &str) -> Result<(), ConnectionError> {
        channels::validate_name(channel).map_err(ConnectionError::InvalidChannel)?;
        let cid = ConnectionId::parse(id)?;
        match self.remote(cid) {
            Some(c) => {
                remote_result(c.call(cid, Op::Unsubscribe(channel.to_string())).await?).map(|_| ())
            }
            None => {
                let conn = lookup(&self.shared, cid)?;
                unsubscribe(&self.shared, &conn, channel).await;
                Ok(())
            }
        }
    }

    /// Subscribers of a channel on this node only (no cluster round trip).
    pub fn local_subscriber_count(&self, channel: &str) -> usize {
        self.shared.channels.subscriber_count(channel)
    }

    /// Subscribers of a channel on every node.
    pub async fn subscriber_count(&self, channel: &str) -> Result<u64, ConnectionError> {
        channels::validate_name(channel).map_err(ConnectionError::InvalidChannel)?;
        let local = self.shared.channels.subscriber_count(channel) as u64;
        match self.shared.cluster.get() {
            Some(c) => Ok(local + c.remote_subscribers(channel).await?),
            None => Ok(local),
        }
    }

    /// Sends `data` to every subscriber of `channel` (on every node) except `exclude`. The frame
    /// is encoded once and shared; no subscriber is waited for. `recipients` counts this node's.
    pub async fn publish(
        &self,
        channel: &str,
        data: &[u8],
        exclude: Option<&str>,
    ) -> Result<FanOut, ConnectionError> {
        channels::validate_name(channel).map_err(ConnectionError::InvalidChannel)?;
        self.check_size(data)?;
        let exclude = exclude.map(ConnectionId::parse).transpose()?;
        let mut fan = fan_out_local(&self.shared, Some(channel), data, exclude, "publish", true);
        if let Some(c) = self.shared.cluster.get() {
            if let Err(e) = c.publish_channel(channel, exclude, data).await {
                fan.cluster_failed = true;
                self.count_cluster_failure(&e);
            }
        }
        Ok(fan)
    }

    /// Sends `data` to every connection on every node except `exclude`.
    pub async fn broadcast(
        &self,
        data: &[u8],
        exclude: Option<&str>,
    ) -> Result<FanOut, ConnectionError> {
        self.check_size(data)?;
        let exclude = exclude.map(ConnectionId::parse).transpose()?;
        let mut fan = fan_out_local(&self.shared, None, data, exclude, "broadcast", true);
        if let Some(c) = self.shared.cluster.get() {
            if let Err(e) = c.broadcast(exclude, data).await {
                fan.cluster_failed = true;
                self.count_cluster_failure(&e);
            }
        }
        Ok(fan)
    }

    fn count_cluster_failure(&self, e: &ClusterError) {
        self.shared
            .metrics
            .cluster_dropped_total
            .with_label_values(&["publish_failed"])
            .inc();
        tracing::warn!(error = %e, "delivered locally only: the cluster is unavailable");
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
    pub async fn get_connection(&self, id: &str) -> Result<ConnectionInfo, ConnectionError> {
        let cid = ConnectionId::parse(id)?;
        match self.remote(cid) {
            Some(c) => {
                let body = remote_result(c.call(cid, Op::Get).await?)?;
                ConnectionInfo::from_json(&body).ok_or_else(|| {
                    ConnectionError::Unavailable("malformed answer from the owner node".into())
                })
            }
            None => Ok(ConnectionInfo::of(lookup(&self.shared, cid)?.as_ref())),
        }
    }

    /// DeleteConnection: closes the connection with `code` (default 1000) and `reason`.
    pub async fn delete_connection(
        &self,
        id: &str,
        code: Option<u16>,
        reason: Option<&str>,
    ) -> Result<(), ConnectionError> {
        let code = code.unwrap_or(close::NORMAL);
        let reason = reason.unwrap_or("");
        check_close(code, reason)?;
        let cid = ConnectionId::parse(id)?;
        match self.remote(cid) {
            Some(c) => remote_result(
                c.call(
                    cid,
                    Op::Delete {
                        code,
                        reason: reason.to_string(),
                    },
                )
                .await?,
            )
            .map(|_| ()),
            None => delete_local(&self.shared, cid, code, reason),
        }
    }
}

fn check_close(code: u16, reason: &str) -> Result<(), ConnectionError> {
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

fn lookup(shared: &Shared, id: ConnectionId) -> Result<Arc<Connection>, ConnectionError> {
    shared.registry.get(&id).ok_or(ConnectionError::Gone)
}

fn delete_local(
    shared: &Shared,
    id: ConnectionId,
    code: u16,
    reason: &str,
) -> Result<(), ConnectionError> {
    let conn = lookup(shared, id)?;
    if conn.outbox.request_close(code, reason) {
        Ok(())
    } else {
        Err(ConnectionError::Gone)
    }
}

/// Turns an owner node's answer back into a result (the body on success).
fn remote_result((status, body): (u16, Vec<u8>)) -> Result<Vec<u8>, ConnectionError> {
    let message = || String::from_utf8_lossy(&body).into_owned();
    match status {
        200..=299 => Ok(body),
        410 => Err(ConnectionError::Gone),
        429 => Err(ConnectionError::LimitExceeded),
        413 => Err(ConnectionError::Rejected(413, message())),
        400 => Err(ConnectionError::Rejected(400, message())),
        _ => Err(ConnectionError::Unavailable(message())),
    }
}

/// Runs an operation a remote node asked for on a connection of this node; answers with an
/// HTTP-style status and a body (GetConnection JSON, or an error message).
pub(crate) async fn execute_local(shared: &Shared, id: ConnectionId, op: Op) -> (u16, Vec<u8>) {
    let result: Result<(u16, Vec<u8>), ConnectionError> = async {
        match op {
            Op::Post(p) => {
                post_local(shared, id, &p)?;
                Ok((200, Vec::new()))
            }
            Op::Get => {
                let conn = lookup(shared, id)?;
                Ok((200, ConnectionInfo::of(&conn).to_json()))
            }
            Op::Delete { code, reason } => {
                check_close(code, &reason)?;
                delete_local(shared, id, code, &reason)?;
                Ok((204, Vec::new()))
            }
            Op::Subscribe(channel) => {
                channels::validate_name(&channel).map_err(ConnectionError::InvalidChannel)?;
                let conn = lookup(shared, id)?;
                subscribe(shared, &conn, &channel).await?;
                Ok((204, Vec::new()))
            }
            Op::Unsubscribe(channel) => {
                let conn = lookup(shared, id)?;
                unsubscribe(shared, &conn, &channel).await;
                Ok((204, Vec::new()))
            }
            Op::PostMany(items) => {
                let mut statuses = Vec::with_capacity(items.len() * 2);
                for (cid, payload) in items {
                    let status = match post_local(shared, cid, &payload) {
                        Ok(()) => 200,
                        Err(e) => e.status(),
                    };
                    statuses.extend_from_slice(&status.to_be_bytes());
                }
                Ok((200, statuses))
            }
        }
    }
    .await;
    match result {
        Ok(r) => r,
        Err(e) => (e.status(), e.to_string().into_bytes()),
    }
}

fn post_local(shared: &Shared, id: ConnectionId, payload: &[u8]) -> Result<(), ConnectionError> {
    let max = shared.config.limits.max_message_bytes;
    if payload.len() > max {
        return Err(ConnectionError::PayloadTooLarge {
            size: payload.len(),
            max,
        });
    }
    let conn = lookup(shared, id)?;
    deliver(shared, &conn, crate::frame::text_or_binary(payload), "push")
}

/// Queues `data` for this node's subscribers of `channel` (`None`: every connection).
pub(crate) fn fan_out_local(
    shared: &Shared,
    channel: Option<&str>,
    data: &[u8],
    exclude: Option<ConnectionId>,
    source: &'static str,
    allow_write_through: bool,
) -> FanOut {
    let frame = crate::frame::text_or_binary(data);
    let write_through = allow_write_through
        && shared.write_through.begin(match channel {
            Some(name) => shared.channels.subscriber_count(name),
            None => shared.registry.len(),
        });
    let mut fan = FanOutState::new(shared, frame, exclude, write_through);
    if write_through {
        // Writing takes microseconds per recipient: do it outside the map's shard locks, which
        // subscribes and new connections (on runtime workers) must not wait for. The list is
        // bounded by `write_through_max_recipients`.
        let mut recipients: Vec<Arc<Connection>> = Vec::new();
        let mut collect = |c: &Arc<Connection>| recipients.push(Arc::clone(c));
        match channel {
            Some(name) => shared.channels.for_each_subscriber(name, &mut collect),
            None => shared.registry.for_each(&mut collect),
        }
        for c in &recipients {
            fan.push(c);
        }
    } else {
        match channel {
            Some(name) => shared.channels.for_each_subscriber(name, |c| fan.push(c)),
            None => shared.registry.for_each(|c| fan.push(c)),
        }
    }
    shared.write_through.end(write_through);
    fan.finish(source)
}

async fn unsubscribe(shared: &Shared, conn: &Arc<Connection>, channel: &str) {
    if shared.channels.unsubscribe(channel, conn) {
        if let Some(c) = shared.cluster.get() {
            c.reconcile(shared, channel).await;
        }
    }
}

/// Subscribes an open connection, mapping refusals to errors.
pub(crate) async fn subscribe(
    shared: &Shared,
    conn: &Arc<Connection>,
    channel: &str,
) -> Result<(), ConnectionError> {
    let max = shared.config.limits.max_channels_per_connection;
    match shared.channels.subscribe(channel, conn, max) {
        Ok(_) => {
            if let Some(c) = shared.cluster.get() {
                c.reconcile(shared, channel).await;
            }
            Ok(())
        }
        Err(SubscribeError::Closed) => Err(ConnectionError::Gone),
        Err(SubscribeError::TooMany { max }) => Err(ConnectionError::TooManyChannels { max }),
    }
}

/// One fan-out in progress: counts locally, updates metrics once at the end.
struct FanOutState<'a> {
    shared: &'a Shared,
    frame: Bytes,
    exclude: Option<ConnectionId>,
    /// Write straight to idle sockets (see `write_through`); `now_ms` marks them active.
    write_through: bool,
    now_ms: i64,
    written_through: u64,
    out: FanOut,
}

impl<'a> FanOutState<'a> {
    fn new(
        shared: &'a Shared,
        frame: Bytes,
        exclude: Option<ConnectionId>,
        write_through: bool,
    ) -> Self {
        FanOutState {
            shared,
            frame,
            exclude,
            write_through,
            now_ms: if write_through {
                Utc::now().timestamp_millis()
            } else {
                0
            },
            written_through: 0,
            out: FanOut::default(),
        }
    }

    fn push(&mut self, conn: &Arc<Connection>) {
        if self.exclude == Some(conn.id) {
            return;
        }
        let limits = &self.shared.config.limits;
        let (max, policy) = (limits.send_queue_max_bytes, limits.slow_consumer_policy);
        let outcome = if self.write_through {
            conn.outbox.push_or_write(&self.frame, max, policy)
        } else {
            conn.outbox.push(self.frame.clone(), max, policy)
        };
        match outcome {
            PushOutcome::Written => {
                conn.touch(self.now_ms);
                self.out.recipients += 1;
                self.written_through += 1;
            }
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
        if self.written_through > 0 {
            m.messages_written_through_total
                .inc_by(self.written_through);
        }
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
        PushOutcome::Queued | PushOutcome::Written => {
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
