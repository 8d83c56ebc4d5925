//! Gangway's data plane: one node's WebSocket listener, connections, route selection,
//! integrations, fan-out and cluster membership, behind the [`Broker`] façade.
//!
//! Imports run one way (ARCHITECTURE.md draws the graph):
//!
//! ```text
//! config, error, metrics, selection            (leaves)
//!   → conn       ids, records, outboxes, frames, transports
//!   → state      NodeState; the cluster seen through the ClusterLink trait
//!   → fanout, integration
//!   → ws, ops    the WebSocket edge; operations on this node's connections
//!   → cluster    implements ClusterLink; calls ops and fanout for other nodes
//!   → lib.rs     the Broker façade
//! ```
//!
//! Nothing below the façade imports `cluster`; the cluster reaches the node only through the
//! same `ops` and `fanout` functions the control API uses.

mod authorizer;
mod cluster;
pub mod config;
mod conn;
mod error;
mod fanout;
mod integration;
pub mod metrics;
mod ops;
pub mod peer;
pub mod reload;
mod selection;
mod state;
mod ws;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use rand::RngCore as _;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, ConfigBuilder, ConfigError};
pub use conn::connection::ConnectionInfo;
pub use conn::id::{request_id, ConnectionId, InvalidConnectionId, NodeTag};
pub use conn::op::Listed;
pub use error::{BrokerError, ConnectionError};
pub use fanout::{FanOut, Published};
pub use integration::signature;

use conn::capacity::Capacity;
use conn::close;
use conn::op::{ConnOp, OpOutcome};
use conn::registry::Registry;
use fanout::channels::Channels;
use fanout::write_through::WriteThrough;
use fanout::{fan_out, Audience};
use integration::Routes;
use metrics::Metrics;
use state::{NodeState, READ_BUFFER_BYTES, WRITE_BUFFER_BYTES};

/// Pushes grouped by owner node: their positions in the batch, and the pushes.
type ByOwner = HashMap<NodeTag, (Vec<usize>, Vec<(ConnectionId, Bytes)>)>;

/// One node's data plane, shared by the WebSocket listener and the control API. Cheap to clone.
///
/// Every operation is `async`: one on a connection of another node waits for that node's
/// answer through Redis (at most `[cluster] rpc_timeout_ms`); none ever waits on a WebSocket
/// client.
#[derive(Clone)]
pub struct Broker {
    state: Arc<NodeState>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("node_id", &self.state.node_id)
            .finish_non_exhaustive()
    }
}

/// A random node id, for a config without one.
fn generated_node_id() -> String {
    let mut raw = [0u8; 6];
    rand::rng().fill_bytes(&mut raw);
    format!("node-{}", hex::encode(raw))
}

/// The node's state for `config` (no cluster yet).
fn node_state(config: Config) -> Result<NodeState, BrokerError> {
    let node_id = config
        .cluster
        .node_id
        .clone()
        .unwrap_or_else(generated_node_id);
    let secret = integration::webhook_key(&config);
    let metrics = Arc::new(Metrics::new());
    metrics
        .max_connections
        .set(i64::try_from(config.limits.max_connections).unwrap_or(i64::MAX));
    metrics
        .cluster_enabled
        .set(i64::from(config.cluster.redis_url.is_some()));
    let routes = Routes::new(&config, secret, Arc::clone(&metrics))?;
    let limits = &config.limits;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(WRITE_BUFFER_BYTES + 2 * limits.max_message_bytes + 1024)
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_frame_bytes))
        .accept_unmasked_frames(false);
    let write_through = WriteThrough::new(
        limits.write_through_max_recipients,
        fanout::write_through::sender_for(limits.send_path)?,
    );
    metrics
        .send_path_uring
        .set(i64::from(write_through.uring().is_some()));
    tracing::info!(
        send_path = write_through.path_name(),
        "write-through fan-outs send through {}",
        write_through.path_name()
    );
    Ok(NodeState {
        node_tag: NodeTag::of(&node_id),
        node_id,
        write_through,
        slots: Capacity::new(limits.max_connections),
        handshakes: Capacity::new(limits.max_pending_handshakes),
        per_address: conn::throttle::PerAddress::new(limits.connections_per_ip_per_sec),
        gate: arc_swap::ArcSwapOption::new(authorizer::Gate::new(&config).map(Arc::new)),
        config: ArcSwap::from_pointee(config),
        registry: Registry::new(),
        channels: Channels::new(),
        history: fanout::history::History::new(),
        listen_domain: OnceLock::new(),
        cluster: OnceLock::new(),
        routes: ArcSwap::from_pointee(routes),
        metrics,
        ws_config,
        shutdown: CancellationToken::new(),
        connections: TaskTracker::new(),
        disconnects: TaskTracker::new(),
    })
}

