//! Membership: the heartbeat that keeps this node listed and alive in Redis, the records of its
//! open connections (what a survivor needs to send their `$disconnect`), and leaving.
//!
//! Invariants:
//! - the node is listed in the member hash before its liveness key can expire, and leaves the
//!   list before its keys are deleted, so a reaper never sees it listed but silent while it
//!   serves;
//! - a connection is recorded before its client gets 101 and forgotten only after this node
//!   handled its `$disconnect`, so a node that dies in between leaves the record to a reaper;
//!   after Redis comes back every open connection is recorded again;
//! - a node that comes back after its lease may have lapsed checks for a reaper's tombstone
//!   before anything else and, if it finds one, closes every connection it has (the backend
//!   may have been told they are gone) before it records any again;
//! - a node starting with records left by a previous run under its id sends their
//!   `$disconnect` itself (the same `requestId` a reaper would use).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::{fence, keys, reaper, Cluster};
use crate::conn::connection::Connection;
use crate::state::NodeState;

/// A stored record of an open connection, enough to send its `$disconnect` from another node.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct ConnRecord {
    pub c: i64,
    pub ip: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ua: Option<String>,
    pub d: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub a: Option<serde_json::Value>,
}

impl ConnRecord {
    /// The record of `conn`.
    pub(super) fn of(conn: &Connection) -> Self {
        ConnRecord {
            c: conn.connected_at_ms,
            ip: conn.source_ip.to_string(),
            ua: conn.user_agent.as_deref().map(str::to_string),
            d: conn.domain_name.to_string(),
            a: conn.authorizer.as_deref().cloned(),
        }
    }
}

/// Records an open connection. Skipped while Redis is down (so handshakes never wait on it);
/// the heartbeat records every open connection again when Redis answers.
pub(super) async fn register(cluster: &Cluster, conn: &Connection) {
    if !cluster.up.load(Ordering::Relaxed) {
        return;
    }
    let Ok(json) = serde_json::to_string(&ConnRecord::of(conn)) else {
        return;
    };
    // Bounded like a heartbeat: a black-holed Redis must not hold the handshake.
    let r = tokio::time::timeout(
        cluster.settings.beat_timeout(),
        cluster.redis.query::<()>(
            redis::cmd("HSET")
                .arg(keys::conns(cluster.tag))
                .arg(&*conn.id_text)
                .arg(json),
        ),
    )
    .await
    .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "timed out"))));
    if let Err(e) = r {
        tracing::debug!(connection_id = %conn.id_text, error = %e, "cannot record connection in Redis");
    }
}

/// Forgets a connection whose `$disconnect` this node has handled. If Redis cannot be reached
/// the record stays: should this node die before leaving, a survivor sends a duplicate
/// `$disconnect` with the same `requestId` — a duplicate, never a loss.
pub(super) async fn unregister(cluster: &Cluster, conn: &Connection) {
    let r = tokio::time::timeout(
        cluster.settings.beat_timeout(),
        cluster.redis.query::<()>(
            redis::cmd("HDEL")
                .arg(keys::conns(cluster.tag))
                .arg(&*conn.id_text),
        ),
    )
    .await
    .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "timed out"))));
    if let Err(e) = r {
        tracing::debug!(connection_id = %conn.id_text, error = %e, "cannot forget connection in Redis");
    }
}

/// Leaves the cluster (graceful shutdown): the node's keys are removed.
pub(super) async fn leave(cluster: &Cluster) {
    cluster.leaving.store(true, Ordering::Relaxed);
    // Leave the node list first: a reaper must never see this node listed but silent.
    let redis = &cluster.redis;
    let r = async {
        redis
            .query::<()>(
                redis::cmd("HDEL")
                    .arg(keys::NODES)
                    .arg(cluster.tag.to_string()),
            )
            .await?;
        redis
            .query::<()>(
                redis::cmd("HDEL")
                    .arg(keys::CONTROL)
                    .arg(cluster.tag.to_string()),
            )
            .await?;
        redis
            .query::<()>(redis::cmd("DEL").arg(keys::conns(cluster.tag)))
            .await?;
        redis
            .query::<()>(redis::cmd("DEL").arg(keys::node(cluster.tag)))
            .await
    }
    .await;
    match r {
        Ok(()) => tracing::info!(node_id = %cluster.node_id, "left the cluster"),
        Err(e) => tracing::warn!(error = %e, "could not deregister from Redis"),
    }
}

