//! `gangway-loadtest`: drives a real WebSocket server over real sockets and reports what it saw.
//!
//! Scenarios: `connect` (ramp and hold), `echo` (round trips through an echoing route),
//! `fanout` (subscribers on channels, publishes over HTTP), `direct` (pushes to connection
//! ids) and `recovery` (subscribers reconnecting with `recover=` under churn). URLs are
//! templates — `{channel}` and `{i}` in the WebSocket URL, `{channel}` in the publish URL,
//! `{id}` in the push URL — so the same workload runs against Gangway or another server (nchan, a Node `ws` server). Every message carries a sequence number and a send
//! timestamp. Every run is bounded in count and time and stops by itself; targets must be
//! loopback addresses.

mod backend;
mod chaos;
mod dial;
mod publish;
mod recovery;
mod reference;
mod report;
mod scenario;
mod server_cpu;
mod subscriber_procs;
mod timeline;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};

use crate::publish::{Publish, Target};
use crate::scenario::{DriverResult, Work};

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
    /// N subscribers on C channels; publishes through HTTP; delivered/s, loss, latency.
    Fanout(FanoutArgs),
    /// Pushes to individual connection ids through HTTP (needs --backend-listen).
    Direct(DirectArgs),
    /// Subscribers on channels with history drop and reconnect at random while publishing goes
    /// on; counts expected, delivered, lost, duplicated and out-of-order messages.
    Recovery(recovery::RecoveryArgs),
    /// Run the raw one-write-per-socket reference server (for side-by-side comparisons).
    Reference(ReferenceArgs),
    /// Start Redis and three gangway nodes, churn clients and pushes, inject faults, and check
    /// the $disconnect contract for every connection (see ARCHITECTURE.md).
    Chaos(chaos::ChaosArgs),
}

#[derive(Debug, Args)]
struct ReferenceArgs {
    /// WebSocket listener (loopback).
    #[arg(long, default_value = "127.0.0.1:8090")]
    websocket: SocketAddr,
    /// Publish listener: `POST /pub` sends the body to every socket.
    #[arg(long, default_value = "127.0.0.1:8091")]
    publish: SocketAddr,
}

/// Options every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// WebSocket URL template of the server under test (loopback only); `{i}` is the
    /// connection's index, `{channel}` its channel. Several comma-separated URLs spread the
    /// connections over several servers (connection i uses URL i mod n).
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
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// CA certificates (PEM) that `wss://` servers are verified against (default: the
    /// system's roots).
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Let `wss://` connections resume TLS sessions from tickets earlier connections of this
    /// process received (a reconnecting client's case). Off by default: every connection is a
    /// distinct client with a full handshake, whatever the server's ticket policy.
    #[arg(long)]
    pub tls_resume: bool,
    /// Allow targets that are not loopback addresses (never in this project's tests: load only
    /// a server you run, on a network you may load).
    #[arg(long)]
    pub allow_remote: bool,
    /// Write a messages-per-second and latency-over-time chart (SVG) to this file.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// Worker processes to spread the connections over (connect, echo and fanout): each holds
    /// its share, from its share of --source-ips, so no process passes the open-file limit. In
    /// fanout the subscribers live in the workers and this process publishes once all are open.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Set in worker processes: the global index of their first connection.
    #[arg(skip)]
    pub index_offset: usize,
    /// Set in worker processes: report the latency histogram for the parent to merge.
    #[arg(skip)]
    pub export_histogram: bool,
}

/// Environment variable that makes a process a worker: `<index>/<workers>`.
pub(crate) const WORKER_ENV: &str = "LOADTEST_WORKER";

