//! `gangway-loadtest`: drives a real WebSocket server over real sockets and reports what it saw.
//!
//! Scenarios: `connect` (ramp N connections at R/s and hold them) and `echo` (round trips
//! through an echoing route). Connections spread over several source addresses (127.0.0.x) to
//! pass the per-address port limit. Every run is bounded in count and time and stops by itself;
//! targets must be loopback addresses.

mod dial;
mod report;
mod scenario;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};

/// Load generator for Gangway and other WebSocket servers.
#[derive(Debug, Parser)]
#[command(name = "gangway-loadtest", version)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Ramp N connections at a rate, hold them, report connect latency and failures.
    Connect(ConnectArgs),
    /// Round trips through an echoing route: each connection sends, waits for the echo, repeats.
    Echo(EchoArgs),
}

/// Options every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// WebSocket URL of the server under test (loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/")]
    pub url: String,
    /// Connections to open.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// New connections per second while ramping.
    #[arg(long, default_value_t = 2000)]
    pub connect_rate: u32,
    /// Source addresses to spread connections over, e.g. 127.0.0.2,127.0.0.3.
    #[arg(long, value_delimiter = ',')]
    pub source_ips: Vec<IpAddr>,
    /// Print the result as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
struct ConnectArgs {
    #[command(flatten)]
    common: Common,
    /// Seconds to hold the connections once all are open.
    #[arg(long, default_value_t = 10)]
    hold_secs: u64,
}

#[derive(Debug, Args)]
struct EchoArgs {
    #[command(flatten)]
    common: Common,
    /// Seconds to run after the ramp.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Message size in bytes (at least 32: a sequence number and a timestamp lead each one).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    window: usize,
}

fn check_target(common: &Common) -> anyhow::Result<()> {
    let url = common.url.as_str();
    let rest = url
        .strip_prefix("ws://")
        .context("only ws:// URLs are supported")?;
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    if !loopback {
        bail!("refusing to load-test {host}: targets must be loopback addresses");
    }
    if common.connections == 0 || common.connections > 1_000_000 {
        bail!("--connections must be between 1 and 1000000");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Connect(a) => {
            check_target(&a.common)?;
            let result =
                scenario::connect(&a.common, Duration::from_secs(a.hold_secs.min(3_600))).await;
            report::print(&result, a.common.json);
        }
        Scenario::Echo(a) => {
            check_target(&a.common)?;
            if a.size < 32 {
                bail!("--size must be at least 32");
            }
            let result = scenario::echo(
                &a.common,
                Duration::from_secs(a.duration_secs.min(3_600)),
                a.size,
                a.window.clamp(1, 1024),
            )
            .await;
            report::print(&result, a.common.json);
        }
    }
    Ok(())
}