/// A node's state for unit tests (no cluster).
#[cfg(test)]
pub(crate) fn test_state(config: Config) -> Arc<NodeState> {
    Arc::new(node_state(config).expect("a valid test config"))
}

/// An open connection registered on `state`, for unit tests.
#[cfg(test)]
pub(crate) fn test_connection(state: &NodeState) -> Arc<conn::connection::Connection> {
    let id = ConnectionId::generate(state.node_tag).expect("rng");
    let c = Arc::new(conn::connection::Connection::new(
        id,
        0,
        [127, 0, 0, 1].into(),
        None,
        "h".into(),
        None,
    ));
    state.registry.insert(Arc::clone(&c));
    c
}

/// A connected loopback TCP pair for unit tests: (the client's end, the server's end).
#[cfg(test)]
pub(crate) async fn test_socket_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    (client.expect("connect"), accepted.expect("accept").0)
}

impl Broker {
    /// Builds a node from a validated config. Generates the node id when the config has none. With
    /// `[cluster] redis_url` it joins the cluster, and must then be called inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// Fails when the webhook HTTP client cannot be built or the Redis settings are unusable.
    pub fn new(config: Config) -> Result<Broker, BrokerError> {
        let settings = cluster::ClusterSettings::of(&config)?;
        let state = Arc::new(node_state(config)?);
        if let Some(settings) = settings {
            // Redis is connected lazily: the node starts (not ready) even while Redis is down.
            let c = cluster::Cluster::start(&state, settings)?;
            let link: Arc<dyn state::ClusterLink> = Arc::new(cluster::Link::new(c, &state));
            let _ = state.cluster.set(link);
        }
        Ok(Broker { state })
    }

    /// The configuration this node runs with now (a reload replaces it).
    pub fn config(&self) -> Arc<Config> {
        self.state.config.load_full()
    }

    /// Applies a reloaded configuration to new events at once: routes, the route selection
    /// expression, integrations, the webhook secret and the limits that can change safely.
    /// Settings fixed at start (see [`reload::RESTART_ONLY`]) keep their running values and
    /// are named in the report. Nothing is applied when the routes cannot be built.
    ///
    /// # Errors
    /// Fails when the new routes' HTTP client cannot be built; the old configuration stays.
    pub fn reload(&self, new: Config) -> Result<reload::Report, BrokerError> {
        reload::apply(&self.state, new)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.state.node_id
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.state.registry.len()
    }

    /// Ids of the connections open on this node (a snapshot; for operators and tests).
    pub fn connection_ids(&self) -> Vec<String> {
        let mut ids = Vec::with_capacity(self.state.registry.len());
        self.state
            .registry
            .for_each(|c| ids.push(c.id_text.to_string()));
        ids
    }

    /// True once draining started.
    pub fn is_shutting_down(&self) -> bool {
        self.state.shutdown.is_cancelled()
    }

    /// In cluster mode, waits (at most `limit`) until the node has joined; true when it has,
    /// or when there is no cluster. A node that has not joined still serves local traffic.
    pub async fn wait_joined(&self, limit: Duration) -> bool {
        match self.state.cluster() {
            Some(c) => c.wait_joined(limit).await,
            None => true,
        }
    }

