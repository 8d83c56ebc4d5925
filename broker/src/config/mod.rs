//! Gateway configuration: typed, defaulted, validated whole.
//!
//! A config is assembled as a TOML table in layers — the file, then `GANGWAY_…` environment
//! variables, then command-line flags — and only then turned into a typed [`Config`]. Every
//! problem found on the way is collected, so a user sees all of them at once, each with its key,
//! before any port is bound.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::selection::SelectionExpression;

/// The whole gateway configuration (the TOML keys of the public contract, plus defaults).
#[derive(Debug, Clone)]
pub struct Config {
    /// `[listen]`: where the public WebSocket and the control listeners bind.
    pub listen: ListenConfig,
    /// `[api]`: stage, route selection and webhook signing.
    pub api: ApiConfig,
    /// `[routes."<key>"]`: route key → integration.
    pub routes: BTreeMap<String, RouteConfig>,
    /// `[limits]`: sizes, timeouts and queue bounds.
    pub limits: LimitsConfig,
    /// `[control]`: credentials of the control API.
    pub control: ControlConfig,
    /// `[cluster]`: Redis URL and node id.
    pub cluster: ClusterConfig,
    /// `[log]`: log format and filter.
    pub log: LogConfig,
}

/// `[listen]` section.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Public WebSocket listener (`websocket`, default 127.0.0.1:8080).
    pub websocket: SocketAddr,
    /// Control API listener (`control`, default 127.0.0.1:9090).
    pub control: SocketAddr,
}

/// `[api]` section.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Stage name: appears in events and as the optional path prefix (default `prod`).
    pub stage: String,
    /// Parsed `route_selection_expression` (default `$request.body.action`).
    pub route_selection_expression: SelectionExpression,
    /// Secret for `X-Gangway-Signature`; required when a route calls a backend.
    pub webhook_secret: Option<String>,
    /// `apiId` reported in events (default `gangway`).
    pub api_id: String,
    /// `domainName` reported in events; `None` means "the WebSocket listener's address" (never
    /// the client's `Host` header, which a client controls).
    pub domain_name: Option<String>,
}

/// Which integration a route uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationKind {
    /// POST the AWS-shaped event to a backend URL.
    Http,
    /// Answer in-process: echo the message, or a fixed `response`.
    Mock,
}

/// One `[routes."<key>"]` table.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// `integration = "http" | "mock"`.
    pub integration: IntegrationKind,
    /// `url`: the backend endpoint (required for `http`).
    pub url: Option<String>,
    /// `two_way`: send the backend's 2xx body back to the client (default: false for http, true for mock).
    pub two_way: bool,
    /// `timeout_ms`: how long one backend call may take (default 29 000).
    pub timeout: Duration,
    /// `response`: fixed body of a `mock` route; absent means echo.
    pub response: Option<String>,
}

/// What happens when a slow client's outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Close the connection with code 1008 and reason "slow consumer" (the default).
    Disconnect,
    /// Drop the new message and keep the connection.
    Drop,
}

