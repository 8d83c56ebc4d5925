//! The reaper: finds dead nodes and sends the `$disconnect` events their connections are owed.
//!
//! Invariants:
//! - only a node whose liveness key has expired is reaped, never this node;
//! - one survivor reaps a dead node (the reaping lock, SET NX with a TTL);
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

/// Runs a reaping pass every two heartbeats until the node drains.
pub(super) async fn run(state: Arc<NodeState>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(cluster.settings.heartbeat * 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.shutdown.is_cancelled() {
            break;
        }
        if !cluster.up.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        if let Err(e) = reap_once(&state, &cluster).await {
            tracing::debug!(error = %e, "reaper pass failed");
        }
    }
}

async fn reap_once(state: &Arc<NodeState>, cluster: &Arc<Cluster>) -> redis::RedisResult<()> {
    let redis = &cluster.redis;
    let own = cluster.tag.to_string();
    let nodes: HashMap<String, String> =
        redis.query(redis::cmd("HGETALL").arg(keys::NODES)).await?;
    for (tag_hex, node_id) in nodes {
        if tag_hex == own {
            continue;
        }
        let alive: i64 = redis
            .query(redis::cmd("EXISTS").arg(keys::node(&tag_hex)))
            .await?;
        if verdict(&own, &tag_hex, alive > 0) != Verdict::Dead {
            continue;
        }
        let lock: Option<String> = redis
            .query(
                redis::cmd("SET")
                    .arg(keys::reap(&tag_hex))
                    .arg(&cluster.node_id)
                    .arg("NX")
                    .arg("EX")
                    .arg(120),
            )
            .await?;
        if lock.is_none() {
            continue;
        }
        reap_node(state, cluster, tag_hex, node_id).await?;
    }
    Ok(())
}

async fn reap_node(
    state: &Arc<NodeState>,
    cluster: &Arc<Cluster>,
    tag_hex: String,
    node_id: String,
) -> redis::RedisResult<()> {
    let key = keys::conns(&tag_hex);
    let records: HashMap<String, String> =
        cluster.redis.query(redis::cmd("HGETALL").arg(&key)).await?;
    tracing::warn!(dead_node = ?node_id, connections = records.len(), "node lost: sending $disconnect for its connections");
    let reason = format!("Node lost: {node_id}");
    let mut deliveries = Vec::new();
    for (id_text, json) in records {
        let conn = match connection_of(&id_text, &json) {
            Ok(c) => Arc::new(c),
            Err(why) => {
                tracing::warn!(connection_id = ?id_text, ?why, "unusable connection record removed");
                let _ = cluster
                    .redis
                    .query::<()>(redis::cmd("HDEL").arg(&key).arg(&id_text))
                    .await;
                continue;
            }
        };
        state.metrics.cluster_reaped_total.inc();
        deliveries.push((
            id_text,
            disconnect::schedule(state, conn, close::ABNORMAL, reason.clone(), None),
        ));
    }
    let (c, key) = (Arc::clone(cluster), key);
    cluster.spawn(async move {
        for (id_text, delivery) in deliveries {
            if let Some(d) = delivery {
                let _ = d.await;
            }
            let _ = c
                .redis
                .query::<()>(redis::cmd("HDEL").arg(&key).arg(&id_text))
                .await;
        }
        let _ = c
            .redis
            .query::<()>(redis::cmd("HDEL").arg(keys::NODES).arg(&tag_hex))
            .await;
    });
    Ok(())
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
