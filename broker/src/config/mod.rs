//! Gateway configuration: typed, defaulted, validated whole.
//!
//! A config is assembled as a TOML table in layers — the file, then `GANGWAY_…` environment
//! variables, then command-line flags — and only then turned into a typed [`Config`]. Every
//! problem found on the way is collected, so a user sees all of them at once, each with its key,
//! before any port is bound.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::selection::SelectionExpression;

pub mod authorizer;
mod builder;
pub mod channels;
mod cluster;
pub mod edge;
mod limits;
mod reader;
mod routes;

pub use builder::{unknown_sections, ConfigBuilder};
pub use channels::{ChannelRule, ChannelRules, Envelope};
pub use cluster::{fencing_fits, ClusterConfig, RedisMode, MIN_HEARTBEATS_PER_TTL};
pub use limits::{LimitsConfig, SendPath, SlowConsumerPolicy};
pub use reader::Section;
pub use routes::{IntegrationKind, LambdaTarget, ResponseFormat, RouteConfig};

/// The sections of the configuration file that the data plane reads.
pub const SECTIONS: &[&str] = &[
    "api",
    "routes",
    "limits",
    "cluster",
    "authorizer",
    "channels",
];

/// The data plane's configuration: `[api]`, `[routes]`, `[limits]` and `[cluster]` of the
/// gateway's file (the TOML keys of the public contract, plus defaults). The file's other
/// sections belong to the control API (`[control]`) and the binary (`[listen]`, `[log]`).
#[derive(Debug, Clone)]
pub struct Config {
    /// `[api]`: stage, route selection and webhook signing.
    pub api: ApiConfig,
    /// `[routes."<key>"]`: route key → integration.
    pub routes: BTreeMap<String, RouteConfig>,
    /// `[limits]`: sizes, timeouts and queue bounds.
    pub limits: LimitsConfig,
    /// `[cluster]`: Redis URL and node id.
    pub cluster: ClusterConfig,
    /// One access-log line per connection (the binary's `[log] access`; default on).
    pub access_log: bool,
    /// Trusted proxies and the PROXY protocol (the binary's `[listen]`; default: none).
    pub edge: edge::EdgeConfig,
    /// `[authorizer]`: what decides a connection before `$connect`.
    pub authorizer: Option<authorizer::AuthorizerConfig>,
    /// `[api] api_key_required` and `[[api.keys]]`.
    pub api_keys: ApiKeys,
    /// `[[channels]]`: history, envelope and presence rules.
    pub channels: ChannelRules,
}

/// `[api] api_key_required` and `[[api.keys]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    /// `$connect` needs a known `x-api-key` (else 403).
    pub required: bool,
    /// The keys, hashed.
    pub keys: Vec<authorizer::ApiKey>,
}

