//! Cluster mode: nodes sharing one Redis behave as one gateway.
//!
//! - **Liveness** ([`membership`]). Each node refreshes its liveness key every heartbeat and
//!   lists itself in the member hash. A node whose key expired is dead.
//! - **Connection operations** ([`rpc`], [`inbox`]) on an id owned by another node (the id
//!   carries the owner's tag) travel as [`wire::Msg::Request`] on the owner's inbox; the owner
//!   runs them with [`crate::ops::execute`] — the code that serves its own control API — and
//!   answers with the typed result. A dead owner answers `Gone`; Redis unreachable answers
//!   `Unavailable`.
//! - **Fan-out.** A node subscribes to a channel's Redis channel only while it has local
//!   subscribers, so a publish crosses Redis once and reaches only interested nodes. The
//!   publishing node delivers locally itself and skips its own echo. Broadcasts and count
//!   queries travel on one channel every node listens on.
//! - **Reaping** ([`reaper`]). Each node records its open connections in Redis; a survivor that
//!   finds a dead node takes its reaping lock and sends `$disconnect` for each recorded
//!   connection, removing each record once its event was delivered.
//! - **Redis loss** ([`fence`]). Local traffic goes on; cross-node calls fail fast; `/readyz`
//!   says so. Before its liveness key can expire, the node asks its peers directly whether they
//!   reach Redis: one does — it is cut off alone and fences (closes its clients with 1012,
//!   refuses upgrades); none does — Redis is down for everyone and it keeps serving. When Redis
//!   answers again the node re-subscribes, and closes whatever a survivor reaped meanwhile.
//!
//! The rest of the node sees the cluster only through [`ClusterLink`]; this module imports the
//! node's state, operations and fan-out, never the other way round. Key names live in
//! [`keys`]; messages use the binary format of [`wire`]. Every task started here is tracked and
//! stops when the node leaves.

mod fence;
mod history;
mod inbox;
mod keys;
mod lifeline;
mod link;
mod membership;
mod reaper;
mod rpc;
pub mod wire;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use redis::PushInfo;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RedisMode;
use crate::conn::connection::Connection;
use crate::conn::id::{ConnectionId, NodeTag};
use crate::conn::op::{ConnOp, OpOutcome};
use crate::error::{BrokerError, ConnectionError};
use crate::metrics::Metrics;
use crate::peer::{ClusterHealth, PeerWitness};
use crate::state::{ClusterLink, NodeState};
use link::{LinkTiming, RedisLink};
use wire::Msg;

/// Inbound cluster messages waiting to be handled; beyond this they are dropped and counted.
const INBOX_CAPACITY: usize = 65_536;

/// Cluster settings, from `[cluster]`.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSettings {
    /// Redis URL (the first seed, with a Redis Cluster).
    pub redis_url: String,
    /// Standalone or Redis Cluster.
    pub mode: RedisMode,
    /// Further Redis Cluster seed nodes.
    pub seed_urls: Vec<String>,
    /// How often the node refreshes its liveness key.
    pub heartbeat: Duration,
    /// Liveness key TTL: a node silent this long is dead.
    pub node_ttl: Duration,
    /// How long a cross-node call waits for the owner's answer.
    pub rpc_timeout: Duration,
    /// The CA (PEM) that `rediss://` servers are verified against; `None`: the system's roots.
    pub tls_ca_pem: Option<Vec<u8>>,
}

impl ClusterSettings {
    /// Time kept in hand below the liveness TTL for Redis command latency, scheduling and clock
    /// rates: a tenth of the TTL, at least 50 ms.
    pub(crate) fn fence_margin(&self) -> Duration {
        (self.node_ttl / 10).max(Duration::from_millis(50))
    }

    /// How long one peer question may take.
    pub(crate) fn peer_timeout(&self) -> Duration {
        self.heartbeat / 2
    }

    /// How long one heartbeat's Redis commands may take together: as long as a success still
    /// vouches for Redis ([`Self::fresh_for`]), so a slow but working Redis (or a loaded node)
    /// does not count as lost, while a black-holed one is given up on before the fencing
    /// decision.
    pub(crate) fn beat_timeout(&self) -> Duration {
        self.fresh_for()
    }