impl Common {
    /// In a worker process, narrows the options to this worker's share.
    fn as_worker(&mut self) -> anyhow::Result<bool> {
        let Ok(spec) = std::env::var(WORKER_ENV) else {
            return Ok(false);
        };
        let (i, k) = spec
            .split_once('/')
            .and_then(|(i, k)| Some((i.parse::<usize>().ok()?, k.parse::<usize>().ok()?)))
            .filter(|(i, k)| i < k)
            .context("bad LOADTEST_WORKER")?;
        let n = self.connections;
        self.index_offset = i * (n / k) + i.min(n % k);
        self.connections = n / k + usize::from(i < n % k);
        if !self.source_ips.is_empty() {
            let mine: Vec<IpAddr> = self.source_ips.iter().copied().skip(i).step_by(k).collect();
            self.source_ips = if mine.is_empty() {
                vec![self.source_ips[i % self.source_ips.len()]]
            } else {
                mine
            };
        }
        self.connect_rate = (self.connect_rate / k as u32).max(1);
        self.json = true;
        self.quiet = true;
        self.plot = None;
        self.workers = 1;
        self.export_histogram = true;
        Ok(true)
    }
}

/// Runs this same command in `workers` child processes and merges their JSON results.
fn run_workers(workers: usize) -> anyhow::Result<report::RunResult> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let children: Vec<_> = (0..workers)
        .map(|i| {
            std::process::Command::new(&exe)
                .args(&args)
                .env(WORKER_ENV, format!("{i}/{workers}"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .context("cannot start a worker process")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut results = Vec::new();
    for child in children {
        let out = child.wait_with_output().context("worker")?;
        if !out.status.success() {
            bail!("a worker process failed ({})", out.status);
        }
        results.push(serde_json::from_slice(&out.stdout).context("worker printed no JSON result")?);
    }
    Ok(report::RunResult::merge(results))
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
    /// Message size in bytes (at least 64: a stream, a sequence number and a timestamp lead).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    window: usize,
}

#[derive(Debug, Clone, Args)]
struct PublishArgs {
    /// Seconds to publish after the ramp.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Message size in bytes (at least 64).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Publish requests per second in all; 0 publishes as fast as --concurrency allows.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Publish requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Bearer token for the control API.
    #[arg(long)]
    token: Option<String>,
    /// Run a `$connect` backend here (point the node's `$connect` route at it): it puts each
    /// connection in the channel of its `ch` query parameter and learns connection ids.
    #[arg(long)]
    backend_listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    publish: PublishArgs,
    /// Publish URL template; `{channel}` is replaced by the channel name.
    #[arg(long, default_value = "http://127.0.0.1:9090/@channels/{channel}")]
    publish_url: String,
    /// Channels; subscriber i joins channel i % C.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Channel names are <prefix>-<n>.
    #[arg(long, default_value = "bench")]
    channel_prefix: String,
    /// The server's process ids (comma-separated, e.g. nginx's workers): report its CPU time
    /// per delivery, read from /proc/PID/stat from the first publish to the last delivery.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
}

#[derive(Debug, Args)]
struct DirectArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    publish: PublishArgs,
    /// Push URL template; `{id}` is replaced by a connection id.
    #[arg(long, default_value = "http://127.0.0.1:9090/@connections/{id}")]
    push_url: String,
}

fn check_loopback(url: &str, allow_remote: bool) -> anyhow::Result<()> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .context("URL without a scheme")?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    if !loopback {
        if allow_remote {
            eprintln!(
                "warning: load-testing {host}, which is not a loopback address (--allow-remote)"
            );
        } else {
            bail!("refusing to load-test {host}: targets must be loopback addresses (or pass --allow-remote)");
        }
    }
    Ok(())
}

fn check_common(common: &Common) -> anyhow::Result<()> {
    for url in common.url.split(',') {
        if !url.starts_with("ws://") && !url.starts_with("wss://") {
            bail!("only ws:// and wss:// URLs are supported");
        }
        check_loopback(url, common.allow_remote)?;
    }
    if common.connections == 0 || common.connections > 1_000_000 {
        bail!("--connections must be between 1 and 1000000");
    }
    if common.source_ips.iter().any(|ip| !ip.is_loopback()) {
        bail!("--source-ips must be loopback addresses");
    }
    Ok(())
}

fn check_publish(p: &PublishArgs) -> anyhow::Result<()> {
    if p.size < 64 {
        bail!("--size must be at least 64");
    }
    if let Some(addr) = p.backend_listen {
        if !addr.ip().is_loopback() {
            bail!("--backend-listen must be a loopback address");
        }
    }
    Ok(())
}

fn publish_how(p: &PublishArgs) -> Publish {
    Publish {
        rate: p.rate.max(0.0),
        concurrency: p.concurrency.clamp(1, 1024),
        size: p.size,
        token: p.token.clone(),
    }
}

/// URL `i` of a comma-separated list of templates, with `{i}` filled in.
fn pick(urls: &str, i: usize) -> String {
    let list: Vec<&str> = urls.split(',').collect();
    list[i % list.len()].replace("{i}", &i.to_string())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s.min(3_600))
}

