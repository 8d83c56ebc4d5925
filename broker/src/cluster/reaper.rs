//! The reaper: finds dead nodes and sends the `$disconnect` events their connections are owed.
//!
//! Invariants:
//! - only a node whose liveness key has expired is reaped, never this node, and only on fresh
//!   evidence: this node's own heartbeats have succeeded for a full `node_ttl` (after Redis
//!   comes back the others need that long to renew) and it is not fenced;
//! - one survivor reaps a dead node (the reaping lock, SET NX with a TTL), re-checks its
//!   liveness under the lock before every batch of events, and leaves a tombstone before the
//!   first, so a node that was only frozen finds out it was reaped;
//! - a connection's record is removed only after its `$disconnect` was handed to the delivery
//!   task and that task ended, and the dead node leaves the member list only after every record
//!   was handled — a reaper that dies midway leaves the rest for the next one;
//! - records that do not parse are removed (nobody could ever deliver for them).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::membership::ConnRecord;
use super::{keys, Cluster};
use crate::conn::close;
use crate::conn::connection::Connection;
use crate::conn::id::ConnectionId;
use crate::integration::disconnect;
use crate::state::NodeState;

/// What the reaper does about one listed member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// This node: never reaped by itself.
    Itself,
    /// Its liveness key exists.
    Alive,
    /// Its key expired: its connections are owed their `$disconnect`.
    Dead,
}

/// Decides about the member with tag `listed` (hex), seen `alive` or not, from node `own`.
pub(super) fn verdict(own: &str, listed: &str, alive: bool) -> Verdict {
    if listed == own {
        Verdict::Itself
    } else if alive {
        Verdict::Alive
    } else {
        Verdict::Dead
    }
}

/// Why a stored record cannot be reaped.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BadRecord {
    /// The field is not a connection id.
    Id,
    /// The value is not a record.
    Record,
    /// The record's address does not parse.
    Address,
}

/// Rebuilds the connection a record describes (enough for its `$disconnect` event).
pub(super) fn connection_of(id_text: &str, json: &str) -> Result<Connection, BadRecord> {
    let id = ConnectionId::parse(id_text).map_err(|_| BadRecord::Id)?;
    let rec: ConnRecord = serde_json::from_str(json).map_err(|_| BadRecord::Record)?;
    let ip: IpAddr = rec.ip.parse().map_err(|_| BadRecord::Address)?;
    Ok(Connection::new(id, rec.c, ip, rec.ua, rec.d, rec.a))
}

/// Runs a reaping pass every two heartbeats until the node drains. A pass runs only on fresh
/// evidence: this node's own heartbeat succeeded within the last 1.5 intervals, every one of
/// them for a full `node_ttl` (after Redis comes back, the others need that long to renew),
/// and it is not fenced.
pub(super) async fn run(state: Arc<NodeState>, cluster: Arc<Cluster>) {
    let s = &cluster.settings;
    let mut tick = tokio::time::interval(s.heartbeat * 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.shutdown.is_cancelled() {
            break;
        }
        if !cluster.may_judge_dead() {
            continue;
        }
        if let Err(e) = reap_once(&state, &cluster).await {
            tracing::debug!(error = %e, "reaper pass failed");
        }
    }
}

async fn node_alive(cluster: &Cluster, tag_hex: &str) -> redis::RedisResult<bool> {
    let n: i64 = cluster
        .redis
        .query(redis::cmd("EXISTS").arg(keys::node(tag_hex)))
        .await?;
    Ok(n > 0)
}

async fn reap_once(state: &Arc<NodeState>, cluster: &Arc<Cluster>) -> redis::RedisResult<()> {
    let redis = &cluster.redis;
    let own = cluster.tag.to_string();
    let nodes: HashMap<String, String> =
        redis.query(redis::cmd("HGETALL").arg(keys::NODES)).await?;
    for (tag_hex, node_id) in nodes {
        let alive = tag_hex == own || node_alive(cluster, &tag_hex).await?;
        if verdict(&own, &tag_hex, alive) != Verdict::Dead {
            continue;
        }
        let lock: Option<String> = redis
            .query(
                redis::cmd("SET")
                    .arg(keys::reap(&tag_hex))
                    .arg(&cluster.node_id)
                    .arg("NX")
                    .arg("EX")
                    .arg(REAP_LOCK_SECS),
            )
            .await?;
        if lock.is_none() {
            continue;
        }
        // Under the lock, look again: the node may have renewed since.
        if node_alive(cluster, &tag_hex).await? {
            redis
                .query::<()>(redis::cmd("DEL").arg(keys::reap(&tag_hex)))
                .await?;
            continue;
        }
        // The tombstone goes down before any event goes out: a node that comes back and finds
        // it closes whatever it still holds.
        redis
            .query::<()>(
                redis::cmd("SET")
                    .arg(keys::reaped(&tag_hex))
                    .arg(&cluster.node_id)
                    .arg("EX")
                    .arg(TOMBSTONE_SECS),
            )
            .await?;
        let records: HashMap<String, String> = redis
            .query(redis::cmd("HGETALL").arg(keys::conns(&tag_hex)))
            .await?;
        tracing::warn!(dead_node = ?node_id, connections = records.len(), "node lost: sending $disconnect for its connections");
        let reason = format!("Node lost: {node_id}");
        deliver(
            state,
            cluster,
            Some(tag_hex),
            records.into_iter().collect(),
            reason,
        );
    }
    Ok(())
}

