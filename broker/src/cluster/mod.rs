//! Cluster mode: nodes sharing one Redis behave as one gateway.
//!
//! - **Liveness.** Each node refreshes `gangway:node:{tag}` (a TTL key) every heartbeat and lists
//!   itself in the hash `gangway:nodes` (tag → node id). A node whose key expired is dead.
//! - **Connection operations** on an id owned by another node (the id carries the owner's tag)
//!   travel as [`wire::Msg::Request`] on the owner's inbox channel `gangway:n:{tag}`; the owner
//!   answers on the caller's inbox. A dead owner answers 410; Redis unreachable answers 503.
//! - **Fan-out.** A node subscribes to `gangway:c:{channel}` only while it has local
//!   subscribers, so a publish crosses Redis once and reaches only interested nodes. The
//!   publishing node delivers locally itself and skips its own echo. Broadcasts and count
//!   queries travel on `gangway:all`.
//! - **Reaping.** Each node records its open connections in `gangway:conns:{tag}`; a survivor
//!   that finds a dead node takes `gangway:reap:{tag}` (SET NX) and sends `$disconnect` for each
//!   recorded connection, removing each record once its event was delivered.
//! - **Redis loss.** Local traffic goes on; cross-node calls fail fast with 503; `/readyz` says
//!   so; when Redis answers again the node re-subscribes to every channel it needs.
//!
//! Messages between nodes use the compact binary format of [`wire`].

mod link;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};

use crate::broker::{ConnectionError, Shared};
use crate::connection::Connection;
use crate::id::{ConnectionId, NodeTag};
use link::RedisLink;
use wire::{Msg, Op};

/// Inbound cluster messages waiting to be handled; beyond this they are dropped and counted.
const INBOX_CAPACITY: usize = 65_536;
/// Most cross-node calls waiting for an answer at once.
const MAX_PENDING: usize = 65_536;

/// An owner node's answer: an HTTP-style status and a body.
pub type Answer = (u16, Vec<u8>);

/// Why a cluster call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// Redis cannot be reached, or the owner did not answer in time.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
}

/// Which kind of Redis the nodes share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// One Redis server: classic pub/sub.
    Standalone,
    /// A Redis Cluster: sharded pub/sub (Redis 7 or later).
    Cluster,
}

/// Cluster settings from `[cluster]`.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
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

/// A stored record of an open connection, enough to send its `$disconnect` from another node.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ConnRecord {
    c: i64,
    ip: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    ua: Option<String>,
    d: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    a: Option<serde_json::Value>,
}

/// A node's membership in the cluster.
pub struct Cluster {
    tag: NodeTag,
    node_id: String,
    settings: ClusterSettings,
    redis: RedisLink,
    /// A second link, used only by the heartbeat.
    beat: RedisLink,
    up: AtomicBool,
    /// Set when the node leaves: the heartbeat stops so the node's keys stay deleted.
    leaving: AtomicBool,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    counts: Mutex<HashMap<u64, mpsc::Sender<u64>>>,
    /// Channels this node is subscribed to in Redis; changes are serialized by this lock.
    interest: tokio::sync::Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

fn inbox(tag: NodeTag) -> String {
    format!("gangway:n:{tag}")
}
fn channel_key(channel: &str) -> String {
    format!("gangway:c:{channel}")
}
const ALL: &str = "gangway:all";
const NODES: &str = "gangway:nodes";
fn node_key(tag: NodeTag) -> String {
    format!("gangway:node:{tag}")
}
fn conns_key(tag: NodeTag) -> String {
    format!("gangway:conns:{tag}")
}

impl Cluster {
    /// Creates the membership (Redis is connected lazily) and starts its tasks: the inbox
    /// reader, the heartbeat and the reaper.
    pub(crate) fn start(
        shared: &Arc<Shared>,
        settings: ClusterSettings,
    ) -> Result<Arc<Cluster>, redis::RedisError> {
        let (tx, rx) = mpsc::channel::<PushInfo>(INBOX_CAPACITY);
        let metrics = Arc::clone(&shared.metrics);
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
        let (redis, beat) = match settings.mode {
            RedisMode::Standalone => (
                RedisLink::single(&settings.redis_url, ca, Some(push))?,
                RedisLink::single(&settings.redis_url, ca, None::<NoPush>)?,
            ),
            RedisMode::Cluster => (
                RedisLink::sharded(&seeds, ca, Some(push))?,
                RedisLink::sharded(&seeds, ca, None::<NoPush>)?,
            ),
        };
        let cluster = Arc::new(Cluster {
            tag: shared.node_tag,
            node_id: shared.node_id.clone(),
            settings,
            redis,
            beat,
            up: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            interest: tokio::sync::Mutex::new(HashSet::new()),
        });
        tokio::spawn(read_inbox(Arc::clone(shared), Arc::clone(&cluster), rx));
        tokio::spawn(heartbeat(Arc::clone(shared), Arc::clone(&cluster)));
        tokio::spawn(reaper(Arc::clone(shared), Arc::clone(&cluster)));
        Ok(cluster)
    }