/// `[limits]` section. Names carry their units.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Largest inbound or pushed message, bytes (AWS: 131 072). Over it: close 1009 / HTTP 413.
    pub max_message_bytes: usize,
    /// Largest inbound frame, bytes (AWS: 32 768). Over it: close 1009.
    pub max_frame_bytes: usize,
    /// Most frames one inbound message may arrive in. Over it: close 1009.
    pub max_fragments_per_message: u32,
    /// Close a connection with no data frames in either direction for this long (AWS: 600 s).
    pub idle_timeout_secs: u64,
    /// Close any connection after this long (AWS: 7 200 s).
    pub max_connection_secs: u64,
    /// Bound of each connection's outbound queue, bytes.
    pub send_queue_max_bytes: usize,
    /// What to do when that queue is full.
    pub slow_consumer_policy: SlowConsumerPolicy,
    /// A write to a client that takes longer than this closes it as a slow consumer, seconds.
    pub write_timeout_secs: u64,
    /// Most connections this node holds, counting those still in `$connect`; further upgrades
    /// get 503.
    pub max_connections: usize,
    /// Most sockets that have not finished their upgrade (reading the request or waiting for
    /// `$connect`); further sockets get 503 and are closed at once.
    pub max_pending_handshakes: usize,
    /// Server ping period, seconds; a peer silent for two periods is closed. 0 turns pings off.
    pub ping_interval_secs: u64,
    /// How long a client may take to send its upgrade request, seconds.
    pub handshake_timeout_secs: u64,
    /// Node-wide cap on concurrent `$connect` and message backend calls.
    pub max_concurrent_integration_calls: usize,
    /// Node-wide cap on concurrent `$disconnect` deliveries (their own, so a failing
    /// `$disconnect` backend cannot hold the permits `$connect` and messages need).
    pub max_concurrent_disconnect_calls: usize,
    /// Most items in one `POST /@batch`.
    pub max_batch_items: usize,
    /// Largest `POST /@batch` body, bytes.
    pub max_batch_bytes: usize,
    /// Most channels one connection may be subscribed to.
    pub max_channels_per_connection: usize,
    /// Inbound messages a connection may have waiting for the backend before reads pause.
    pub inbound_queue_messages: usize,
    /// Per-connection inbound messages per second; 0 means no limit.
    pub inbound_messages_per_sec: u32,
    /// Reject binary frames with close 1003, as AWS does (default false: binary goes to `$default`).
    pub reject_binary_frames: bool,
    /// How many times a failed `$disconnect` delivery is tried in all.
    pub disconnect_max_attempts: u32,
    /// How long SIGTERM waits for connections to close and `$disconnect` events to land, seconds.
    pub shutdown_grace_secs: u64,
    /// Largest fan-out a quiet node writes straight to the sockets from the publishing thread
    /// (see `write_through`); 0 turns write-through off.
    pub write_through_max_recipients: usize,
}

/// `[[control.aws_credentials]]` entry: a SigV4 key pair.
#[derive(Debug, Clone)]
pub struct AwsCredential {
    /// `access_key_id`.
    pub access_key_id: String,
    /// `secret_access_key`.
    pub secret_access_key: String,
}

/// `[control]` section.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Accepted bearer tokens.
    pub tokens: Vec<String>,
    /// Accepted SigV4 key pairs.
    pub aws_credentials: Vec<AwsCredential>,
    /// How long a control request's body may take to arrive, seconds (then 408).
    pub body_timeout_secs: u64,
}

impl ControlConfig {
    /// True when the control API checks credentials at all.
    pub fn requires_auth(&self) -> bool {
        !self.tokens.is_empty() || !self.aws_credentials.is_empty()
    }
}