/// How long a reaper holds a dead node (another takes over after it, if this one died).
const REAP_LOCK_SECS: u64 = 120;
/// How long the tombstone of a reaped node lasts.
const TOMBSTONE_SECS: u64 = 3_600;
/// `$disconnect` events sent between two liveness checks of the node being reaped.
const BATCH: usize = 256;

/// Sends the `$disconnect` of every record (connection id, record) of `victim`'s (`None`: this
/// node's previous run), in batches; removes each record once its event was handled. Before
/// each batch it checks, under the reap lock, that the victim is still dead, and stops if not
/// (the victim closes what it holds when it finds the tombstone). When every record is handled
/// the victim leaves the member list.
pub(super) fn deliver(
    state: &Arc<NodeState>,
    cluster: &Arc<Cluster>,
    victim: Option<String>,
    records: Vec<(String, String)>,
    reason: String,
) {
    let owner = victim.clone().unwrap_or_else(|| cluster.tag.to_string());
    let key = keys::conns(&owner);
    let (state, cluster) = (Arc::clone(state), Arc::clone(cluster));
    let c = Arc::clone(&cluster);
    c.spawn(async move {
        for batch in records.chunks(BATCH) {
            if let Some(tag) = &victim {
                match node_alive(&cluster, tag).await {
                    Ok(false) => {}
                    Ok(true) => {
                        tracing::warn!(node = %tag, "a node being reaped renewed its liveness: reaping stopped");
                        let _ = cluster
                            .redis
                            .query::<()>(redis::cmd("DEL").arg(keys::reap(tag)))
                            .await;
                        return;
                    }
                    Err(e) => {
                        // Left for the next reaper, once the lock expires.
                        tracing::warn!(error = %e, "reaping paused: Redis unreachable");
                        return;
                    }
                }
            }
            let mut deliveries = Vec::with_capacity(batch.len());
            for (id_text, json) in batch {
                match connection_of(id_text, json) {
                    Ok(conn) => {
                        if victim.is_some() {
                            state.metrics.cluster_reaped_total.inc();
                        }
                        deliveries.push((
                            id_text,
                            disconnect::schedule(&state, Arc::new(conn), close::ABNORMAL, reason.clone(), None),
                        ));
                    }
                    Err(why) => {
                        tracing::warn!(connection_id = ?id_text, ?why, "unusable connection record removed");
                        deliveries.push((id_text, None));
                    }
                }
            }
            for (id_text, delivery) in deliveries {
                if let Some(d) = delivery {
                    let _ = d.await;
                }
                let _ = cluster
                    .redis
                    .query::<()>(redis::cmd("HDEL").arg(&key).arg(id_text))
                    .await;
            }
        }
        if victim.is_some() {
            for hash in [keys::NODES, keys::CONTROL] {
                let _ = cluster
                    .redis
                    .query::<()>(redis::cmd("HDEL").arg(hash).arg(&owner))
                    .await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::id::NodeTag;

    #[test]
    fn only_other_expired_nodes_are_reaped() {
        assert_eq!(verdict("aa", "aa", false), Verdict::Itself);
        assert_eq!(verdict("aa", "aa", true), Verdict::Itself);
        assert_eq!(verdict("aa", "bb", true), Verdict::Alive);
        assert_eq!(verdict("aa", "bb", false), Verdict::Dead);
    }

    #[test]
    fn a_record_rebuilds_its_connection() {
        let id = ConnectionId::generate(NodeTag::of("b")).expect("rng");
        let json = r#"{"c":5,"ip":"10.0.0.1","ua":"ua","d":"example.com","a":{"k":1}}"#;
        let conn = connection_of(&id.to_string(), json).expect("record");
        assert_eq!(conn.id, id);
        assert_eq!(conn.connected_at_ms, 5);
        assert_eq!(conn.source_ip.to_string(), "10.0.0.1");
        assert_eq!(conn.user_agent.as_deref(), Some("ua"));
        assert_eq!(&*conn.domain_name, "example.com");
        assert!(conn.authorizer.is_some());
    }

    #[test]
    fn bad_records_are_refused() {
        let id = ConnectionId::generate(NodeTag::of("b"))
            .expect("rng")
            .to_string();
        assert_eq!(connection_of("nope", "{}").err(), Some(BadRecord::Id));
        assert_eq!(
            connection_of(&id, "not json").err(),
            Some(BadRecord::Record)
        );
        assert_eq!(
            connection_of(&id, r#"{"c":1,"ip":"x","d":"d"}"#).err(),
            Some(BadRecord::Address)
        );
    }
}