    /// A node reaches Redis, as far as its peers and its own reaper are concerned, while its
    /// last heartbeat succeeded this recently: as long as possible while a peer that lost Redis
    /// at the same moment as this node (its last success at most one interval before this
    /// node's) is already past it when asked — `ask_peers_after − heartbeat − margin`.
    pub(crate) fn fresh_for(&self) -> Duration {
        self.ask_peers_after()
            .saturating_sub(self.heartbeat)
            .saturating_sub(self.fence_margin())
            .max(self.heartbeat)
    }

    /// How long after its last renewal was sent a node that could not renew asks its peers: the
    /// answer (bounded by [`Self::peer_timeout`]) is in by `node_ttl − margin`, before any
    /// survivor can find its liveness key expired.
    pub(crate) fn ask_peers_after(&self) -> Duration {
        self.node_ttl
            .saturating_sub(self.fence_margin())
            .saturating_sub(self.peer_timeout())
    }
}

impl ClusterSettings {
    /// The settings of `config`, when it has a Redis URL.
    pub(crate) fn of(config: &crate::config::Config) -> Result<Option<Self>, BrokerError> {
        let c = &config.cluster;
        let Some(redis_url) = c.redis_url.clone() else {
            return Ok(None);
        };
        let tls_ca_pem = match &c.tls_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| BrokerError::TlsCa {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        Ok(Some(Self {
            redis_url,
            mode: c.mode,
            seed_urls: c.seed_urls.clone(),
            heartbeat: Duration::from_millis(c.heartbeat_interval_ms),
            node_ttl: Duration::from_millis(c.node_ttl_ms),
            rpc_timeout: Duration::from_millis(c.rpc_timeout_ms),
            tls_ca_pem,
        }))
    }
}

/// A node's membership in the cluster.
pub(crate) struct Cluster {
    tag: NodeTag,
    node_id: String,
    settings: ClusterSettings,
    redis: RedisLink,
    /// A second link, used only by the heartbeat.
    beat: RedisLink,
    up: AtomicBool,
    metrics: Arc<Metrics>,
    /// Set when the node leaves: the heartbeat stops so the node's keys stay deleted.
    leaving: AtomicBool,
    calls: rpc::Calls,
    /// Channels this node is subscribed to in Redis; changes are serialized by this lock.
    interest: tokio::sync::Mutex<HashSet<String>>,
    /// Set while the node is fenced (see [`fence`]).
    fenced: AtomicBool,
    /// Set while the peers confirm Redis is down for everyone (cleared when it answers).
    outage: AtomicBool,
    /// Set once the node has joined (the first rejoin succeeded).
    joined: AtomicBool,
    /// Set while a rejoin runs; `rejoin_again` asks it for another round.
    rejoining: AtomicBool,
    rejoin_again: AtomicBool,
    /// When the heartbeat last succeeded, and since when Redis has answered.
    lease: std::sync::Mutex<fence::Lease>,
    /// The other members' control URLs, refreshed every heartbeat while Redis answers.
    peers: std::sync::Mutex<Vec<String>>,
    /// How this node asks its peers, and where they reach it; unset: it never fences.
    witness: std::sync::OnceLock<(String, Arc<dyn PeerWitness>)>,
    /// Every task the cluster starts.
    tasks: TaskTracker,
    /// The node's runtime: where every task the cluster starts runs, but the heartbeat and the
    /// fence watch (see [`lifeline`]).
    runtime: tokio::runtime::Handle,
    /// Cancelled when the node leaves: every task stops.
    stop: CancellationToken,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> ConnectionError {
    ConnectionError::Unavailable(format!("cluster unavailable: {e}"))
}

impl Cluster {
    /// Creates the membership (Redis is connected lazily) and starts its tasks: the inbox
    /// reader, the heartbeat and the reaper.
    pub(crate) fn start(
        state: &Arc<NodeState>,
        settings: ClusterSettings,
    ) -> Result<Arc<Cluster>, BrokerError> {
        let (tx, rx) = mpsc::channel::<PushInfo>(INBOX_CAPACITY);
        let metrics = Arc::clone(&state.metrics);
        let push = move |info: PushInfo| -> Result<(), redis::aio::SendError> {
            if tx.try_send(info).is_err() {
                metrics
                    .cluster_dropped_total
                    .with_label_values(&["inbox_full"])
                    .inc();
            }
            Ok(())
        };
        let mut seeds = vec![settings.redis_url.clone()];
        seeds.extend(settings.seed_urls.iter().cloned());
        type NoPush = fn(PushInfo) -> Result<(), redis::aio::SendError>;
        let ca = settings.tls_ca_pem.as_deref();
        // The heartbeat has a connection of its own, so a burst of other commands (thousands of
        // connections closing at once) cannot delay it past the liveness TTL.
        let two = Duration::from_secs(2);
        let main = LinkTiming {
            connect: two,
            response: two,
            max_delay: settings.heartbeat.min(two),
        };
        let beats = LinkTiming {
            connect: settings.beat_timeout().min(two),
            response: settings.beat_timeout(),
            max_delay: (settings.heartbeat / 2).min(two),
        };
        let redis = match settings.mode {
            RedisMode::Standalone => RedisLink::single(&settings.redis_url, ca, Some(push), main)?,
            RedisMode::Cluster => RedisLink::sharded(&seeds, ca, Some(push), main)?,
        };
        let lifeline = lifeline::Lifeline::spawn("gangway-heartbeat")?;
        let beat = {
            // Made inside the heartbeat's runtime, so the link's own tasks (reconnecting
            // included) run there too (see `Cluster::start_lifeline`).
            let _inside = lifeline.enter();
            match settings.mode {
                RedisMode::Standalone => {
                    RedisLink::single(&settings.redis_url, ca, None::<NoPush>, beats)?
                }
                RedisMode::Cluster => RedisLink::sharded(&seeds, ca, None::<NoPush>, beats)?,
            }
        };
        let cluster = Arc::new(Cluster {
            tag: state.node_tag,
            node_id: state.node_id.clone(),
            settings,
            redis,
            beat,
            up: AtomicBool::new(false),
            metrics: Arc::clone(&state.metrics),
            leaving: AtomicBool::new(false),
            calls: rpc::Calls::default(),
            interest: tokio::sync::Mutex::new(HashSet::new()),
            fenced: AtomicBool::new(false),
            outage: AtomicBool::new(false),
            joined: AtomicBool::new(false),
            rejoining: AtomicBool::new(false),
            rejoin_again: AtomicBool::new(false),
            lease: std::sync::Mutex::new(fence::Lease::default()),
            peers: std::sync::Mutex::new(Vec::new()),
            witness: std::sync::OnceLock::new(),
            tasks: TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
            stop: CancellationToken::new(),
        });
        cluster.spawn(inbox::read(Arc::clone(state), Arc::clone(&cluster), rx));
        cluster.spawn(reaper::run(Arc::clone(state), Arc::clone(&cluster)));
        cluster.start_lifeline(state, lifeline);
        Ok(cluster)
    }

