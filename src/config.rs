//! The gateway's whole configuration file: the data plane's sections (read by
//! `gangway_broker::Config`), the control API's `[control]` (read by
//! `gangway_control_api::config::ControlConfig`), and the binary's own `[listen]` and `[log]`.
//! Every section is read from one layered table (file < environment < flags), and every problem
//! of every section is reported at once, before any port is bound.

use std::net::SocketAddr;

use gangway_broker::config::{unknown_sections, ConfigError, ConfigProblem, Section, SECTIONS};
use gangway_broker::{Config, ConfigBuilder};
use gangway_control_api::config::ControlConfig;

/// `[listen]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenConfig {
    /// Public WebSocket listener (`websocket`, default `127.0.0.1:8080`).
    pub websocket: SocketAddr,
    /// Control API listener (`control`, default `127.0.0.1:9090`).
    pub control: SocketAddr,
    /// `trusted_proxies` and `proxy_protocol`: whose `X-Forwarded-For` and PROXY header set a
    /// client's `sourceIp` (also handed to the broker as its `edge`).
    pub edge: gangway_broker::config::edge::EdgeConfig,
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
    /// `access`: one line per connection at `info` (target `gangway::access`); default true.
    pub access: bool,
}

/// The whole configuration of one node.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `[api]`, `[routes]`, `[limits]`, `[cluster]`: the data plane.
    pub broker: Config,
    /// `[control]`: the control API's credentials.
    pub control: ControlConfig,
    /// `[listen]`: where the two listeners bind.
    pub listen: ListenConfig,
    /// `[log]`: log format and filter.
    pub log: LogConfig,
    /// `[tls]`: which listeners speak TLS, with which certificates.
    pub tls: crate::tls::TlsConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig::build(ConfigBuilder::new()).unwrap_or_else(|e| {
            // The empty file is valid by construction (a unit test holds it).
            panic!("the default configuration is invalid: {e}")
        })
    }
}

impl GatewayConfig {
    /// Reads every section of the layered table in `builder`; every problem, or the config.
    pub fn build(builder: ConfigBuilder) -> Result<GatewayConfig, ConfigError> {
        let (table, mut problems) = builder.into_parts();
        let mut known: Vec<&str> = SECTIONS.to_vec();
        known.extend(["control", "listen", "log", "tls"]);
        unknown_sections(&table, &known, &mut problems);
        let mut broker = Config::from_table(&table, &mut problems);
        let control = ControlConfig::read(&table, &mut problems);
        let listen = read_listen(&table, &mut problems);
        let log = read_log(&table, &mut problems);
        broker.access_log = log.access;
        broker.edge = listen.edge.clone();
        let tls = crate::tls::read(&table, &mut problems);
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
        if problems.is_empty() {
            Ok(GatewayConfig {
                broker,
                control,
                listen,
                log,
                tls,
            })
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Parses and validates a whole TOML document (no environment, no flags).
    pub fn from_toml_str(text: &str) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::build(ConfigBuilder::new().file("config", text))
    }

    /// What is valid but probably not meant: printed by `--check` and logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let answers_messages = self
            .broker
            .routes
            .keys()
            .any(|k| k == "$default" || !k.starts_with('$'));
        if !answers_messages {
            warnings.push(
                "no route answers messages (no [routes.\"$default\"] and no custom route): \
                 every client message will get {\"message\": \"Forbidden\"}. A file replaces the \
                 built-in echo route; add e.g. [routes.\"$default\"] integration = \"mock\""
                    .to_string(),
            );
        }
        let region_in_env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
        for (key, route) in &self.broker.routes {
            if route.lambda.as_ref().is_some_and(|t| t.region.is_none()) && !region_in_env {
                warnings.push(format!(
                    "routes.\"{key}\": no region (no `region`, no ARN, no AWS_REGION): the \
                     function is invoked in the AWS profile's region, and fails if it has none"
                ));
            }
        }
        warnings
    }
}