/// `[cluster]` section.
#[derive(Debug, Clone)]
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

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]` section.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `format = "text" | "json"`.
    pub format: LogFormat,
    /// `level`: a tracing filter such as `info` or `gangway_broker=debug`.
    pub level: String,
}

/// One problem in a configuration, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `limits.max_message_bytes`, or the environment variable's name.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid configuration:\n{}", self.problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The problems, in the order found.
    pub problems: Vec<ConfigProblem>,
}

/// Shortest accepted `[api] webhook_secret`.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 8;

/// Sections that `GANGWAY_<SECTION>_<KEY>` environment variables may set.
const ENV_SECTIONS: &[&str] = &["listen", "api", "limits", "control", "cluster", "log"];

/// A configuration being assembled from layers (file, environment, flags).
#[derive(Debug, Default)]
pub struct ConfigBuilder {
    table: toml::Table,
    problems: Vec<ConfigProblem>,
}

impl ConfigBuilder {
    /// Starts from an empty table: every key takes its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lays a TOML document over the table; `origin` names it in errors.
    pub fn file(mut self, origin: &str, text: &str) -> Self {
        match text.parse::<toml::Table>() {
            Ok(table) => merge(&mut self.table, table),
            Err(e) => self.problems.push(ConfigProblem {
                key: origin.to_string(),
                message: format!("not valid TOML: {}", e.to_string().trim()),
            }),
        }
        self
    }

    /// Lays `GANGWAY_<SECTION>_<KEY>` variables over the table. Values are TOML literals when
    /// they parse as one (`42`, `true`, `["a", "b"]`), strings otherwise. `GANGWAY_CONFIG` is
    /// skipped: it names the file.
    pub fn env<I: IntoIterator<Item = (String, String)>>(mut self, vars: I) -> Self {
        let mut vars: Vec<_> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("GANGWAY_") && k != "GANGWAY_CONFIG")
            .collect();
        vars.sort();
        for (name, value) in vars {
            let rest = name["GANGWAY_".len()..].to_ascii_lowercase();
            let Some((section, key)) = rest.split_once('_') else {
                self.problems.push(ConfigProblem {
                    key: name.clone(),
                    message: "not a GANGWAY_<SECTION>_<KEY> variable".into(),
                });
                continue;
            };
            if !ENV_SECTIONS.contains(&section) || key.is_empty() {
                self.problems.push(ConfigProblem {
                    key: name.clone(),
                    message: format!("unknown setting (sections: {})", ENV_SECTIONS.join(", ")),
                });
                continue;
            }
            self.set(section, key, literal(&value));
        }
        self
    }

    /// Sets one key, as a command-line flag does.
    pub fn set(&mut self, section: &str, key: &str, value: toml::Value) {
        let entry = self
            .table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        if let toml::Value::Table(t) = entry {
            t.insert(key.to_string(), value);
        }
    }

    /// Turns the layered table into a typed, validated [`Config`], or every problem found.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut problems = self.problems;
        let config = Config::from_table(&self.table, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// Parses an environment value as a TOML literal, falling back to a plain string.
fn literal(value: &str) -> toml::Value {
    match format!("v = {value}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(value.into())),
        Err(_) => toml::Value::String(value.to_string()),
    }
}

/// Deep-merges `over` into `base`: tables merge, everything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut problems = Vec::new();
        let config = Config::from_table(&toml::Table::new(), &mut problems);
        debug_assert!(problems.is_empty());
        config
    }
}

impl Config {
    /// The embedded default: one node whose `$default` route echoes.
    pub fn embedded_default() -> Self {
        let mut config = Config::default();
        config.routes.insert(
            "$default".into(),
            RouteConfig {
                integration: IntegrationKind::Mock,
                url: None,
                two_way: true,
                timeout: Duration::from_millis(29_000),
                response: None,
            },
        );
        config
    }

    /// Parses and validates a whole TOML document (no environment, no flags).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        ConfigBuilder::new().file("config", text).build()
    }

    fn from_table(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> Config {
        for key in table.keys() {
            if ![
                "listen", "api", "routes", "limits", "control", "cluster", "log",
            ]
            .contains(&key.as_str())
            {
                problems.push(ConfigProblem {
                    key: key.clone(),
                    message: "unknown section".into(),
                });
            }
        }

        let mut r = Section::new(table, "listen", problems);
        let listen = ListenConfig {
            websocket: r.addr("websocket", "127.0.0.1:8080"),
            control: r.addr("control", "127.0.0.1:9090"),
        };
        r.finish();

        let mut r = Section::new(table, "api", problems);
        let stage = r.string("stage").unwrap_or_else(|| "prod".into());
        let expr_text = r
            .string("route_selection_expression")
            .unwrap_or_else(|| "$request.body.action".into());
        let webhook_secret = r.string("webhook_secret");
        let api_id = r.string("api_id").unwrap_or_else(|| "gangway".into());
        let domain_name = r.string("domain_name");
        r.finish();
        if stage.is_empty()
            || stage.len() > 128
            || !stage
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.push(ConfigProblem {
                key: "api.stage".into(),
                message: "must be 1-128 characters of A-Z, a-z, 0-9, '-' and '_'".into(),
            });
        }
        if matches!(&webhook_secret, Some(s) if s.len() < MIN_WEBHOOK_SECRET_BYTES) {
            problems.push(ConfigProblem {
                key: "api.webhook_secret".into(),
                message: format!("must be at least {MIN_WEBHOOK_SECRET_BYTES} characters"),
            });
        }
        let route_selection_expression = match SelectionExpression::parse(&expr_text) {
            Ok(e) => e,
            Err(e) => {
                problems.push(ConfigProblem {
                    key: "api.route_selection_expression".into(),
                    message: e.to_string(),
                });
                SelectionExpression::default()
            }
        };
        let api = ApiConfig {
            stage,
            route_selection_expression,
            webhook_secret,
            api_id,
            domain_name,
        };

        let routes = routes_from(table.get("routes"), problems);
        if api.webhook_secret.is_none() {
            let calling: Vec<&str> = routes
                .iter()
                .filter(|(_, r)| r.integration == IntegrationKind::Http)
                .map(|(k, _)| k.as_str())
                .collect();
            if !calling.is_empty() {
                // A generated secret would be unknown to the backends (and logging it would
                // put it wherever the logs go), so a node that calls backends needs one set.
                problems.push(ConfigProblem {
                    key: "api.webhook_secret".into(),
                    message: format!(
                        "required: routes {} call a backend, which should check the \
                         X-Gangway-Signature of every call with this secret (set it in the file \
                         or with GANGWAY_API_WEBHOOK_SECRET)",
                        calling.join(", ")
                    ),
                });
            }
        }

        let mut r = Section::new(table, "limits", problems);
        let limits = LimitsConfig {
            max_message_bytes: r.uint("max_message_bytes", 131_072, 1, 1 << 30) as usize,
            max_frame_bytes: r.uint("max_frame_bytes", 32_768, 1, 1 << 30) as usize,
            max_fragments_per_message: r.uint("max_fragments_per_message", 1_024, 1, 1 << 24)
                as u32,
            idle_timeout_secs: r.uint("idle_timeout_secs", 600, 1, u32::MAX as u64),
            max_connection_secs: r.uint("max_connection_secs", 7_200, 1, u32::MAX as u64),
            send_queue_max_bytes: r.uint("send_queue_max_bytes", 1_048_576, 1, 1 << 32) as usize,
            slow_consumer_policy: match r.string("slow_consumer_policy").as_deref() {
                None | Some("disconnect") => SlowConsumerPolicy::Disconnect,
                Some("drop") => SlowConsumerPolicy::Drop,
                Some(other) => {
                    r.problem(
                        "slow_consumer_policy",
                        format!("must be \"disconnect\" or \"drop\", not {other:?}"),
                    );
                    SlowConsumerPolicy::Disconnect
                }
            },
            write_timeout_secs: r.uint("write_timeout_secs", 10, 1, 3_600),
            max_connections: r.uint("max_connections", 100_000, 1, u32::MAX as u64) as usize,
            max_pending_handshakes: r.uint("max_pending_handshakes", 4_096, 1, 1 << 24) as usize,
            ping_interval_secs: r.uint("ping_interval_secs", 30, 0, 86_400),
            handshake_timeout_secs: r.uint("handshake_timeout_secs", 10, 1, 3_600),
            max_concurrent_integration_calls: r.uint(
                "max_concurrent_integration_calls",
                1_024,
                1,
                1 << 20,
            ) as usize,
            max_concurrent_disconnect_calls: r.uint(
                "max_concurrent_disconnect_calls",
                256,
                1,
                1 << 20,
            ) as usize,
            max_batch_items: r.uint("max_batch_items", 10_000, 1, 1_000_000) as usize,
            max_batch_bytes: r.uint("max_batch_bytes", 16 << 20, 1, 1 << 30) as usize,
            max_channels_per_connection: r.uint("max_channels_per_connection", 100, 1, 100_000)
                as usize,
            inbound_queue_messages: r.uint("inbound_queue_messages", 16, 1, 1 << 16) as usize,
            inbound_messages_per_sec: r.uint("inbound_messages_per_sec", 0, 0, 1 << 20) as u32,
            reject_binary_frames: r.bool("reject_binary_frames", false),
            disconnect_max_attempts: r.uint("disconnect_max_attempts", 8, 1, 1_000) as u32,
            shutdown_grace_secs: r.uint("shutdown_grace_secs", 10, 0, 3_600),
            write_through_max_recipients: r.uint("write_through_max_recipients", 20_000, 0, 1 << 24)
                as usize,
        };
        r.finish();
        if limits.send_queue_max_bytes < limits.max_message_bytes {
            problems.push(ConfigProblem {
                key: "limits.send_queue_max_bytes".into(),
                message: format!(
                    "{} is smaller than limits.max_message_bytes ({}): a largest message could never be queued",
                    limits.send_queue_max_bytes, limits.max_message_bytes
                ),
            });
        }
        if limits.max_frame_bytes > limits.max_message_bytes {
            problems.push(ConfigProblem {
                key: "limits.max_frame_bytes".into(),
                message: format!(
                    "{} is larger than limits.max_message_bytes ({})",
                    limits.max_frame_bytes, limits.max_message_bytes
                ),
            });
        }

        let mut r = Section::new(table, "control", problems);
        let tokens = r.string_list("tokens");
        let aws_credentials = r.credentials("aws_credentials");
        let body_timeout_secs = r.uint("body_timeout_secs", 30, 1, 3_600);
        r.finish();
        for (i, t) in tokens.iter().enumerate() {
            if t.len() < 8 {
                problems.push(ConfigProblem {
                    key: format!("control.tokens[{i}]"),
                    message: "a token must be at least 8 characters".into(),
                });
            }
        }
        let control = ControlConfig {
            tokens,
            aws_credentials,
            body_timeout_secs,
        };

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
        if cluster.node_ttl_ms < 3 * cluster.heartbeat_interval_ms {
            problems.push(ConfigProblem {
                key: "cluster.node_ttl_ms".into(),
                message: format!(
                    "{} is less than 3 heartbeats (cluster.heartbeat_interval_ms = {}): live nodes would be reaped",
                    cluster.node_ttl_ms, cluster.heartbeat_interval_ms
                ),
            });
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
                    message: "cluster.tls_ca_file is set, so this URL must be rediss:// (TLS)"
                        .into(),
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

        let mut r = Section::new(table, "log", problems);
        let log = LogConfig {
            format: match r.string("format").as_deref() {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    r.problem(
                        "format",
                        format!("must be \"text\" or \"json\", not {other:?}"),
                    );
                    LogFormat::Text
                }
            },
            level: r.string("level").unwrap_or_else(|| "info".into()),
        };
        r.finish();

        if !listen.control.ip().is_loopback() && !control.requires_auth() {
            problems.push(ConfigProblem {
                key: "listen.control".into(),
                message: format!(
                    "{} is not a loopback address, and [control] has no tokens or aws_credentials: \
                     the control API would be open to the network",
                    listen.control
                ),
            });
        }

        Config {
            listen,
            api,
            routes,
            limits,
            control,
            cluster,
            log,
        }
    }

    /// Inactivity after which a connection is closed.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.idle_timeout_secs)
    }
}

fn routes_from(
    value: Option<&toml::Value>,
    problems: &mut Vec<ConfigProblem>,
) -> BTreeMap<String, RouteConfig> {
    let mut routes = BTreeMap::new();
    let Some(value) = value else {
        return routes;
    };
    let Some(table) = value.as_table() else {
        problems.push(ConfigProblem {
            key: "routes".into(),
            message: "must be a table of route keys".into(),
        });
        return routes;
    };
    for (route_key, route) in table {
        let prefix = format!("routes.\"{route_key}\"");
        if route_key.starts_with('$')
            && !matches!(route_key.as_str(), "$connect" | "$disconnect" | "$default")
        {
            problems.push(ConfigProblem {
                key: prefix.clone(),
                message: "route keys starting with '$' are reserved; use $connect, $disconnect, \
                          $default or a key without '$'"
                    .into(),
            });
        }
        if route_key.is_empty() {
            problems.push(ConfigProblem {
                key: prefix.clone(),
                message: "a route key must not be empty".into(),
            });
        }
        let Some(rt) = route.as_table() else {
            problems.push(ConfigProblem {
                key: prefix,
                message: "must be a table".into(),
            });
            continue;
        };
        let mut r = Section::from_table(rt, prefix.clone(), problems);
        let integration = match r.string("integration").as_deref() {
            Some("http") => IntegrationKind::Http,
            Some("mock") => IntegrationKind::Mock,
            Some(other) => {
                r.problem(
                    "integration",
                    format!("must be \"http\" or \"mock\", not {other:?}"),
                );
                IntegrationKind::Mock
            }
            None => {
                r.problem("integration", "missing (\"http\" or \"mock\")".into());
                IntegrationKind::Mock
            }
        };
        let url = r.string("url");
        let two_way = r.bool("two_way", integration == IntegrationKind::Mock);
        let timeout_ms = r.uint("timeout_ms", 29_000, 1, 3_600_000);
        let response = r.string("response");
        r.finish();
        match (integration, &url) {
            (IntegrationKind::Http, None) => problems.push(ConfigProblem {
                key: format!("{prefix}.url"),
                message: "an http route needs a url".into(),
            }),
            (IntegrationKind::Http, Some(u)) => {
                if let Err(e) = reqwest::Url::parse(u)
                    .map_err(|e| e.to_string())
                    .and_then(|p| {
                        if matches!(p.scheme(), "http" | "https") {
                            Ok(())
                        } else {
                            Err("scheme must be http or https".to_string())
                        }
                    })
                {
                    problems.push(ConfigProblem {
                        key: format!("{prefix}.url"),
                        message: format!("not a usable URL ({e}): {u:?}"),
                    });
                }
            }
            (IntegrationKind::Mock, Some(_)) => problems.push(ConfigProblem {
                key: format!("{prefix}.url"),
                message: "a mock route takes no url".into(),
            }),
            (IntegrationKind::Mock, None) => {}
        }
        routes.insert(
            route_key.clone(),
            RouteConfig {
                integration,
                url,
                two_way,
                timeout: Duration::from_millis(timeout_ms),
                response,
            },
        );
    }
    routes
}

/// Reads the keys of one table, recording a problem for each bad or unknown key.
struct Section<'a> {
    table: Option<&'a toml::Table>,
    prefix: String,
    problems: &'a mut Vec<ConfigProblem>,
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    fn new(root: &'a toml::Table, name: &str, problems: &'a mut Vec<ConfigProblem>) -> Self {
        let table = match root.get(name) {
            None => None,
            Some(toml::Value::Table(t)) => Some(t),
            Some(_) => {
                problems.push(ConfigProblem {
                    key: name.into(),
                    message: "must be a table".into(),
                });
                None
            }
        };
        Section {
            table,
            prefix: name.into(),
            problems,
            known: Vec::new(),
        }
    }

    fn from_table(
        table: &'a toml::Table,
        prefix: String,
        problems: &'a mut Vec<ConfigProblem>,
    ) -> Self {
        Section {
            table: Some(table),
            prefix,
            problems,
            known: Vec::new(),
        }
    }

    fn problem(&mut self, key: &str, message: String) {
        self.problems.push(ConfigProblem {
            key: format!("{}.{key}", self.prefix),
            message,
        });
    }

    fn get(&mut self, key: &'static str) -> Option<&'a toml::Value> {
        self.known.push(key);
        self.table.and_then(|t| t.get(key))
    }

    fn string(&mut self, key: &'static str) -> Option<String> {
        match self.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            other => {
                self.problem(
                    key,
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn uint(&mut self, key: &'static str, default: u64, min: u64, max: u64) -> u64 {
        match self.get(key) {
            None => default,
            Some(toml::Value::Integer(i))
                if *i >= 0 && (*i as u64) >= min && (*i as u64) <= max =>
            {
                *i as u64
            }
            Some(toml::Value::Integer(i)) => {
                self.problem(key, format!("{i} is out of range ({min}..={max})"));
                default
            }
            Some(other) => {
                self.problem(
                    key,
                    format!("expected an integer, found {}", other.type_str()),
                );
                default
            }
        }
    }

    fn bool(&mut self, key: &'static str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                self.problem(
                    key,
                    format!("expected true or false, found {}", other.type_str()),
                );
                default
            }
        }
    }

    fn addr(&mut self, key: &'static str, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        match self.string(key) {
            None => fallback,
            Some(s) => match s.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.problem(key, format!("{s:?} is not an ip:port socket address"));
                    fallback
                }
            },
        }
    }

    fn string_list(&mut self, key: &'static str) -> Vec<String> {
        match self.get(key) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => self.problem(
                            &format!("{key}[{i}]"),
                            format!("expected a string, found {}", item.type_str()),
                        ),
                    }
                }
                out
            }
            // A single string (e.g. from an environment variable) is a comma-separated list.
            Some(toml::Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Some(other) => {
                self.problem(
                    key,
                    format!("expected an array of strings, found {}", other.type_str()),
                );
                Vec::new()
            }
        }
    }

    fn credentials(&mut self, key: &'static str) -> Vec<AwsCredential> {
        let Some(value) = self.get(key) else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.problem(key, "expected [[control.aws_credentials]] tables".into());
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let id = item.get("access_key_id").and_then(|v| v.as_str());
            let secret = item.get("secret_access_key").and_then(|v| v.as_str());
            match (id, secret) {
                (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                    out.push(AwsCredential {
                        access_key_id: id.into(),
                        secret_access_key: secret.into(),
                    })
                }
                _ => self.problem(
                    &format!("{key}[{i}]"),
                    "needs non-empty string access_key_id and secret_access_key".into(),
                ),
            }
        }
        out
    }

    fn finish(self) {
        if let Some(t) = self.table {
            for key in t.keys() {
                if !self.known.contains(&key.as_str()) {
                    self.problems.push(ConfigProblem {
                        key: format!("{}.{key}", self.prefix),
                        message: format!("unknown key (known: {})", self.known.join(", ")),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_takes_defaults() {
        let c = Config::from_toml_str("").expect("valid");
        assert_eq!(c.listen.websocket.to_string(), "127.0.0.1:8080");
        assert_eq!(c.listen.control.to_string(), "127.0.0.1:9090");
        assert_eq!(c.api.stage, "prod");
        assert_eq!(c.limits.max_message_bytes, 131_072);
        assert_eq!(c.limits.max_frame_bytes, 32_768);
        assert!(c.routes.is_empty());
    }

    #[test]
    fn the_spec_example_parses() {
        let text = r#"
[listen]
websocket = "127.0.0.1:8080"
control = "127.0.0.1:9090"
[api]
stage = "prod"
route_selection_expression = "$request.body.action"
webhook_secret = "s3cret-s3cret"
[routes."$connect"]
integration = "http"
url = "http://127.0.0.1:3000/connect"
[routes."$default"]
integration = "mock"
two_way = true
[routes.sendmessage]
integration = "http"
url = "http://127.0.0.1:3000/message"
two_way = true
timeout_ms = 29000
[limits]
max_message_bytes = 131072
max_frame_bytes = 32768
idle_timeout_secs = 600
max_connection_secs = 7200
send_queue_max_bytes = 1048576
[control]
tokens = ["a-long-token"]
[[control.aws_credentials]]
access_key_id = "AKID"
secret_access_key = "secret"
[cluster]
redis_url = "redis://127.0.0.1:6379"
node_id = "node-a"
"#;
        let c = Config::from_toml_str(text).expect("valid");
        assert_eq!(c.routes.len(), 3);
        assert!(c.routes["sendmessage"].two_way);
        assert!(!c.routes["$connect"].two_way);
        assert_eq!(c.control.aws_credentials[0].access_key_id, "AKID");
        assert_eq!(c.cluster.node_id.as_deref(), Some("node-a"));
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
[listen]
websocket = "nonsense"
[limits]
max_message_bytes = "big"
idle_timeout_secs = -1
bogus = 1
[routes.x]
integration = "http"
[routes."$weird"]
integration = "mock"
[surprise]
"#;
        let err = Config::from_toml_str(text).expect_err("invalid");
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "listen.websocket",
            "limits.max_message_bytes",
            "limits.idle_timeout_secs",
            "limits.bogus",
            "routes.\"x\".url",
            "routes.\"$weird\"",
            "surprise",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn env_overrides_file_and_parses_literals() {
        let c = ConfigBuilder::new()
            .file(
                "f",
                "[limits]\nmax_message_bytes = 1000\nmax_frame_bytes = 100\n",
            )
            .env([
                (
                    "GANGWAY_LIMITS_MAX_MESSAGE_BYTES".to_string(),
                    "2000".to_string(),
                ),
                ("GANGWAY_API_STAGE".to_string(), "dev".to_string()),
                (
                    "GANGWAY_CONTROL_TOKENS".to_string(),
                    "tok-one-1,tok-two-2".to_string(),
                ),
                ("GANGWAY_CONFIG".to_string(), "ignored.toml".to_string()),
                ("OTHER".to_string(), "x".to_string()),
            ])
            .build()
            .expect("valid");
        assert_eq!(c.limits.max_message_bytes, 2000);
        assert_eq!(c.api.stage, "dev");
        assert_eq!(c.control.tokens, vec!["tok-one-1", "tok-two-2"]);
    }

    #[test]
    fn unknown_env_section_is_a_problem() {
        let err = ConfigBuilder::new()
            .env([("GANGWAY_NOPE_X".to_string(), "1".to_string())])
            .build()
            .expect_err("invalid");
        assert_eq!(err.problems[0].key, "GANGWAY_NOPE_X");
    }

    #[test]
    fn open_control_listener_needs_credentials() {
        let err = Config::from_toml_str("[listen]\ncontrol = \"0.0.0.0:9090\"\n").expect_err("x");
        assert_eq!(err.problems[0].key, "listen.control");
        Config::from_toml_str(
            "[listen]\ncontrol = \"0.0.0.0:9090\"\n[control]\ntokens=[\"12345678\"]",
        )
        .expect("with a token it may bind anywhere");
    }
}
