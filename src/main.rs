//! `gangway`: run one Gangway node.
//!
//! Configuration precedence: defaults < `--config FILE` < `GANGWAY_…` environment < flags.
//! With no configuration at all the node listens on 127.0.0.1:8080 (WebSocket) and
//! 127.0.0.1:9090 (control), and its `$default` route echoes.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use gangway::config::LogFormat;
use gangway::{GatewayConfig, Node};
use gangway_broker::{Config, ConfigBuilder};

/// Exit status for an invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

/// Self-hosted WebSocket gateway: AWS API Gateway WebSocket semantics, plus fan-out.
#[derive(Debug, Parser)]
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
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
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("gangway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: GatewayConfig) -> anyhow::Result<()> {
    // Installed before the node starts (and logs that it did): a SIGTERM right after the
    // start line must drain, not kill. One listener for the whole run: the second signal is the
    // next event on the same streams.
    let mut signals = Signals::install()?;
    let node = Node::start(config).await?;
    signals.next().await;
    tracing::info!("signal received: draining (a second signal exits at once)");
    tokio::spawn(async move {
        signals.next().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
    node.shutdown().await;
    Ok(())
}

/// SIGTERM and SIGINT, as streams.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