/// `[api]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
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
                response_format: ResponseFormat::Raw,
                throttle_rate: 0,
                throttle_burst: 0,
                lambda: None,
            },
        );
        config
    }

    /// Parses and validates a whole TOML document (no environment, no flags).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        ConfigBuilder::new().file("config", text).build()
    }

    /// Reads the data plane's sections of a layered table, recording every problem (other
    /// sections are not looked at: their owners read them).
    pub fn from_table(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> Config {
        let mut r = Section::new(table, "api", problems);
        let stage = r.string("stage").unwrap_or_else(|| "prod".into());
        let expr_text = r
            .string("route_selection_expression")
            .unwrap_or_else(|| "$request.body.action".into());
        let webhook_secret = r.string("webhook_secret");
        let api_id = r.string("api_id").unwrap_or_else(|| "gangway".into());
        let domain_name = r.string("domain_name");
        let api_key_required = r.bool("api_key_required", false);
        // [[api.keys]] is read below, by its own reader.
        let _ = r.get("keys");
        r.finish();
        let api_keys = ApiKeys {
            required: api_key_required,
            keys: authorizer::read_keys(table.get("api"), problems),
        };
        if api_keys.required && api_keys.keys.is_empty() {
            problems.push(ConfigProblem {
                key: "api.api_key_required".into(),
                message: "no [[api.keys]] to accept".into(),
            });
        }
        let authorizer = authorizer::read(table, problems);
        if matches!(authorizer, Some(authorizer::AuthorizerConfig::Request(_)))
            && webhook_secret.is_none()
        {
            problems.push(ConfigProblem {
                key: "api.webhook_secret".into(),
                message: "required: the request authorizer's calls are signed with it".into(),
            });
        }
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

        let routes = routes::read(table.get("routes"), problems);
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

        let limits = limits::read(table, problems);
        let cluster = cluster::read(table, problems);
        let channels = channels::read(table.get("channels"), problems);

        Config {
            api,
            routes,
            limits,
            cluster,
            access_log: true,
            edge: edge::EdgeConfig::default(),
            authorizer,
            api_keys,
            channels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_takes_defaults() {
        let c = Config::from_toml_str("").expect("valid");
        assert_eq!(c.api.stage, "prod");
        assert_eq!(c.limits.max_message_bytes, 131_072);
        assert_eq!(c.limits.max_frame_bytes, 32_768);
        assert!(c.routes.is_empty());
    }

    #[test]
    fn a_ttl_too_short_to_fence_in_is_refused_with_its_key() {
        let too_short = "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n\
                         heartbeat_interval_ms = 500\nnode_ttl_ms = 1500\n";
        let err = Config::from_toml_str(too_short).expect_err("3 heartbeats per TTL");
        let p = err
            .problems
            .iter()
            .find(|p| p.key == "cluster.node_ttl_ms")
            .expect("the key is named");
        assert!(p.message.contains("fence"), "{}", p.message);
        let fits = "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n\
                    heartbeat_interval_ms = 500\nnode_ttl_ms = 2000\n\
                    control_url = \"http://10.0.0.5:9090\"\n";
        Config::from_toml_str(fits).expect("4 heartbeats per TTL");
        let bad_url = "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n\
                       control_url = \"http://user:pw@10.0.0.5:9090/x\"\n";
        let err = Config::from_toml_str(bad_url).expect_err("a path and credentials");
        assert!(err.problems.iter().any(|p| p.key == "cluster.control_url"));
    }

    #[test]
    fn send_path_takes_its_three_values() {
        assert_eq!(
            Config::from_toml_str("").expect("valid").limits.send_path,
            SendPath::Auto
        );
        for (text, path) in [
            ("auto", SendPath::Auto),
            ("uring", SendPath::Uring),
            ("sendmsg", SendPath::Sendmsg),
        ] {
            let c = Config::from_toml_str(&format!("[limits]\nsend_path = \"{text}\"\n"))
                .expect("valid");
            assert_eq!(c.limits.send_path, path);
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
[limits]
max_message_bytes = "big"
idle_timeout_secs = -1
bogus = 1
send_path = "fast"
[routes.x]
integration = "http"
[routes."$weird"]
integration = "mock"
[surprise]
"#;
        let err = Config::from_toml_str(text).expect_err("invalid");
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "limits.max_message_bytes",
            "limits.idle_timeout_secs",
            "limits.bogus",
            "limits.send_path",
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
                ("GANGWAY_CONFIG".to_string(), "ignored.toml".to_string()),
                ("OTHER".to_string(), "x".to_string()),
            ])
            .build()
            .expect("valid");
        assert_eq!(c.limits.max_message_bytes, 2000);
        assert_eq!(c.api.stage, "dev");
    }

    #[test]
    fn unknown_env_sections_are_ignored_unknown_keys_are_not() {
        ConfigBuilder::new()
            .env([("GANGWAY_NOPE_X".to_string(), "1".to_string())])
            .build()
            .expect("not a section: not ours");
        let err = ConfigBuilder::new()
            .env([("GANGWAY_LIMITS_NOPE".to_string(), "1".to_string())])
            .build()
            .expect_err("a known section's unknown key");
        assert_eq!(err.problems[0].key, "limits.nope");
    }

    #[test]
    fn unset_frame_and_queue_limits_follow_the_message_limit() {
        let c = Config::from_toml_str("[limits]\nmax_message_bytes = 1024\n").expect("valid");
        assert_eq!(c.limits.max_frame_bytes, 1024);
        assert_eq!(c.limits.send_queue_max_bytes, 1_048_576);
        let c = Config::from_toml_str("[limits]\nmax_message_bytes = 4194304\n").expect("valid");
        assert_eq!(c.limits.max_frame_bytes, 32_768);
        assert_eq!(c.limits.send_queue_max_bytes, 8_388_608);
        // Set both ways inconsistently: still refused, named by the key the user set.
        let err =
            Config::from_toml_str("[limits]\nmax_message_bytes = 1024\nmax_frame_bytes = 2048\n")
                .expect_err("frame > message");
        assert_eq!(err.problems[0].key, "limits.max_frame_bytes");
        let err = Config::from_toml_str(
            "[limits]\nmax_message_bytes = 4194304\nsend_queue_max_bytes = 1048576\n",
        )
        .expect_err("queue < message");
        assert_eq!(err.problems[0].key, "limits.send_queue_max_bytes");
    }
}