fn read_listen(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> ListenConfig {
    let mut r = Section::new(table, "listen", problems);
    let websocket = r.addr("websocket", "127.0.0.1:8080");
    let control = r.addr("control", "127.0.0.1:9090");
    let trusted = r.string_list("trusted_proxies");
    let proxy_protocol = r.bool("proxy_protocol", false);
    r.finish();
    let edge = gangway_broker::config::edge::EdgeConfig::parse(
        "listen.trusted_proxies",
        &trusted,
        proxy_protocol,
        problems,
    );
    ListenConfig {
        websocket,
        control,
        edge,
    }
}

fn read_log(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> LogConfig {
    let mut r = Section::new(table, "log", problems);
    let format = match r.string("format").as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            r.problem(
                "format",
                format!("must be \"text\" or \"json\", not {other:?}"),
            );
            LogFormat::Text
        }
    };
    let level = r.string("level").unwrap_or_else(|| "info".into());
    let access = r.bool("access", true);
    r.finish();
    LogConfig {
        format,
        level,
        access,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_takes_defaults() {
        let c = GatewayConfig::from_toml_str("").expect("valid");
        assert_eq!(c.listen.websocket.to_string(), "127.0.0.1:8080");
        assert_eq!(c.listen.control.to_string(), "127.0.0.1:9090");
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.broker.api.stage, "prod");
        assert!(!c.control.requires_auth());
        let _ = GatewayConfig::default();
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
[log]
format = "json"
"#;
        let c = GatewayConfig::from_toml_str(text).expect("valid");
        assert_eq!(c.broker.routes.len(), 3);
        assert!(c.broker.routes["sendmessage"].two_way);
        assert!(!c.broker.routes["$connect"].two_way);
        assert_eq!(c.control.aws_credentials[0].access_key_id, "AKID");
        assert_eq!(c.broker.cluster.node_id.as_deref(), Some("node-a"));
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn every_problem_of_every_section_is_reported_with_its_key() {
        let text = r#"
[listen]
websocket = "nonsense"
[limits]
max_message_bytes = "big"
[control]
tokens = ["short"]
[log]
format = "xml"
[surprise]
"#;
        let err = GatewayConfig::from_toml_str(text).expect_err("invalid");
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "listen.websocket",
            "limits.max_message_bytes",
            "control.tokens[0]",
            "log.format",
            "surprise",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn env_reaches_every_section() {
        let c = GatewayConfig::build(ConfigBuilder::new().env([
            (
                "GANGWAY_CONTROL_TOKENS".to_string(),
                "tok-one-1,tok-two-2".to_string(),
            ),
            ("GANGWAY_LOG_FORMAT".to_string(), "json".to_string()),
            ("GANGWAY_API_STAGE".to_string(), "dev".to_string()),
        ]))
        .expect("valid");
        assert_eq!(c.control.tokens, vec!["tok-one-1", "tok-two-2"]);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.broker.api.stage, "dev");
    }

    /// What Kubernetes injects into every pod of a namespace with Services called `gangway`
    /// (ports 8080 and 9090) and `gangway-control` (port 9090, named `http`).
    fn kubernetes_service_links() -> Vec<(String, String)> {
        [
            ("GANGWAY_SERVICE_HOST", "10.0.0.1"),
            ("GANGWAY_SERVICE_PORT", "8080"),
            ("GANGWAY_SERVICE_PORT_WEBSOCKET", "8080"),
            ("GANGWAY_PORT", "tcp://10.0.0.1:8080"),
            ("GANGWAY_PORT_8080_TCP", "tcp://10.0.0.1:8080"),
            ("GANGWAY_PORT_8080_TCP_PROTO", "tcp"),
            ("GANGWAY_PORT_8080_TCP_PORT", "8080"),
            ("GANGWAY_PORT_8080_TCP_ADDR", "10.0.0.1"),
            ("GANGWAY_PORT_9090_TCP", "tcp://10.0.0.1:9090"),
            ("GANGWAY_PORT_9090_TCP_PROTO", "tcp"),
            ("GANGWAY_PORT_9090_TCP_PORT", "9090"),
            ("GANGWAY_PORT_9090_TCP_ADDR", "10.0.0.1"),
            ("GANGWAY_CONTROL_SERVICE_HOST", "10.0.0.2"),
            ("GANGWAY_CONTROL_SERVICE_PORT", "9090"),
            ("GANGWAY_CONTROL_SERVICE_PORT_HTTP", "9090"),
            ("GANGWAY_CONTROL_PORT", "tcp://10.0.0.2:9090"),
            ("GANGWAY_CONTROL_PORT_9090_TCP", "tcp://10.0.0.2:9090"),
            ("GANGWAY_CONTROL_PORT_9090_TCP_PROTO", "tcp"),
            ("GANGWAY_CONTROL_PORT_9090_TCP_PORT", "9090"),
            ("GANGWAY_CONTROL_PORT_9090_TCP_ADDR", "10.0.0.2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn kubernetes_service_links_are_ignored_and_typos_still_refused() {
        let mut vars = kubernetes_service_links();
        vars.push(("GANGWAY_API_STAGE".into(), "dev".into()));
        let c = GatewayConfig::build(ConfigBuilder::new().env(vars.clone())).expect("valid");
        assert_eq!(c.broker.api.stage, "dev");
        // A known section with an unknown key is still refused, named by its key.
        vars.push(("GANGWAY_LIMITS_MAX_MESAGE_BYTES".into(), "1024".into()));
        let err = GatewayConfig::build(ConfigBuilder::new().env(vars)).expect_err("typo");
        assert_eq!(err.problems.len(), 1, "{err:?}");
        assert!(err.problems[0].key.contains("max_mesage_bytes"), "{err:?}");
    }

    #[test]
    fn open_control_listener_needs_credentials() {
        let err =
            GatewayConfig::from_toml_str("[listen]\ncontrol = \"0.0.0.0:9090\"\n").expect_err("x");
        assert_eq!(err.problems[0].key, "listen.control");
        GatewayConfig::from_toml_str(
            "[listen]\ncontrol = \"0.0.0.0:9090\"\n[control]\ntokens=[\"12345678\"]",
        )
        .expect("with a token it may bind anywhere");
    }
}