    /// Runs `task` on the node's runtime, on the cluster's tracker, until it ends or the cluster
    /// stops.
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn_on(self.stoppable(task), &self.runtime);
    }

    fn stoppable(
        &self,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let stop = self.stop.clone();
        async move {
            tokio::select! {
                () = task => {}
                () = stop.cancelled() => {}
            }
        }
    }

    /// Starts the heartbeat and the fence watch on the lifeline (a thread and runtime of their
    /// own, see [`lifeline`]), where the heartbeat's Redis link was made. What they start (a
    /// rejoin) runs on the node's runtime ([`Cluster::spawn`]).
    fn start_lifeline(self: &Arc<Self>, state: &Arc<NodeState>, lifeline: lifeline::Lifeline) {
        let (state, cluster) = (Arc::clone(state), Arc::clone(self));
        let task = self.tasks.track_future(self.stoppable(async move {
            tokio::join!(
                membership::heartbeat(Arc::clone(&state), Arc::clone(&cluster)),
                fence::watch(state, cluster),
            );
        }));
        lifeline.run(task.boxed());
    }

    /// The lease bookkeeping (never held across an await).
    fn lease(&self) -> std::sync::MutexGuard<'_, fence::Lease> {
        self.lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        self.metrics.cluster_redis_up.set(i64::from(up));
    }