type NoDriver = fn(Duration) -> std::future::Ready<DriverResult>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (result, json, plot) = match cli.scenario {
        Scenario::Chaos(a) => {
            if !chaos::run(a).await? {
                std::process::exit(1);
            }
            return Ok(());
        }
        Scenario::Recovery(a) => return recovery::run(a).await,
        Scenario::Reference(a) => {
            if !a.websocket.ip().is_loopback() || !a.publish.ip().is_loopback() {
                bail!("the reference server listens on loopback addresses only");
            }
            return reference::serve(a.websocket, a.publish).await;
        }
        Scenario::Connect(mut a) => {
            check_common(&a.common)?;
            let is_worker = a.common.as_worker()?;
            if !is_worker && a.common.workers > 1 {
                let r = run_workers(a.common.workers.min(64))?;
                return finish(r, a.common.json, a.common.plot.clone());
            }
            let (url, offset) = (a.common.url.clone(), a.common.index_offset);
            let url_for = move |i: usize| pick(&url, offset + i);
            let r = scenario::run(
                &a.common,
                "connect",
                Work::Hold,
                &url_for,
                secs(a.hold_secs),
                None::<NoDriver>,
            )
            .await;
            (r, a.common.json, a.common.plot.clone())
        }
        Scenario::Echo(mut a) => {
            check_common(&a.common)?;
            if a.size < 64 {
                bail!("--size must be at least 64");
            }
            let is_worker = a.common.as_worker()?;
            if !is_worker && a.common.workers > 1 {
                let r = run_workers(a.common.workers.min(64))?;
                return finish(r, a.common.json, a.common.plot.clone());
            }
            let (url, offset) = (a.common.url.clone(), a.common.index_offset);
            let url_for = move |i: usize| pick(&url, offset + i);
            let work = Work::Echo {
                size: a.size,
                window: a.window.clamp(1, 1024),
            };
            let r = scenario::run(
                &a.common,
                "echo",
                work,
                &url_for,
                secs(a.duration_secs),
                None::<NoDriver>,
            )
            .await;
            (r, a.common.json, a.common.plot.clone())
        }
        Scenario::Fanout(mut a) => {
            check_common(&a.common)?;
            check_publish(&a.publish)?;
            check_loopback(&a.publish_url, a.common.allow_remote)?;
            if a.channels == 0 {
                bail!("--channels must be at least 1");
            }
            let total = a.common.connections;
            let is_worker = a.common.as_worker()?;
            let cpu = if is_worker {
                None
            } else {
                server_cpu::ServerCpu::new(&a.server_pid)?
            };
            if !is_worker {
                if let Some(addr) = a.publish.backend_listen {
                    backend::start(addr).await?;
                }
            }
            let prefix = a.channel_prefix.clone();
            let name = move |c: usize| format!("{prefix}-{c}");
            let channels = a.channels;
            let targets: Vec<Target> = (0..channels)
                .map(|c| Target {
                    url: a.publish_url.replace("{channel}", &name(c)),
                    deliveries: ((total + channels - 1 - c) / channels) as u64,
                })
                .collect();
            let how = publish_how(&a.publish);
            let hold = secs(a.publish.duration_secs);
            if !is_worker && a.common.workers > 1 {
                let r = subscriber_procs::run(a.common.workers.min(64), targets, how, hold, cpu)
                    .await?;
                return finish(r, a.common.json, a.common.plot.clone());
            }
            let (url, offset) = (a.common.url.clone(), a.common.index_offset);
            let channel_of = name.clone();
            let url_for = move |i: usize| {
                pick(&url, offset + i).replace("{channel}", &channel_of((offset + i) % channels))
            };
            let mut mine = vec![0u64; channels];
            for i in 0..a.common.connections {
                mine[(offset + i) % channels] += 1;
            }
            let cpu_before = std::sync::Arc::new(std::sync::Mutex::new(None));
            let before = std::sync::Arc::clone(&cpu_before);
            let cpu_meter = cpu.clone();
            let driver = move |d: Duration| async move {
                if is_worker {
                    return subscriber_procs::await_publishes(mine).await;
                }
                if let (Some(c), Ok(mut b)) = (&cpu_meter, before.lock()) {
                    *b = c.seconds().ok();
                }
                publish::drive(targets, how, d).await
            };
            let mut r = scenario::run(
                &a.common,
                "fanout",
                Work::Receive,
                &url_for,
                hold,
                Some(driver),
            )
            .await;
            let start = cpu_before.lock().ok().and_then(|b| *b);
            if let (Some(c), Some(start)) = (&cpu, start) {
                r.set_server_cpu(c.seconds()? - start);
            }
            (r, a.common.json, a.common.plot.clone())
        }
        Scenario::Direct(a) => {
            check_common(&a.common)?;
            check_publish(&a.publish)?;
            check_loopback(&a.push_url, a.common.allow_remote)?;
            let addr = a
                .publish
                .backend_listen
                .context("direct needs --backend-listen (and the node's $connect route pointing at it) to learn connection ids")?;
            if !a.common.url.contains("{i}") {
                bail!("direct needs {{i}} in --url, e.g. ws://127.0.0.1:8080/?i={{i}}");
            }
            let registry = backend::start(addr).await?;
            let url = a.common.url.clone();
            let url_for = move |i: usize| pick(&url, i);
            let n = a.common.connections;
            let how = publish_how(&a.publish);
            let push_url = a.push_url.clone();
            let driver = move |d: Duration| {
                let targets: Vec<Target> = (0..n)
                    .filter_map(|i| registry.id(i))
                    .map(|id| Target {
                        url: push_url.replace("{id}", &id),
                        deliveries: 1,
                    })
                    .collect();
                async move {
                    if targets.is_empty() {
                        let mut r = DriverResult::default();
                        r.errors.insert(
                            "no connection ids: is $connect pointed at --backend-listen?".into(),
                            1,
                        );
                        return r;
                    }
                    publish::drive(targets, how, d).await
                }
            };
            let r = scenario::run(
                &a.common,
                "direct",
                Work::Receive,
                &url_for,
                secs(a.publish.duration_secs),
                Some(driver),
            )
            .await;
            (r, a.common.json, a.common.plot.clone())
        }
    };
    finish(result, json, plot)
}

/// Writes the plot (if asked) and prints the result.
fn finish(
    result: report::RunResult,
    json: bool,
    plot: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    if let Some(path) = plot {
        let title = format!(
            "gangway-loadtest {}: {} connections",
            result.scenario, result.connections_established
        );
        std::fs::write(&path, timeline::svg(&title, &result.timeline))
            .with_context(|| format!("cannot write {}", path.display()))?;
        if !json {
            println!("plot: {}", path.display());
        }
    }
    report::print(&result, json);
    Ok(())
}
