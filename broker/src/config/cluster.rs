//! `[cluster]`: Redis, the node's id and the cluster's timings.

use super::reader::Section;
use super::ConfigProblem;

/// `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Redis URL; absent means a single node.
    pub redis_url: Option<String>,
    /// This node's id; generated when absent.
    pub node_id: Option<String>,
    /// `mode = "standalone" | "redis-cluster"`.
    pub mode: RedisMode,
    /// Further seed nodes of a Redis Cluster (`redis_url` is the first).
    pub seed_urls: Vec<String>,
    /// How often the node refreshes its liveness key in Redis, ms.
    pub heartbeat_interval_ms: u64,
    /// A node whose liveness key is this old is dead and reaped, ms.
    pub node_ttl_ms: u64,
    /// How long a cross-node call waits for the owner's answer, ms.
    pub rpc_timeout_ms: u64,
    /// Where the other nodes reach this node's control API (`http://host:port`), for the peer
    /// check a node makes when it loses Redis; absent: the control listener's address when it
    /// is a specific one (peer checks are off when it listens on 0.0.0.0 or ::).
    pub control_url: Option<String>,
    /// CA certificates (PEM) that `rediss://` servers are verified against; absent: the
    /// system's roots.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

/// Which kind of Redis the nodes share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// One Redis server: classic pub/sub.
    Standalone,
    /// A Redis Cluster: sharded pub/sub (Redis 7 or later).
    Cluster,
}

/// Heartbeats a liveness TTL must span.
///
/// A node decides whether to fence itself by `node_ttl − margin` after its last renewal
/// (margin: a tenth of the TTL, at least 50 ms, for Redis command latency, scheduling and clock
/// rates). Before that it asks its peers, each question bounded by half a heartbeat; a peer
/// vouches for Redis while its last heartbeat succeeded within
/// `node_ttl − 2·margin − 1.5·heartbeat`, which must be at least one heartbeat for a healthy peer
/// to vouch at all: with four heartbeats per TTL it is at least 1.7 heartbeats. A peer that
/// lost Redis together with the asking node is always past that window when asked, so a
/// whole-Redis outage is never mistaken for a partition. Each beat's Redis commands time out
/// after the same window, well before the decision.
pub const MIN_HEARTBEATS_PER_TTL: u64 = 4;

/// Whether `node_ttl_ms` leaves room for the fencing decision (see
/// [`MIN_HEARTBEATS_PER_TTL`]); the problem when it does not.
pub fn fencing_fits(heartbeat_interval_ms: u64, node_ttl_ms: u64) -> Result<(), String> {
    if node_ttl_ms < MIN_HEARTBEATS_PER_TTL * heartbeat_interval_ms {
        return Err(format!(
            "{node_ttl_ms} is less than {MIN_HEARTBEATS_PER_TTL} heartbeats \
             (cluster.heartbeat_interval_ms = {heartbeat_interval_ms}): a node cut off from Redis \
             could not decide to fence itself before the others reap it"
        ));
    }
    Ok(())
}

/// Reads `[cluster]`, recording every problem.
pub(super) fn read(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> ClusterConfig {
    let mut r = Section::new(table, "cluster", problems);
    let cluster = ClusterConfig {
        redis_url: r.string("redis_url"),
        node_id: r.string("node_id"),
        mode: match r.string("mode").as_deref() {
            None | Some("standalone") => RedisMode::Standalone,
            Some("redis-cluster") => RedisMode::Cluster,
            Some(other) => {
                r.problem(
                    "mode",
                    format!("must be \"standalone\" or \"redis-cluster\", not {other:?}"),
                );
                RedisMode::Standalone
            }
        },
        seed_urls: r.string_list("seed_urls"),
        heartbeat_interval_ms: r.uint("heartbeat_interval_ms", 1_000, 100, 60_000),
        node_ttl_ms: r.uint("node_ttl_ms", 5_000, 1_000, 600_000),
        rpc_timeout_ms: r.uint("rpc_timeout_ms", 2_000, 100, 60_000),
        tls_ca_file: r.string("tls_ca_file").map(std::path::PathBuf::from),
        control_url: r.string("control_url"),
    };
    r.finish();
    if let Some(path) = &cluster.tls_ca_file {
        match std::fs::read(path) {
            Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {}
            Ok(_) => problems.push(ConfigProblem {
                key: "cluster.tls_ca_file".into(),
                message: format!("{} holds no PEM certificate", path.display()),
            }),
            Err(e) => problems.push(ConfigProblem {
                key: "cluster.tls_ca_file".into(),
                message: format!("cannot read {}: {e}", path.display()),
            }),
        }
    }
    if let Err(message) = fencing_fits(cluster.heartbeat_interval_ms, cluster.node_ttl_ms) {
        problems.push(ConfigProblem {
            key: "cluster.node_ttl_ms".into(),
            message,
        });
    }
    if let Some(url) = &cluster.control_url {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if !rest.is_some_and(|r| !r.is_empty() && !r.contains(['/', '?', '#', ' ', '@'])) {
            problems.push(ConfigProblem {
                key: "cluster.control_url".into(),
                message: "must be http://host:port or https://host:port (no path, no credentials)"
                    .into(),
            });
        }
    }
    for (key, url) in cluster
        .redis_url
        .iter()
        .map(|u| ("cluster.redis_url".to_string(), u))
        .chain(
            cluster
                .seed_urls
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("cluster.seed_urls[{i}]"), u)),
        )
    {
        // Messages never repeat the URL: it may carry a password.
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            problems.push(ConfigProblem {
                key,
                message: "must start with redis:// or rediss://".into(),
            });
        } else if let Err(e) = redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
            problems.push(ConfigProblem {
                key,
                message: format!("not a usable Redis URL ({:?})", e.kind()),
            });
        } else if cluster.tls_ca_file.is_some() && !url.starts_with("rediss://") {
            problems.push(ConfigProblem {
                key,
                message: "cluster.tls_ca_file is set, so this URL must be rediss:// (TLS)".into(),
            });
        }
    }
    if cluster.redis_url.is_none()
        && (cluster.mode == RedisMode::Cluster || !cluster.seed_urls.is_empty())
    {
        problems.push(ConfigProblem {
            key: "cluster.redis_url".into(),
            message: "redis-cluster mode and seed_urls need redis_url".into(),
        });
    }
    if let Some(id) = &cluster.node_id {
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            problems.push(ConfigProblem {
                key: "cluster.node_id".into(),
                message: "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_' and '.'".into(),
            });
        }
    }
    cluster
}