    fn fail_fast(&self) -> Result<(), ConnectionError> {
        if self.up.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(unavailable("Redis is unreachable"))
        }
    }

    async fn send(&self, channel: &str, msg: &Msg) -> Result<i64, ConnectionError> {
        self.redis
            .publish(channel, msg.encode())
            .await
            .map_err(unavailable)
    }

    async fn node_alive(&self, tag: NodeTag) -> Result<bool, ConnectionError> {
        self.redis
            .query::<i64>(redis::cmd("EXISTS").arg(keys::node(tag)))
            .await
            .map(|n| n > 0)
            .map_err(unavailable)
    }

    /// True when this node may judge another dead from its missing liveness key: the same
    /// evidence the reaper needs (its own heartbeats fresh and successful for a full
    /// `node_ttl`, Redis up, not fenced). Right after Redis comes back — restarted, keys
    /// expired while it was down — every owner's key is missing until its next heartbeat.
    fn may_judge_dead(&self) -> bool {
        let s = &self.settings;
        let lease_ok = {
            let lease = self.lease();
            lease.fresh(s) && lease.healthy_for(s.node_ttl)
        };
        lease_ok && self.up.load(Ordering::Relaxed) && !self.fenced.load(Ordering::Relaxed)
    }

    /// An owner that did not answer: `Gone` when it is dead, else `Unavailable`. Dead needs
    /// both a missing liveness key and [`Cluster::may_judge_dead`]; without the latter a
    /// live owner's client would be answered 410 while it is open.
    async fn silent_owner(&self, owner: NodeTag, what: &str) -> Result<OpOutcome, ConnectionError> {
        if self.node_alive(owner).await? {
            Err(unavailable(what))
        } else if !self.may_judge_dead() {
            tracing::debug!(%owner, what, "owner's liveness key is gone, but this node's own view is not settled: answering Unavailable");
            Err(unavailable(what))
        } else {
            tracing::debug!(%owner, what, "owner's liveness key is gone: answering Gone");
            Err(ConnectionError::Gone)
        }
    }

    async fn call_owner(
        &self,
        conn: ConnectionId,
        op: ConnOp,
    ) -> Result<OpOutcome, ConnectionError> {
        self.fail_fast()?;
        let owner = conn.node();
        let mut waiting = self.calls.call()?;
        let msg = Msg::Request {
            req_id: waiting.id,
            reply_to: self.tag,
            conn,
            op,
        };
        if self.send(&keys::inbox(owner), &msg).await? == 0 {
            // Nobody listens on the owner's inbox: dead (gone) or restarting (unavailable).
            return self
                .silent_owner(owner, "the owner node is not listening")
                .await;
        }
        match tokio::time::timeout(self.settings.rpc_timeout, &mut waiting.answer).await {
            Ok(Ok(result)) => result,
            _ => {
                self.silent_owner(owner, "the owner node did not answer in time")
                    .await
            }
        }
    }

    async fn count_remote(&self, channel: &str) -> Result<u64, ConnectionError> {
        self.fail_fast()?;
        let mut waiting = self.calls.count()?;
        let msg = Msg::CountQuery {
            req_id: waiting.id,
            reply_to: self.tag,
            channel: channel.to_string(),
        };
        // Every node listens on the broadcast channel, this one included.
        let others = (self.send(keys::ALL, &msg).await? - 1).max(0) as usize;
        let mut total = 0u64;
        let deadline = tokio::time::Instant::now() + self.settings.rpc_timeout;
        for _ in 0..others {
            match tokio::time::timeout_at(deadline, waiting.answer.recv()).await {
                Ok(Some(n)) => total = total.saturating_add(n),
                _ => return Err(unavailable("not every node answered the count")),
            }
        }
        Ok(total)
    }

    async fn reconcile_channel(&self, state: &NodeState, channel: &str) {
        let mut interest = self.interest.lock().await;
        let want = state.channels.subscriber_count(channel) > 0;
        let have = interest.contains(channel);
        if want && !have {
            interest.insert(channel.to_string());
            if let Err(e) = self.redis.subscribe(keys::channel(channel)).await {
                // Kept in `interest`: restored when Redis answers again.
                tracing::warn!(channel, error = %e, "cannot subscribe in Redis yet");
            }
        } else if !want && have {
            interest.remove(channel);
            if let Err(e) = self.redis.unsubscribe(keys::channel(channel)).await {
                tracing::debug!(channel, error = %e, "cannot unsubscribe in Redis");
            }
        }
    }
}

