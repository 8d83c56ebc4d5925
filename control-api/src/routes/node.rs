//! `GET /@node`: this node's id and cluster membership. A node that loses Redis asks its peers
//! this (see [`crate::peer`]): `"redis": "up"` from any of them means it is cut off alone and
//! must fence itself.
//!
//! Answer: `{"nodeId", "cluster": bool, "redis": "up" | "down" | "none", "fenced": bool,
//! "healthyMs"}`; `"none"` on a single node; `healthyMs`: for how long every heartbeat has
//! succeeded (a peer reaps only after a full `node_ttl` of them).

use actix_web::HttpResponse;
use gangway_broker::Broker;

use super::json_response;

/// The answer's `redis` values.
pub mod redis {
    /// The node's last heartbeat reached Redis recently and it is not fenced.
    pub const UP: &str = "up";
    /// It does not reach Redis now (or is fenced).
    pub const DOWN: &str = "down";
    /// A single node: no Redis.
    pub const NONE: &str = "none";
}

/// `GET /@node`.
pub fn describe(broker: &Broker) -> HttpResponse {
    let health = broker.cluster_health();
    let redis = match health {
        Some(h) if h.reaches_redis => redis::UP,
        Some(_) => redis::DOWN,
        None => redis::NONE,
    };
    json_response(
        200,
        serde_json::json!({
            "nodeId": broker.node_id(),
            "cluster": health.is_some(),
            "redis": redis,
            "fenced": health.is_some_and(|h| h.fenced),
            "healthyMs": health.map_or(0, |h| h.healthy_for.as_millis() as u64),
        })
        .to_string(),
    )
}
