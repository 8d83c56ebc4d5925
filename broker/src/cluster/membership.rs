//! Membership: the heartbeat that keeps this node listed and alive in Redis, the records of its
//! open connections (what a survivor needs to send their `$disconnect`), and leaving.
//!
//! Invariants:
//! - the node is listed in the member hash before its liveness key can expire, and leaves the
//!   list before its keys are deleted, so a reaper never sees it listed but silent while it
//!   serves;
//! - a connection is recorded while open and forgotten when its `$disconnect` is this node's
//!   to send; after Redis comes back every open connection is recorded again.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{keys, Cluster};
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
    let r = cluster
        .redis
        .query::<()>(
            redis::cmd("HSET")
                .arg(keys::conns(cluster.tag))
                .arg(&*conn.id_text)
                .arg(json),
        )
        .await;
    if let Err(e) = r {
        tracing::debug!(connection_id = %conn.id_text, error = %e, "cannot record connection in Redis");
    }
}

/// Forgets a connection that ended here.
pub(super) async fn unregister(cluster: &Cluster, conn: &Connection) {
    let r = cluster
        .redis
        .query::<()>(
            redis::cmd("HDEL")
                .arg(keys::conns(cluster.tag))
                .arg(&*conn.id_text),
        )
        .await;
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

/// Refreshes the node's liveness every heartbeat; notices Redis going and coming back.
pub(super) async fn heartbeat(state: Arc<NodeState>, cluster: Arc<Cluster>) {
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
                        .arg(keys::node(cluster.tag))
                        .arg(&cluster.node_id)
                        .arg("PX")
                        .arg(ttl_ms),
                )
                .await?;
            cluster
                .beat
                .query::<()>(
                    redis::cmd("HSET")
                        .arg(keys::NODES)
                        .arg(cluster.tag.to_string())
                        .arg(&cluster.node_id),
                )
                .await
        }
        .await;
        let was_up = cluster.up.load(Ordering::Relaxed);
        match beat {
            Ok(()) if !was_up => match resubscribe_all(&cluster).await {
                Ok(()) => {
                    cluster.set_up(true);
                    // Redis may have restarted empty: record every open connection again.
                    let mut open = Vec::new();
                    state.registry.for_each(|c| open.push(Arc::clone(c)));
                    for conn in &open {
                        register(&cluster, conn).await;
                    }
                    tracing::info!(node_id = %cluster.node_id, connections = open.len(), "connected to Redis; subscriptions and connection records restored");
                }
                Err(e) => tracing::warn!(error = %e, "Redis answers, but subscribing failed"),
            },
            Ok(()) => {}
            Err(e) => {
                if was_up {
                    tracing::warn!(error = %e, "Redis unreachable: cross-node calls fail until it is back");
                }
                cluster.set_up(false);
            }
        }
    }
}