/// Re-issues every subscription this node needs (after Redis came back).
async fn resubscribe_all(cluster: &Cluster) -> redis::RedisResult<()> {
    let interest = cluster.interest.lock().await;
    cluster.redis.subscribe(keys::inbox(cluster.tag)).await?;
    cluster.redis.subscribe(keys::ALL.to_string()).await?;
    for channel in interest.iter() {
        cluster.redis.subscribe(keys::channel(channel)).await?;
    }
    Ok(())
}

/// One heartbeat's commands on the heartbeat's own connection: renew the liveness key, stay
/// listed, publish where peers reach this node, and read where the live peers are.
async fn beat(cluster: &Cluster, ttl_ms: u64) -> redis::RedisResult<Vec<String>> {
    let redis = &cluster.beat;
    let own = cluster.tag.to_string();
    redis
        .query::<()>(
            redis::cmd("SET")
                .arg(keys::node(cluster.tag))
                .arg(&cluster.node_id)
                .arg("PX")
                .arg(ttl_ms),
        )
        .await?;
    redis
        .query::<()>(
            redis::cmd("HSET")
                .arg(keys::NODES)
                .arg(&own)
                .arg(&cluster.node_id),
        )
        .await?;
    if let Some((url, _)) = cluster.witness.get() {
        redis
            .query::<()>(redis::cmd("HSET").arg(keys::CONTROL).arg(&own).arg(url))
            .await?;
    }
    let listed: HashMap<String, String> = redis
        .query(redis::cmd("HGETALL").arg(keys::CONTROL))
        .await?;
    let mut peers = Vec::with_capacity(listed.len());
    for (tag, url) in listed {
        // Only live peers: a dead one cannot answer, and would make a whole outage look like
        // isolation.
        if tag != own
            && redis
                .query::<i64>(redis::cmd("EXISTS").arg(keys::node(&tag)))
                .await?
                > 0
        {
            peers.push(url);
        }
    }
    Ok(peers)
}

/// Refreshes the node's liveness every heartbeat; notices Redis going and coming back. Each
/// beat's commands are bounded by one interval, so a black-holed connection cannot hang it
/// past the fencing decision (see [`super::fence`]).
pub(super) async fn heartbeat(state: Arc<NodeState>, cluster: Arc<Cluster>) {
    let s = &cluster.settings;
    let ttl_ms = s.node_ttl.as_millis() as u64;
    let mut tick = tokio::time::interval(s.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Beats go on while the node drains (its $disconnect events are its own to send), and
        // stop when it leaves.
        if cluster.leaving.load(Ordering::Relaxed) {
            break;
        }
        let sent = Instant::now();
        let peers = match tokio::time::timeout(s.beat_timeout(), beat(&cluster, ttl_ms)).await {
            Ok(Ok(peers)) => peers,
            failed => {
                if cluster.up.load(Ordering::Relaxed) {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer within one heartbeat interval".to_string(),
                    };
                    tracing::warn!(%error, "Redis unreachable: cross-node calls fail until it is back");
                }
                cluster.lease().failed();
                cluster.set_up(false);
                continue;
            }
        };
        cluster.outage.store(false, Ordering::Relaxed);
        let lapsed = {
            let mut lease = cluster.lease();
            let lapsed = lease.lapsed(sent, s);
            if lapsed {
                // Frozen or cut off past the TTL: the evidence from before is stale.
                lease.failed();
            }
            lease.renewed(sent);
            lapsed
        };
        *cluster
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = peers;
        let joined = cluster.joined.load(Ordering::SeqCst);
        if !joined
            || !cluster.up.load(Ordering::Relaxed)
            || lapsed
            || cluster.fenced.load(Ordering::Relaxed)
        {
            start_rejoin(&state, &cluster);
        }
    }
}