    /// Accepts WebSocket clients on `listener` until [`Broker::shutdown`] is called.
    pub async fn serve(&self, listener: TcpListener) {
        ws::listener::accept_loop(Arc::clone(&self.state), listener, None).await
    }

    /// As [`Broker::serve`], over TLS (`wss://`) with `acceptor`. Fan-outs to these clients
    /// always queue (no write-through: the socket's bytes are not the frames).
    pub async fn serve_tls(&self, listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor) {
        ws::listener::accept_loop(Arc::clone(&self.state), listener, Some(acceptor)).await
    }

    /// Drains the node: stops accepting, closes every client with 1001, waits (up to
    /// `shutdown_grace_secs`) for connections to end and their `$disconnect` events to land,
    /// then leaves the cluster (its tasks stop).
    pub async fn shutdown(&self) {
        let s = &self.state;
        s.shutdown.cancel();
        // Each open connection learns through its outbox (connections registered from now on
        // check the token themselves).
        s.registry.for_each(|c| {
            c.outbox
                .request_close(close::GOING_AWAY, "Server shutting down");
        });
        let grace = Duration::from_secs(s.config().limits.shutdown_grace_secs);
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
        if let Some(c) = s.cluster() {
            c.leave().await;
        }
    }

    /// True while this node's Redis connection is up; `None` on a single node.
    pub fn redis_up(&self) -> Option<bool> {
        self.state.cluster().map(|c| c.is_up())
    }