    /// True while Redis answers.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Waits until the node has joined (Redis answered and subscriptions are live), at most
    /// `limit`. Returns whether it joined.
    pub async fn wait_joined(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.is_up() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    fn fail_fast(&self) -> Result<(), ClusterError> {
        if self.is_up() {
            Ok(())
        } else {
            Err(ClusterError::Unavailable("Redis is unreachable".into()))
        }
    }

    async fn publish(&self, channel: &str, msg: &Msg) -> Result<i64, ClusterError> {
        self.redis
            .publish(channel, msg.encode())
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))
    }

    async fn node_alive(&self, tag: NodeTag) -> Result<bool, ClusterError> {
        self.redis
            .query::<i64>(redis::cmd("EXISTS").arg(node_key(tag)))
            .await
            .map(|n| n > 0)
            .map_err(|e| ClusterError::Unavailable(e.to_string()))
    }

    /// Runs `op` on connection `conn`, owned by another node; returns the owner's status and
    /// body. 410 when the owner is dead.
    pub(crate) async fn call(
        &self,
        conn: ConnectionId,
        op: Op,
    ) -> Result<(u16, Vec<u8>), ClusterError> {
        self.fail_fast()?;
        let owner = conn.node();
        let req_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.len() >= MAX_PENDING {
                return Err(ClusterError::Unavailable(
                    "too many cross-node calls in flight".into(),
                ));
            }
            p.insert(req_id, tx);
        }
        let msg = Msg::Request {
            req_id,
            reply_to: self.tag,
            conn,
            op,
        };
        let result = async {
            let receivers = self.publish(&inbox(owner), &msg).await?;
            if receivers == 0 {
                // Nobody listens on the owner's inbox: dead (410) or restarting (503).
                return if self.node_alive(owner).await? {
                    Err(ClusterError::Unavailable(
                        "the owner node is not listening".into(),
                    ))
                } else {
                    Ok((410, Vec::new()))
                };
            }
            match tokio::time::timeout(self.settings.rpc_timeout, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                _ => {
                    if self.node_alive(owner).await? {
                        Err(ClusterError::Unavailable(
                            "the owner node did not answer in time".into(),
                        ))
                    } else {
                        Ok((410, Vec::new()))
                    }
                }
            }
        }
        .await;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req_id);
        result
    }

    /// Sends a channel publish to the other interested nodes.
    pub(crate) async fn publish_channel(
        &self,
        channel: &str,
        exclude: Option<ConnectionId>,
        payload: &[u8],
    ) -> Result<(), ClusterError> {
        self.fail_fast()?;
        let msg = Msg::Publish {
            origin: self.tag,
            exclude,
            payload: payload.to_vec(),
        };
        self.publish(&channel_key(channel), &msg).await.map(|_| ())
    }

    /// Sends a broadcast to every other node.
    pub(crate) async fn broadcast(
        &self,
        exclude: Option<ConnectionId>,
        payload: &[u8],
    ) -> Result<(), ClusterError> {
        self.fail_fast()?;
        let msg = Msg::Broadcast {
            origin: self.tag,
            exclude,
            payload: payload.to_vec(),
        };
        self.publish(ALL, &msg).await.map(|_| ())
    }

    /// Subscribers of `channel` on the other nodes (every live node answers).
    pub(crate) async fn remote_subscribers(&self, channel: &str) -> Result<u64, ClusterError> {
        self.fail_fast()?;
        let req_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(256);
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req_id, tx);
        let msg = Msg::CountQuery {
            req_id,
            reply_to: self.tag,
            channel: channel.to_string(),
        };
        let result = async {
            // Every node listens on `gangway:all`, this one included.
            let others = (self.publish(ALL, &msg).await? - 1).max(0) as usize;
            let mut total = 0u64;
            let deadline = tokio::time::Instant::now() + self.settings.rpc_timeout;
            for _ in 0..others {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(n)) => total += n,
                    _ => {
                        return Err(ClusterError::Unavailable(
                            "not every node answered the count".into(),
                        ))
                    }
                }
            }
            Ok(total)
        }
        .await;
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req_id);
        result
    }

    /// Makes the node's Redis subscription to `channel` match whether it has local subscribers.
    /// Returns once the subscription is live (or known to be impossible right now).
    pub(crate) async fn reconcile(&self, shared: &Shared, channel: &str) {
        let mut interest = self.interest.lock().await;
        let want = shared.channels.subscriber_count(channel) > 0;
        let have = interest.contains(channel);
        if want && !have {
            interest.insert(channel.to_string());
            if let Err(e) = self.redis.subscribe(channel_key(channel)).await {
                // Kept in `interest`: restored when Redis answers again.
                tracing::warn!(channel, error = %e, "cannot subscribe in Redis yet");
            }
        } else if !want && have {
            interest.remove(channel);
            if let Err(e) = self.redis.unsubscribe(channel_key(channel)).await {
                tracing::debug!(channel, error = %e, "cannot unsubscribe in Redis");
            }
        }
    }

    /// Re-issues every subscription this node needs (after Redis came back).
    async fn resubscribe_all(&self) -> redis::RedisResult<()> {
        let interest = self.interest.lock().await;
        self.redis.subscribe(inbox(self.tag)).await?;
        self.redis.subscribe(ALL.to_string()).await?;
        for channel in interest.iter() {
            self.redis.subscribe(channel_key(channel)).await?;
        }
        Ok(())
    }

    /// Records an open connection so a survivor can send its `$disconnect` if this node dies.
    /// Skipped while Redis is down (so handshakes never wait on it); the heartbeat records every
    /// open connection again when Redis answers.
    pub(crate) async fn register_connection(&self, conn: &Connection) {
        if !self.is_up() {
            return;
        }
        let record = ConnRecord {
            c: conn.connected_at_ms,
            ip: conn.source_ip.to_string(),
            ua: conn.user_agent.as_deref().map(str::to_string),
            d: conn.domain_name.to_string(),
            a: conn.authorizer.as_deref().cloned(),
        };
        let Ok(json) = serde_json::to_string(&record) else {
            return;
        };
        let r = self
            .redis
            .query::<()>(
                redis::cmd("HSET")
                    .arg(conns_key(self.tag))
                    .arg(&*conn.id_text)
                    .arg(json),
            )
            .await;
        if let Err(e) = r {
            tracing::debug!(connection_id = %conn.id_text, error = %e, "cannot record connection in Redis");
        }
    }

    /// Forgets a connection that ended here (its `$disconnect` is this node's to send).
    pub(crate) async fn unregister_connection(&self, conn: &Connection) {
        let r = self
            .redis
            .query::<()>(
                redis::cmd("HDEL")
                    .arg(conns_key(self.tag))
                    .arg(&*conn.id_text),
            )
            .await;
        if let Err(e) = r {
            tracing::debug!(connection_id = %conn.id_text, error = %e, "cannot forget connection in Redis");
        }
    }

    /// Leaves the cluster (graceful shutdown): the node's keys are removed.
    pub(crate) async fn deregister(&self) {
        self.leaving.store(true, Ordering::Relaxed);
        // Leave the node list first: a reaper must never see this node listed but silent.
        let r = async {
            self.redis
                .query::<()>(redis::cmd("HDEL").arg(NODES).arg(self.tag.to_string()))
                .await?;
            self.redis
                .query::<()>(redis::cmd("DEL").arg(conns_key(self.tag)))
                .await?;
            self.redis
                .query::<()>(redis::cmd("DEL").arg(node_key(self.tag)))
                .await
        }
        .await;
        match r {
            Ok(()) => tracing::info!(node_id = %self.node_id, "left the cluster"),
            Err(e) => tracing::warn!(error = %e, "could not deregister from Redis"),
        }
    }
}

fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

async fn read_inbox(shared: Arc<Shared>, cluster: Arc<Cluster>, mut rx: mpsc::Receiver<PushInfo>) {
    while let Some(info) = rx.recv().await {
        match info.kind {
            PushKind::Message | PushKind::SMessage => {}
            PushKind::Disconnection => {
                cluster.up.store(false, Ordering::Relaxed);
                shared.metrics.cluster_redis_up.set(0);
                continue;
            }
            _ => continue,
        }
        let (Some(channel), Some(payload)) = (
            info.data.first().and_then(bulk),
            info.data.get(1).and_then(bulk),
        ) else {
            continue;
        };
        let msg = match Msg::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                shared
                    .metrics
                    .cluster_dropped_total
                    .with_label_values(&["malformed"])
                    .inc();
                tracing::warn!(error = %e, "undecodable cluster message");
                continue;
            }
        };
        let channel = String::from_utf8_lossy(channel);
        handle(&shared, &cluster, &channel, msg).await;
    }
}

async fn handle(shared: &Arc<Shared>, cluster: &Arc<Cluster>, channel: &str, msg: Msg) {
    let m = &shared.metrics;
    match msg {
        Msg::Request {
            req_id,
            reply_to,
            conn,
            op,
        } => {
            m.cluster_messages_total
                .with_label_values(&["in", "request"])
                .inc();
            // Answered on its own task: a subscribe waits for Redis.
            let (shared, cluster) = (Arc::clone(shared), Arc::clone(cluster));
            tokio::spawn(async move {
                let (status, body) = crate::broker::execute_local(&shared, conn, op).await;
                let reply = Msg::Reply {
                    req_id,
                    status,
                    body,
                };
                if let Err(e) = cluster.publish(&inbox(reply_to), &reply).await {
                    tracing::warn!(error = %e, "cannot answer a cross-node call");
                }
            });
        }
        Msg::Reply {
            req_id,
            status,
            body,
        } => {
            m.cluster_messages_total
                .with_label_values(&["in", "reply"])
                .inc();
            let waiter = cluster
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&req_id);
            if let Some(tx) = waiter {
                let _ = tx.send((status, body));
                return;
            }
            let counter = cluster
                .counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&req_id)
                .cloned();
            if let (Some(tx), Ok(b)) = (counter, <[u8; 8]>::try_from(body.as_slice())) {
                let _ = tx.try_send(u64::from_be_bytes(b));
            }
        }
        Msg::Publish {
            origin,
            exclude,
            payload,
        } => {
            // The channel is the Redis channel the message travelled on.
            if let Some(name) = channel.strip_prefix("gangway:c:") {
                fan_in(shared, cluster, origin, Some(name), &payload, exclude);
            }
        }
        Msg::Broadcast {
            origin,
            exclude,
            payload,
        } => fan_in(shared, cluster, origin, None, &payload, exclude),
        Msg::CountQuery {
            req_id,
            reply_to,
            channel,
        } => {
            if reply_to == cluster.tag {
                return;
            }
            let n = shared.channels.subscriber_count(&channel) as u64;
            let reply = Msg::Reply {
                req_id,
                status: 200,
                body: n.to_be_bytes().to_vec(),
            };
            let cluster = Arc::clone(cluster);
            tokio::spawn(async move {
                let _ = cluster.publish(&inbox(reply_to), &reply).await;
            });
        }
    }
}

