//! `gangway`: run one Gangway node.
//!
//! Configuration precedence: defaults < `--config FILE` < `GANGWAY_…` environment < flags.
//! With no configuration at all the node listens on 127.0.0.1:8080 (WebSocket) and
//! 127.0.0.1:9090 (control), and its `$default` route echoes.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use gangway::config::LogFormat;
use gangway::{GatewayConfig, Node};
use gangway_broker::{Config, ConfigBuilder};

/// Exit status for an invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

/// Self-hosted WebSocket gateway: AWS API Gateway WebSocket semantics, plus fan-out.
#[derive(Debug, Clone, Parser)]
#[command(name = "gangway", version)]
struct Cli {
    /// TOML configuration file.
    #[arg(short, long, env = "GANGWAY_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Public WebSocket listener, ip:port ([listen] websocket).
    #[arg(long)]
    websocket_listen: Option<String>,
    /// Control API listener, ip:port ([listen] control).
    #[arg(long)]
    control_listen: Option<String>,
    /// Stage name ([api] stage).
    #[arg(long)]
    stage: Option<String>,
    /// Redis URL; turns on cluster mode ([cluster] redis_url).
    #[arg(long)]
    redis_url: Option<String>,
    /// This node's id ([cluster] node_id).
    #[arg(long)]
    node_id: Option<String>,
    /// Log format: text or json ([log] format).
    #[arg(long)]
    log_format: Option<String>,
    /// Log filter, e.g. info or gangway_broker=debug ([log] level).
    #[arg(long)]
    log_level: Option<String>,
    /// Validate the configuration, print the problems, and exit.
    #[arg(long)]
    check: bool,
    /// Health probe for images without shell tools: GET this URL (http only, e.g.
    /// http://127.0.0.1:9090/healthz), exit 0 on a 2xx answer within 5 s, 1 otherwise.
    #[arg(long, value_name = "URL")]
    probe: Option<String>,
}

fn load_config(cli: &Cli) -> anyhow::Result<Result<GatewayConfig, gangway_broker::ConfigError>> {
    let mut builder = ConfigBuilder::new();
    let mut embedded_default = true;
    if let Some(path) = &cli.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        builder = builder.file(&path.display().to_string(), &text);
        embedded_default = false;
    }
    builder = builder.env(std::env::vars());
    let flags = [
        ("listen", "websocket", &cli.websocket_listen),
        ("listen", "control", &cli.control_listen),
        ("api", "stage", &cli.stage),
        ("cluster", "redis_url", &cli.redis_url),
        ("cluster", "node_id", &cli.node_id),
        ("log", "format", &cli.log_format),
        ("log", "level", &cli.log_level),
    ];
    for (section, key, value) in flags {
        if let Some(v) = value {
            builder.set(section, key, toml::Value::String(v.clone()));
        }
    }
    Ok(GatewayConfig::build(builder).map(|mut config| {
        // No file at all: the embedded default node, whose $default route echoes.
        if embedded_default && config.broker.routes.is_empty() {
            config.broker.routes = Config::embedded_default().routes;
        }
        config
    }))
}

fn init_logging(config: &GatewayConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a log written to a file or a pipe gets no escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(url) = &cli.probe {
        return probe(url);
    }
    let config = match load_config(&cli) {
        Ok(Ok(config)) => config,
        Ok(Err(problems)) => {
            eprintln!("gangway: {problems}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("gangway: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check {
        for w in config.warnings() {
            println!("warning: {w}");
        }
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gangway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: logging is up, and its line is where an operator looks.
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--probe URL`: one GET, for a container `HEALTHCHECK` (the runtime image has no curl).
fn probe(url: &str) -> ExitCode {
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(gangway::probe::get(url, std::time::Duration::from_secs(5))));
    match answer {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("gangway: probe {url}: HTTP {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("gangway: probe {url}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: GatewayConfig, cli: Cli) -> anyhow::Result<()> {
    // Installed before the node starts (and logs that it did): a SIGTERM right after the
    // start line must drain, not kill. One listener for the whole run: the second signal is the
    // next event on the same streams.
    let mut signals = Signals::install()?;
    // A reload reads the configuration as the start did: the same file, environment and flags.
    let loader: gangway::reload::Loader = Arc::new(move || match load_config(&cli) {
        Ok(Ok(config)) => Ok(config),
        Ok(Err(problems)) => Err(problems.to_string()),
        Err(e) => Err(format!("{e:#}")),
    });
    let node = Node::start_with(config, Some(loader)).await?;
    while signals.next().await == Signal::Reload {
        tracing::info!("SIGHUP: reloading the configuration");
        let _ = node.reload().await;
    }
    tracing::info!("signal received: draining (a second signal exits at once)");
    tokio::spawn(async move {
        while signals.next().await == Signal::Reload {
            tracing::warn!("SIGHUP while draining: ignored");
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
    node.shutdown().await;
    Ok(())
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGTERM or SIGINT: drain and exit.
    Stop,
    /// SIGHUP: reload the configuration.
    Reload,
}

/// SIGTERM, SIGINT and SIGHUP, as streams.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}