    /// Why the node is not ready, if it is not: draining, fenced, or Redis unreachable (unless
    /// its peers confirmed a whole outage after it had joined: then every node is as good as
    /// another for new clients, and a load balancer should keep sending them).
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.is_shutting_down() {
            Some("draining")
        } else if self.state.cluster().is_some_and(|c| c.is_fenced()) {
            Some("fenced: cut off from Redis while other nodes reach it")
        } else if self.state.cluster().is_some_and(|c| !c.ready()) {
            Some("redis unreachable")
        } else {
            None
        }
    }

    /// In cluster mode, lets this node ask its peers — and be asked — whether they reach Redis
    /// when it loses Redis (see [`peer`]). `control_url` is where peers reach this node's
    /// control API. Without it a node that loses Redis keeps serving, whatever the cause.
    pub fn enable_peer_checks(&self, control_url: String, witness: Arc<dyn peer::PeerWitness>) {
        if let Some(c) = self.state.cluster() {
            c.set_witness(control_url, witness);
        }
    }

    /// What this node says of its cluster membership; `None` on a single node.
    pub fn cluster_health(&self) -> Option<peer::ClusterHealth> {
        self.state.cluster().map(|c| c.health())
    }

    /// Runs `op` on connection `id`: here when this node owns it, else on its owner through the
    /// cluster. Either way the answer is the owner's [`ops::execute`] result.
    async fn on_connection(&self, id: &str, op: ConnOp) -> Result<OpOutcome, ConnectionError> {
        let cid = ConnectionId::parse(id)?;
        match self.state.remote(cid) {
            Some(c) => c.call(cid, op).await,
            None => ops::execute(&self.state, cid, op).await,
        }
    }

    /// PostToConnection: queues `data` for the client — a text frame when it is UTF-8, binary
    /// otherwise. Never waits on the client; a connection on another node is reached through
    /// the cluster and its owner's answer is returned.
    pub async fn post_to_connection(&self, id: &str, data: Bytes) -> Result<(), ConnectionError> {
        ops::check_size(&self.state, &data)?;
        self.on_connection(id, ConnOp::Post(data)).await.map(|_| ())
    }

    /// Many pushes at once (a batch): this node's connections are served in order at once; the
    /// pushes for each other node travel together in one message, and the nodes are asked
    /// concurrently. One result per push, in the given order.
    pub async fn post_many(
        &self,
        pushes: Vec<(ConnectionId, Bytes)>,
    ) -> Vec<Result<(), ConnectionError>> {
        let mut results: Vec<Option<Result<(), ConnectionError>>> = vec![None; pushes.len()];
        let mut remote = ByOwner::new();
        for (i, (cid, data)) in pushes.into_iter().enumerate() {
            if self.state.remote(cid).is_some() {
                let group = remote.entry(cid.node()).or_default();
                group.0.push(i);
                group.1.push((cid, data));
            } else {
                results[i] = Some(ops::post(&self.state, cid, &data));
            }
        }
        if let Some(cluster) = self.state.cluster() {
            let calls = remote.into_values().map(|(indices, items)| async move {
                let first = items[0].0;
                (indices, cluster.call(first, ConnOp::PostMany(items)).await)
            });
            for (indices, answer) in futures_util::future::join_all(calls).await {
                let each = match answer {
                    Ok(OpOutcome::Each(each)) => each,
                    Ok(_) => vec![Err(ConnectionError::Unavailable(
                        "unexpected answer from the owner node".into(),
                    ))],
                    Err(e) => vec![Err(e)],
                };
                for (k, i) in indices.into_iter().enumerate() {
                    results[i] = Some(
                        each.get(k)
                            .or(if each.len() == 1 { each.first() } else { None })
                            .cloned()
                            .unwrap_or_else(|| {
                                Err(ConnectionError::Unavailable(
                                    "the owner node answered too few items".into(),
                                ))
                            }),
                    );
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(ConnectionError::Gone)))
            .collect()
    }

    /// Subscribes a connection to a channel (idempotent). Returns once the subscription is
    /// live cluster-wide, so a publish right after it reaches the connection.
    pub async fn subscribe(&self, id: &str, channel: &str) -> Result<(), ConnectionError> {
        ops::check_channel(channel)?;
        self.on_connection(id, ConnOp::Subscribe(channel.to_string()))
            .await
            .map(|_| ())
    }

    /// Unsubscribes a connection from a channel (idempotent for a live connection).
    pub async fn unsubscribe(&self, id: &str, channel: &str) -> Result<(), ConnectionError> {
        ops::check_channel(channel)?;
        self.on_connection(id, ConnOp::Unsubscribe(channel.to_string()))
            .await
            .map(|_| ())
    }

    /// Subscribers of a channel on this node only (no cluster round trip).
    pub fn local_subscriber_count(&self, channel: &str) -> usize {
        self.state.channels.subscriber_count(channel)
    }

    /// Subscribers of a channel on every node.
    pub async fn subscriber_count(&self, channel: &str) -> Result<u64, ConnectionError> {
        ops::check_channel(channel)?;
        let local = self.state.channels.subscriber_count(channel) as u64;
        match self.state.cluster() {
            Some(c) => Ok(local + c.remote_subscribers(channel).await?),
            None => Ok(local),
        }
    }

    /// Sends `data` to every subscriber of `channel` (on every node) except `exclude`. The frame
    /// is encoded once and shared; no subscriber is waited for. `recipients` counts this node's;
    /// a channel with history (`[[channels]]`) also answers the message's offset and epoch.
    pub async fn publish(
        &self,
        channel: &str,
        data: &[u8],
        exclude: Option<&str>,
    ) -> Result<Published, ConnectionError> {
        ops::check_channel(channel)?;
        ops::check_size(&self.state, data)?;
        let exclude = exclude.map(ConnectionId::parse).transpose()?;
        if let Some(c) = self.state.cluster() {
            let config = self.state.config.load_full();
            if let Some(rule) = config.channels.get(channel).filter(|r| r.keeps_history()) {
                // Redis assigns the offset and sends the message to every interested node,
                // this one included, so every node delivers in offset order. Without Redis
                // there is no offset to give: the publish fails rather than skip one.
                let (offset, epoch) = c.publish_history(channel, exclude, data, rule).await?;
                return Ok(Published {
                    fan: FanOut {
                        recipients: self.state.channels.subscriber_count(channel),
                        ..FanOut::default()
                    },
                    offset: Some(offset),
                    epoch: Some(Arc::from(epoch)),
                });
            }
        }
        let mut published = fanout::publish(&self.state, channel, data, exclude, "publish", true);
        if let Some(c) = self.state.cluster() {
            if let Err(e) = c.publish(channel, exclude, data).await {
                published.fan.cluster_failed = true;
                self.count_cluster_failure(&e);
            }
        }
        Ok(published)
    }

    /// Up to `limit` of the messages `channel` keeps after offset `since`, oldest first, with
    /// the channel's epoch and newest offset (from Redis in cluster mode).
    ///
    /// # Errors
    /// `InvalidChannel` for a bad name or a channel that keeps no history; `Unavailable` when
    /// Redis does not answer.
    pub async fn history(
        &self,
        channel: &str,
        since: u64,
        limit: usize,
    ) -> Result<HistoryPage, ConnectionError> {
        ops::check_channel(channel)?;
        let rule = self.history_rule(channel)?;
        if let Some(c) = self.state.cluster() {
            let f = c
                .fetch_history(channel, since, limit.saturating_add(1), rule.history_ttl)
                .await?;
            let oldest_fresh = chrono::Utc::now()
                .timestamp_millis()
                .saturating_sub(i64::try_from(rule.history_ttl.as_millis()).unwrap_or(i64::MAX));
            let fresh: Vec<_> = f
                .items
                .into_iter()
                .filter(|i| i.published_ms >= oldest_fresh)
                .collect();
            let more = fresh.len() > limit;
            return Ok(HistoryPage {
                epoch: f.epoch,
                offset: f.head,
                oldest: fresh.first().map_or(f.first.max(since + 1), |i| i.offset),
                items: fresh
                    .into_iter()
                    .take(limit)
                    .map(|i| HistoryItem {
                        offset: i.offset,
                        published_ms: i.published_ms,
                        data: i.payload,
                    })
                    .collect(),
                more,
            });
        }
        let h = &self.state.history;
        let log = h.log(channel);
        let page = h.lock(&log).page(since, limit, rule.history_ttl);
        Ok(HistoryPage {
            epoch: page.epoch.to_string(),
            offset: page.head,
            oldest: page.oldest,
            items: page
                .items
                .into_iter()
                .map(|e| HistoryItem {
                    offset: e.offset,
                    published_ms: e.published_ms,
                    data: e.payload,
                })
                .collect(),
            more: page.more,
        })
    }

    /// Forgets what `channel` keeps (offsets go on; clients behind them are told they cannot
    /// recover). Returns how many messages were dropped.
    ///
    /// # Errors
    /// `InvalidChannel` for a bad name or a channel that keeps no history; `Unavailable` when
    /// Redis does not answer.
    pub async fn clear_history(&self, channel: &str) -> Result<usize, ConnectionError> {
        ops::check_channel(channel)?;
        self.history_rule(channel)?;
        if let Some(c) = self.state.cluster() {
            return c.clear_history(channel).await;
        }
        let n = self.state.history.clear(channel);
        let (bytes, messages) = self.state.history.usage();
        let m = &self.state.metrics;
        m.history_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        m.history_messages
            .set(i64::try_from(messages).unwrap_or(i64::MAX));
        Ok(n)
    }

    fn history_rule(&self, channel: &str) -> Result<config::ChannelRule, ConnectionError> {
        self.state
            .config()
            .channels
            .get(channel)
            .filter(|r| r.keeps_history())
            .cloned()
            .ok_or_else(|| {
                ConnectionError::InvalidChannel(format!(
                    "channel {channel:?} keeps no history: no [[channels]] rule with a history_size covers it"
                ))
            })
    }

    /// Sends `data` to every connection on every node except `exclude`.
    pub async fn broadcast(
        &self,
        data: &[u8],
        exclude: Option<&str>,
    ) -> Result<FanOut, ConnectionError> {
        ops::check_size(&self.state, data)?;
        let exclude = exclude.map(ConnectionId::parse).transpose()?;
        let mut fan = fan_out(
            &self.state,
            Audience::Everyone,
            data,
            exclude,
            "broadcast",
            true,
        );
        if let Some(c) = self.state.cluster() {
            if let Err(e) = c.broadcast(exclude, data).await {
                fan.cluster_failed = true;
                self.count_cluster_failure(&e);
            }
        }
        Ok(fan)
    }

    fn count_cluster_failure(&self, e: &ConnectionError) {
        self.state
            .metrics
            .cluster_dropped_total
            .with_label_values(&["publish_failed"])
            .inc();
        tracing::warn!(error = %e, "delivered locally only: the cluster is unavailable");
    }

    /// One page of `GET /@connections`: up to `limit` open connections after the cursor
    /// `after` — of this node, or in cluster mode of every member, node by node in tag order,
    /// each node's in id order. `next` is the cursor of the following page (`None`: done). A
    /// member that died meanwhile is skipped (its connections are gone); one that does not
    /// answer fails the page with `Unavailable`, so the caller can retry the same cursor.
    pub async fn list_connections(
        &self,
        after: Option<ConnectionId>,
        limit: u32,
    ) -> Result<ConnectionPage, ConnectionError> {
        self.list_pages(after, limit, |after, limit| ConnOp::List { after, limit })
            .await
    }

    /// One page of `GET /@channels/{channel}/presence`: up to `limit` subscribers of `channel`
    /// after the cursor, paged as [`Broker::list_connections`] pages (node by node; a node that
    /// died meanwhile is skipped, so its subscribers leave the list with it).
    ///
    /// # Errors
    /// `InvalidChannel` for a bad name or a channel whose rule has no `presence`;
    /// `Unavailable` when a node does not answer.
    pub async fn presence(
        &self,
        channel: &str,
        after: Option<ConnectionId>,
        limit: u32,
    ) -> Result<ConnectionPage, ConnectionError> {
        self.presence_rule(channel)?;
        self.list_pages(after, limit, |after, limit| ConnOp::ListChannel {
            channel: channel.to_string(),
            after,
            limit,
        })
        .await
    }

    /// `GET /@channels/{channel}/presence-stats`: subscribers and distinct `principalId`s over
    /// every node (connections without one count as their own principal).
    ///
    /// # Errors
    /// As [`Broker::presence`].
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, ConnectionError> {
        self.presence_rule(channel)?;
        let mut after = None;
        let mut connections = 0u64;
        let mut principals: std::collections::HashSet<String> = std::collections::HashSet::new();
        loop {
            let page = self.presence(channel, after, 1_000).await?;
            for item in &page.items {
                connections += 1;
                principals.insert(match item.principal() {
                    Some(p) => format!("p:{p}"),
                    None => format!("c:{}", item.id),
                });
            }
            match page.next {
                Some(next) => after = Some(ConnectionId::parse(&next)?),
                None => break,
            }
        }
        Ok(PresenceStats {
            connections,
            principals: principals.len() as u64,
        })
    }

    fn presence_rule(&self, channel: &str) -> Result<(), ConnectionError> {
        ops::check_channel(channel)?;
        if self
            .state
            .config()
            .channels
            .get(channel)
            .is_some_and(|r| r.presence)
        {
            Ok(())
        } else {
            Err(ConnectionError::InvalidChannel(format!(
                "channel {channel:?} has no presence: no [[channels]] rule with presence = true covers it"
            )))
        }
    }

    /// Pages of connections node by node in tag order, each node's in id order; `op` builds
    /// the page request for one node.
    async fn list_pages(
        &self,
        after: Option<ConnectionId>,
        limit: u32,
        op: impl Fn(ConnectionId, u32) -> ConnOp,
    ) -> Result<ConnectionPage, ConnectionError> {
        let own = self.state.node_tag;
        let tags = match self.state.cluster() {
            Some(c) => c.members().await?,
            None => vec![own],
        };
        let limit = limit.max(1);
        let mut items = Vec::new();
        let start = after.map_or(tags[0], |a| a.node());
        let mut nodes = tags.iter().copied().filter(|t| *t >= start).peekable();
        while let Some(tag) = nodes.next() {
            let from = match after {
                Some(a) if a.node() == tag => a,
                _ => ConnectionId::first_of(tag),
            };
            let op = op(from, limit - items.len() as u32);
            let outcome = match self.state.remote(from) {
                Some(c) => match c.call(from, op).await {
                    Err(ConnectionError::Gone) => continue,
                    other => other?,
                },
                None => ops::execute(&self.state, from, op).await?,
            };
            let OpOutcome::Listed { items: page, more } = outcome else {
                return Err(ConnectionError::Unavailable(
                    "unexpected answer from a node".into(),
                ));
            };
            items.extend(page);
            if more {
                let next = items.last().map(|l| l.id.to_string());
                return Ok(ConnectionPage { items, next });
            }
            if items.len() as u32 >= limit {
                let next = nodes.peek().map(|t| ConnectionId::first_of(*t).to_string());
                return Ok(ConnectionPage { items, next });
            }
        }
        Ok(ConnectionPage { items, next: None })
    }

    /// GetConnection.
    pub async fn get_connection(&self, id: &str) -> Result<ConnectionInfo, ConnectionError> {
        match self.on_connection(id, ConnOp::Get).await? {
            OpOutcome::Info(info) => Ok(info),
            _ => Err(ConnectionError::Unavailable(
                "unexpected answer from the owner node".into(),
            )),
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
        let reason = reason.unwrap_or("").to_string();
        ops::check_close(code, &reason)?;
        self.on_connection(id, ConnOp::Delete { code, reason })
            .await
            .map(|_| ())
    }
}

/// What `GET /@channels/{channel}/presence-stats` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceStats {
    /// Subscribed connections, every node's.
    pub connections: u64,
    /// Distinct `principalId`s among them (a connection without one counts once).
    pub principals: u64,
}