/// The cluster as the node sees it. Holds the node's state weakly: the state holds the link.
pub(crate) struct Link {
    cluster: Arc<Cluster>,
    state: std::sync::Weak<NodeState>,
}

impl Link {
    /// Sends `msg` on `channel`'s Redis channel (to the nodes with subscribers).
    fn to_channel<'a>(
        &'a self,
        channel: &'a str,
        msg: Msg,
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        async move {
            self.cluster.fail_fast()?;
            self.cluster
                .send(&keys::channel(channel), &msg)
                .await
                .map(|_| ())
        }
        .boxed()
    }

    /// The link for `cluster`, serving `state`.
    pub(crate) fn new(cluster: Arc<Cluster>, state: &Arc<NodeState>) -> Self {
        Link {
            cluster,
            state: Arc::downgrade(state),
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cluster.fmt(f)
    }
}

impl ClusterLink for Link {
    fn is_up(&self) -> bool {
        self.cluster.up.load(Ordering::Relaxed)
    }

    fn is_fenced(&self) -> bool {
        self.cluster.fenced.load(Ordering::Relaxed)
    }

    fn accepts_upgrades(&self) -> bool {
        let c = &self.cluster;
        // Without Redis a new connection can be neither recorded nor reached from other nodes:
        // only a confirmed whole outage (nobody can reap), or a node nobody knows yet (it never
        // joined, so nobody can reap it), takes new clients.
        !c.fenced.load(Ordering::Relaxed)
            && (c.up.load(Ordering::Relaxed)
                || c.outage.load(Ordering::Relaxed)
                || c.lease().renewed_at.is_none())
    }

    fn ready(&self) -> bool {
        let c = &self.cluster;
        !c.fenced.load(Ordering::Relaxed)
            && (c.up.load(Ordering::Relaxed)
                || (c.outage.load(Ordering::Relaxed) && c.joined.load(Ordering::Relaxed)))
    }

    fn health(&self) -> ClusterHealth {
        let fenced = self.is_fenced();
        let lease = self.cluster.lease();
        let reaches_redis = !fenced && lease.fresh(&self.cluster.settings);
        ClusterHealth {
            reaches_redis,
            fenced,
            healthy_for: if reaches_redis {
                lease.healthy()
            } else {
                Duration::ZERO
            },
        }
    }

    fn set_witness(&self, control_url: String, witness: Arc<dyn PeerWitness>) {
        let _ = self.cluster.witness.set((control_url, witness));
    }

    fn wait_joined(&self, limit: Duration) -> BoxFuture<'_, bool> {
        async move {
            let deadline = tokio::time::Instant::now() + limit;
            while !self.is_up() {
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            true
        }
        .boxed()
    }

    fn reconcile<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, ()> {
        async move {
            if let Some(state) = self.state.upgrade() {
                self.cluster.reconcile_channel(&state, channel).await;
            }
        }
        .boxed()
    }

    fn register<'a>(&'a self, conn: &'a Connection) -> BoxFuture<'a, ()> {
        membership::register(&self.cluster, conn).boxed()
    }

    fn unregister<'a>(&'a self, conn: &'a Connection) -> BoxFuture<'a, ()> {
        membership::unregister(&self.cluster, conn).boxed()
    }