/// Delivers another node's publish (`Some(channel)`) or broadcast (`None`) to this node's
/// connections; a node's own messages come back from Redis and are skipped.
fn fan_in(
    shared: &Shared,
    cluster: &Cluster,
    origin: NodeTag,
    channel: Option<&str>,
    payload: &[u8],
    exclude: Option<ConnectionId>,
) {
    if origin == cluster.tag {
        return;
    }
    // Another node checked the size, but what arrives from Redis is checked again: a message
    // over this node's limit is never sent to its clients.
    if payload.len() > shared.config.limits.max_message_bytes {
        shared
            .metrics
            .cluster_dropped_total
            .with_label_values(&["too_large"])
            .inc();
        return;
    }
    let (kind, source) = match channel {
        Some(_) => ("publish", "cluster_publish"),
        None => ("broadcast", "cluster_broadcast"),
    };
    shared
        .metrics
        .cluster_messages_total
        .with_label_values(&["in", kind])
        .inc();
    // Never write-through here: this runs on a runtime worker, which must not spend a long
    // fan-out in system calls while other connections wait for it.
    crate::broker::fan_out_local(shared, channel, payload, exclude, source, false);
}

async fn heartbeat(shared: Arc<Shared>, cluster: Arc<Cluster>) {
    let ttl_ms = cluster.settings.node_ttl.as_millis().max(1000) as u64;
    let mut tick = tokio::time::interval(cluster.settings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Beats go on while the node drains (its $disconnect events are its own to send), and
        // stop when it leaves.
        if cluster.leaving.load(Ordering::Relaxed) {
            break;
        }
        let beat = async {
            cluster
                .beat
                .query::<()>(
                    redis::cmd("SET")
                        .arg(node_key(cluster.tag))
                        .arg(&cluster.node_id)
                        .arg("PX")
                        .arg(ttl_ms),
                )
                .await?;
            cluster
                .beat
                .query::<()>(
                    redis::cmd("HSET")
                        .arg(NODES)
                        .arg(cluster.tag.to_string())
                        .arg(&cluster.node_id),
                )
                .await
        }
        .await;
        let was_up = cluster.is_up();
        match beat {
            Ok(()) if !was_up => match cluster.resubscribe_all().await {
                Ok(()) => {
                    cluster.up.store(true, Ordering::Relaxed);
                    shared.metrics.cluster_redis_up.set(1);
                    // Redis may have restarted empty: record every open connection again.
                    let mut open = Vec::new();
                    shared.registry.for_each(|c| open.push(Arc::clone(c)));
                    for conn in &open {
                        cluster.register_connection(conn).await;
                    }
                    tracing::info!(node_id = %cluster.node_id, connections = open.len(), "connected to Redis; subscriptions and connection records restored");
                }
                Err(e) => tracing::warn!(error = %e, "Redis answers, but subscribing failed"),
            },
            Ok(()) => {}
            Err(e) => {
                if was_up {
                    tracing::warn!(error = %e, "Redis unreachable: cross-node calls answer 503 until it is back");
                }
                cluster.up.store(false, Ordering::Relaxed);
                shared.metrics.cluster_redis_up.set(0);
            }
        }
    }
}