/// A page of a channel's history (see [`Broker::history`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The channel's epoch.
    pub epoch: String,
    /// The channel's newest offset (0: nothing published in this epoch).
    pub offset: u64,
    /// The oldest offset still kept (`offset + 1` when none is).
    pub oldest: u64,
    /// The messages, oldest first.
    pub items: Vec<HistoryItem>,
    /// True when more messages follow the last item.
    pub more: bool,
}

/// One kept message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// Its offset.
    pub offset: u64,
    /// When it was published (Unix milliseconds).
    pub published_ms: i64,
    /// The published bytes.
    pub data: Bytes,
}

/// A page of `GET /@connections` (see [`Broker::list_connections`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPage {
    /// The connections, in listing order.
    pub items: Vec<Listed>,
    /// The cursor of the next page; `None` when this was the last.
    pub next: Option<String>,
}

/// Internals that benches (`benches/`), fuzz targets (`fuzz/`) and tests drive directly; not a
/// stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::cluster::wire::{Msg, WireError};
    pub use crate::conn::connection::Connection;
    pub use crate::conn::frame;
    pub use crate::conn::op::{ConnOp, OpOutcome};
    pub use crate::fanout::channels::Channels;
    pub use crate::fanout::history::Since;
    pub use crate::fanout::recovery::parse_recover;
    pub use crate::integration::event::{build_event, EventKind, EventSource, MessageBody};
    pub use crate::integration::lambda::decode as decode_lambda_result;
    pub use crate::integration::Answer;
    pub use crate::selection::{select_route, RouteChoice, SelectionExpression};
    pub use crate::ws::forwarded::{client_address, parse_proxy_header};
    pub use crate::ws::handshake::parse_request;
    pub use crate::ws::meter::{FrameMeter, TooManyFragments};
}
