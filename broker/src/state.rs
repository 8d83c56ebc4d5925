//! What every task of a node shares: its configuration, connections, channels, routes, metrics,
//! task trackers — and, in cluster mode, the cluster, seen through the [`ClusterLink`] trait so
//! that nothing below the façade imports the cluster module.

use arc_swap::ArcSwap;
use std::sync::{Arc, OnceLock};

use futures_util::future::BoxFuture;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::conn::capacity::Capacity;
use crate::conn::connection::Connection;
use crate::conn::id::{ConnectionId, NodeTag};
use crate::conn::op::{ConnOp, OpOutcome};
use crate::conn::registry::Registry;
use crate::error::ConnectionError;
use crate::fanout::channels::Channels;
use crate::fanout::history::History;
use crate::fanout::write_through::WriteThrough;
use crate::integration::Routes;
use crate::metrics::Metrics;
use crate::peer::{ClusterHealth, PeerWitness};

/// Per-connection read buffer. tungstenite's default is 128 KiB, allocated eagerly; small keeps
/// idle connections cheap, and larger messages simply take more reads.
pub const READ_BUFFER_BYTES: usize = 1024;
/// Frames are collected up to this many bytes before a write is forced.
pub const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// What the rest of the node needs from the cluster (implemented by `cluster::Cluster`).
///
/// Every method may wait on Redis; none waits on a WebSocket client.
pub(crate) trait ClusterLink: Send + Sync + std::fmt::Debug {
    /// True while Redis answers.
    fn is_up(&self) -> bool;
    /// True while the node is fenced: it lost Redis while its peers reach it, so it closed its
    /// clients and refuses new ones until Redis answers it again.
    fn is_fenced(&self) -> bool;
    /// False while the node must not take new clients: fenced, or cut off from Redis without
    /// the peers having confirmed a whole outage.
    fn accepts_upgrades(&self) -> bool;
    /// What the node says of its membership when a peer asks.
    fn health(&self) -> ClusterHealth;
    /// Lets the node ask its peers (and be asked) when it loses Redis: `control_url` is where
    /// peers reach this node's control API.
    fn set_witness(&self, control_url: String, witness: Arc<dyn PeerWitness>);
    /// Waits (at most `limit`) until the node has joined; whether it did.
    fn wait_joined(&self, limit: std::time::Duration) -> BoxFuture<'_, bool>;
    /// Makes the node's Redis subscription to `channel` match whether it has local
    /// subscribers; returns once the subscription is live (or known impossible now).
    fn reconcile<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, ()>;
    /// Records an open connection, so a survivor can send its `$disconnect` if this node dies.
    fn register<'a>(&'a self, conn: &'a Connection) -> BoxFuture<'a, ()>;
    /// Forgets a connection that ended here (its `$disconnect` is this node's to send).
    fn unregister<'a>(&'a self, conn: &'a Connection) -> BoxFuture<'a, ()>;
    /// True when this node should get new clients from a load balancer: not fenced, and Redis
    /// is up — or this node joined before and its peers confirmed a whole outage (nobody can
    /// reap; every node is as good as another). A node that never joined is not ready.
    fn ready(&self) -> bool;
    /// Every member's tag (this node's included), from the member list in Redis.
    fn members(&self) -> BoxFuture<'_, Result<Vec<NodeTag>, ConnectionError>>;
    /// Runs `op` on `conn`, owned by another node; its answer.
    fn call(
        &self,
        conn: ConnectionId,
        op: ConnOp,
    ) -> BoxFuture<'_, Result<OpOutcome, ConnectionError>>;
    /// Sends a publish to the other nodes interested in `channel`.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        exclude: Option<ConnectionId>,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), ConnectionError>>;
    /// Sends a channel's join or leave message to the other nodes interested in `channel`.
    fn channel_event<'a>(
        &'a self,
        channel: &'a str,
        exclude: Option<ConnectionId>,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), ConnectionError>>;
    /// Sends a broadcast to every other node.
    fn broadcast<'a>(
        &'a self,
        exclude: Option<ConnectionId>,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), ConnectionError>>;
    /// Subscribers of `channel` on the other nodes.
    fn remote_subscribers<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<u64, ConnectionError>>;
    /// Publishes to a channel with history through Redis, which assigns the offset and sends
    /// the message to every node interested, this one included: its offset and epoch.
    fn publish_history<'a>(
        &'a self,
        channel: &'a str,
        exclude: Option<ConnectionId>,
        payload: &'a [u8],
        rule: &'a crate::config::ChannelRule,
    ) -> BoxFuture<'a, Result<(u64, String), ConnectionError>>;
    /// Up to `limit` messages `channel` keeps after offset `after` (messages older than `ttl`
    /// included: the caller judges them).
    fn fetch_history<'a>(
        &'a self,
        channel: &'a str,
        after: u64,
        limit: usize,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<crate::fanout::history::Fetched, ConnectionError>>;
    /// Forgets what `channel` keeps; how many messages it held.
    fn clear_history<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<usize, ConnectionError>>;
    /// Leaves the cluster (a drained node): its keys are removed, its tasks stop.
    fn leave(&self) -> BoxFuture<'_, ()>;
}

/// See the module documentation.
pub(crate) struct NodeState {
    /// The configuration in force: replaced whole by a reload (see [`crate::reload`]); read
    /// it through [`NodeState::config`] per event, never keep it across one.
    pub(crate) config: ArcSwap<Config>,
    pub(crate) node_id: String,
    pub(crate) node_tag: NodeTag,
    pub(crate) registry: Registry,
    pub(crate) channels: Channels,
    /// Channel history kept on this node (single-node mode).
    pub(crate) history: History,
    /// The cluster, when `[cluster] redis_url` is set.
    pub(crate) cluster: OnceLock<Arc<dyn ClusterLink>>,
    /// The routes in force, replaced with the configuration by a reload.
    pub(crate) routes: ArcSwap<Routes>,
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
    /// API keys and the authorizer, checked before `$connect` (replaced by a reload).
    pub(crate) gate: arc_swap::ArcSwapOption<crate::authorizer::Gate>,
    /// New upgrades per source address (`connections_per_ip_per_sec`), if limited.
    pub(crate) per_address: Option<crate::conn::throttle::PerAddress>,
    /// The WebSocket listener's address: `domainName` when `[api] domain_name` is not set.
    pub(crate) listen_domain: OnceLock<String>,
}

impl NodeState {
    /// The configuration in force now.
    pub(crate) fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.load()
    }

    /// The routes in force now.
    pub(crate) fn routes(&self) -> arc_swap::Guard<Arc<Routes>> {
        self.routes.load()
    }

    /// The cluster, if any.
    pub(crate) fn cluster(&self) -> Option<&Arc<dyn ClusterLink>> {
        self.cluster.get()
    }

    /// True while the node refuses upgrades: it is draining, fenced, or cut off from Redis
    /// without a confirmed whole outage.
    pub(crate) fn refuses_upgrades(&self) -> bool {
        self.shutdown.is_cancelled() || self.cluster().is_some_and(|c| !c.accepts_upgrades())
    }

    /// The cluster, when `id` belongs to another node and clustering is on.
    pub(crate) fn remote(&self, id: ConnectionId) -> Option<&Arc<dyn ClusterLink>> {
        if id.node() == self.node_tag {
            None
        } else {
            self.cluster()
        }
    }
}