/// Looks for dead nodes and sends the `$disconnect` events their connections are owed.
async fn reaper(shared: Arc<Shared>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(cluster.settings.heartbeat * 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.shutdown.is_cancelled() {
            break;
        }
        if !cluster.is_up() {
            continue;
        }
        if let Err(e) = reap_once(&shared, &cluster).await {
            tracing::debug!(error = %e, "reaper pass failed");
        }
    }
}

async fn reap_once(shared: &Arc<Shared>, cluster: &Arc<Cluster>) -> redis::RedisResult<()> {
    let redis = &cluster.redis;
    let nodes: HashMap<String, String> = redis.query(redis::cmd("HGETALL").arg(NODES)).await?;
    for (tag_hex, node_id) in nodes {
        if tag_hex == cluster.tag.to_string() {
            continue;
        }
        let alive: i64 = redis
            .query(redis::cmd("EXISTS").arg(format!("gangway:node:{tag_hex}")))
            .await?;
        if alive > 0 {
            continue;
        }
        let lock: Option<String> = redis
            .query(
                redis::cmd("SET")
                    .arg(format!("gangway:reap:{tag_hex}"))
                    .arg(&cluster.node_id)
                    .arg("NX")
                    .arg("EX")
                    .arg(120),
            )
            .await?;
        if lock.is_none() {
            continue;
        }
        let key = format!("gangway:conns:{tag_hex}");
        let records: HashMap<String, String> = redis.query(redis::cmd("HGETALL").arg(&key)).await?;
        tracing::warn!(dead_node = ?node_id, connections = records.len(), "node lost: sending $disconnect for its connections");
        let reason = format!("Node lost: {node_id}");
        let mut deliveries = Vec::new();
        for (id_text, json) in records {
            let parsed = (
                ConnectionId::parse(&id_text),
                serde_json::from_str::<ConnRecord>(&json),
            );
            let (Ok(id), Ok(rec)) = parsed else {
                let _ = redis
                    .query::<()>(redis::cmd("HDEL").arg(&key).arg(&id_text))
                    .await;
                continue;
            };
            let Ok(ip) = rec.ip.parse() else { continue };
            let conn = Arc::new(Connection::new(id, rec.c, ip, rec.ua, rec.d, rec.a));
            shared.metrics.cluster_reaped_total.inc();
            let handle = crate::disconnect::schedule(
                shared,
                conn,
                crate::close::ABNORMAL,
                reason.clone(),
                None,
            );
            let (key, cluster) = (key.clone(), Arc::clone(cluster));
            deliveries.push(tokio::spawn(async move {
                if let Some(h) = handle {
                    let _ = h.await;
                }
                let _ = cluster
                    .redis
                    .query::<()>(redis::cmd("HDEL").arg(&key).arg(&id_text))
                    .await;
            }));
        }
        let cluster = Arc::clone(cluster);
        tokio::spawn(async move {
            for d in deliveries {
                let _ = d.await;
            }
            let _ = cluster
                .redis
                .query::<()>(redis::cmd("HDEL").arg(NODES).arg(&tag_hex))
                .await;
        });
    }
    Ok(())
}

impl From<ClusterError> for ConnectionError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Unavailable(m) => ConnectionError::Unavailable(m),
        }
    }
}