    fn members(&self) -> BoxFuture<'_, Result<Vec<NodeTag>, ConnectionError>> {
        async move {
            self.cluster.fail_fast()?;
            let nodes: std::collections::HashMap<String, String> = self
                .cluster
                .redis
                .query(redis::cmd("HGETALL").arg(keys::NODES))
                .await
                .map_err(unavailable)?;
            let mut tags: Vec<NodeTag> = nodes
                .keys()
                .filter_map(|hex| NodeTag::from_hex(hex))
                .collect();
            tags.push(self.cluster.tag);
            tags.sort_unstable();
            tags.dedup();
            Ok(tags)
        }
        .boxed()
    }

    fn call(
        &self,
        conn: ConnectionId,
        op: ConnOp,
    ) -> BoxFuture<'_, Result<OpOutcome, ConnectionError>> {
        self.cluster.call_owner(conn, op).boxed()
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        exclude: Option<ConnectionId>,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        let msg = Msg::Publish {
            origin: self.cluster.tag,
            channel: channel.to_string(),
            exclude,
            payload: Bytes::copy_from_slice(payload),
        };
        self.to_channel(channel, msg)
    }

    fn channel_event<'a>(
        &'a self,
        channel: &'a str,
        exclude: Option<ConnectionId>,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        let msg = Msg::ChannelEvent {
            origin: self.cluster.tag,
            channel: channel.to_string(),
            exclude,
            payload: Bytes::copy_from_slice(payload),
        };
        self.to_channel(channel, msg)
    }

    fn broadcast<'a>(
        &'a self,
        exclude: Option<ConnectionId>,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        async move {
            self.cluster.fail_fast()?;
            let msg = Msg::Broadcast {
                origin: self.cluster.tag,
                exclude,
                payload: Bytes::copy_from_slice(payload),
            };
            self.cluster.send(keys::ALL, &msg).await.map(|_| ())
        }
        .boxed()
    }

    fn remote_subscribers<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<u64, ConnectionError>> {
        self.cluster.count_remote(channel).boxed()
    }

    fn publish_history<'a>(
        &'a self,
        channel: &'a str,
        exclude: Option<ConnectionId>,
        payload: &'a [u8],
        rule: &'a crate::config::ChannelRule,
    ) -> BoxFuture<'a, Result<(u64, String), ConnectionError>> {
        async move {
            self.cluster.fail_fast()?;
            let epoch = crate::fanout::history::new_epoch();
            let p = history::Publication {
                origin: self.cluster.tag,
                channel,
                exclude,
                payload,
                size: rule.history_size,
                ttl: rule.history_ttl,
                epoch: &epoch,
            };
            history::publish(&self.cluster.redis, p).await
        }
        .boxed()
    }

    fn fetch_history<'a>(
        &'a self,
        channel: &'a str,
        after: u64,
        limit: usize,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<crate::fanout::history::Fetched, ConnectionError>> {
        async move {
            self.cluster.fail_fast()?;
            let epoch = crate::fanout::history::new_epoch();
            history::fetch(&self.cluster.redis, channel, after, limit, ttl, &epoch).await
        }
        .boxed()
    }

    fn clear_history<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<usize, ConnectionError>> {
        async move {
            self.cluster.fail_fast()?;
            history::clear(&self.cluster.redis, channel).await
        }
        .boxed()
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        async move {
            membership::leave(&self.cluster).await;
            self.cluster.stop.cancel();
            self.cluster.tasks.close();
            self.cluster.tasks.wait().await;
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    /// A real redis-server on a free port, stopped when dropped.
    struct RedisServer(Child);

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn redis_server() -> (RedisServer, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (the test suite's install step puts it on PATH)");
        let server = RedisServer(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (server, port)
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The heartbeat keeps renewing the node's lease while every worker of the node's runtime is
    /// busy (here: the only one, blocked for three liveness TTLs), as it must under a storm of
    /// handshakes, so the node is never fenced, nor reapable, for being busy.
    #[test]
    fn a_busy_runtime_does_not_hold_the_heartbeat_back() {
        let (_redis, port) = redis_server();
        let mut config = crate::config::Config::default();
        config.cluster.redis_url = Some(format!("redis://127.0.0.1:{port}"));
        config.cluster.heartbeat_interval_ms = 100;
        config.cluster.node_ttl_ms = 500;
        let settings = ClusterSettings::of(&config)
            .expect("valid settings")
            .expect("a Redis URL");
        let state = crate::test_state(config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let cluster = runtime
            .block_on(async { Cluster::start(&state, settings) })
            .expect("the cluster starts");
        let renewed = || cluster.lease().renewed_at;
        wait_for("a first heartbeat", || renewed().is_some());
        let (blocked_tx, blocked_rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _ = blocked_tx.send(());
            std::thread::sleep(Duration::from_millis(1_500));
        });
        blocked_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the worker is blocked");
        let before = renewed();
        std::thread::sleep(Duration::from_millis(1_000));
        let during = renewed();
        assert!(
            during > before,
            "no heartbeat while the runtime was busy: {before:?} then {during:?}"
        );
        assert!(!cluster.fenced.load(Ordering::Relaxed));
        cluster.stop.cancel();
        runtime.block_on(async {
            cluster.tasks.close();
            cluster.tasks.wait().await;
        });
    }
}