/// Runs [`rejoin`] on its own task — never on the heartbeat's, which must keep renewing the
/// lease however long re-subscribing and re-recording take — once at a time; a request that
/// arrives meanwhile runs it again afterwards.
fn start_rejoin(state: &Arc<NodeState>, cluster: &Arc<Cluster>) {
    cluster.rejoin_again.store(true, Ordering::SeqCst);
    if cluster.rejoining.swap(true, Ordering::SeqCst) {
        return;
    }
    let (state, c) = (Arc::clone(state), Arc::clone(cluster));
    cluster.spawn(async move {
        loop {
            while c.rejoin_again.swap(false, Ordering::SeqCst) {
                let first = !c.joined.load(Ordering::SeqCst);
                match rejoin(&state, &c, first).await {
                    Ok(()) => c.joined.store(true, Ordering::SeqCst),
                    Err(e) => tracing::warn!(error = %e, "Redis answers, but rejoining failed"),
                }
            }
            c.rejoining.store(false, Ordering::SeqCst);
            // A request that slipped in after the last round, before the flag came down.
            if !c.rejoin_again.load(Ordering::SeqCst) || c.rejoining.swap(true, Ordering::SeqCst) {
                break;
            }
        }
    });
}

/// After the first successful heartbeat, or the first after Redis was lost (or the node was
/// frozen, or fenced): finds out whether a survivor reaped this node meanwhile — then closes
/// every connection it has (their `$disconnect` carries the same fixed `requestId` as the
/// reaper's) — restores subscriptions and connection records, and lifts the fence.
async fn rejoin(
    state: &Arc<NodeState>,
    cluster: &Arc<Cluster>,
    first: bool,
) -> redis::RedisResult<()> {
    let redis = &cluster.redis;
    let tombstone = keys::reaped(cluster.tag);
    let reaped = if first {
        // A tombstone from a previous run with this node id: that run's records are handled
        // below, nothing open here was reported.
        false
    } else {
        redis
            .query::<i64>(redis::cmd("EXISTS").arg(&tombstone))
            .await?
            > 0
    };
    if reaped {
        let closed = fence::close_all(state);
        cluster
            .metrics
            .cluster_fenced_connections_total
            .inc_by(closed);
        tracing::error!(node_id = %cluster.node_id, closed, "this node was reaped while cut off from Redis: its connections are closed (1012)");
    }
    redis.query::<()>(redis::cmd("DEL").arg(&tombstone)).await?;
    resubscribe_all(cluster).await?;
    cluster.set_up(true);
    let mut open = Vec::new();
    state.registry.for_each(|c| open.push(Arc::clone(c)));
    if first {
        // A previous run with this node id died with these open: their $disconnect is owed.
        let open_ids: HashSet<String> = open.iter().map(|c| c.id_text.to_string()).collect();
        let recorded: HashMap<String, String> = redis
            .query(redis::cmd("HGETALL").arg(keys::conns(cluster.tag)))
            .await?;
        let owed: Vec<(String, String)> = recorded
            .into_iter()
            .filter(|(id, _)| !open_ids.contains(id))
            .collect();
        let reason = format!("Node restarted: {}", cluster.node_id);
        reaper::deliver(state, cluster, None, owed, reason);
    }
    if !reaped {
        // Redis may have restarted empty: record every open connection again.
        for conn in &open {
            register(cluster, conn).await;
        }
    }
    fence::lift(cluster);
    tracing::info!(node_id = %cluster.node_id, connections = open.len(), reaped, "connected to Redis; subscriptions and connection records restored");
    Ok(())
}
