//! `fanout --workers K`: subscribers in K child processes, publishing in this one.
//!
//! Each child (this same command with `LOADTEST_WORKER=i/K`) opens its share of the
//! subscribers, prints `ready` on its stdout and waits. Once every child is ready the parent
//! publishes, then writes `done p0 p1 …` (successful publishes per channel) to each child's
//! stdin; a child works out the deliveries it should have had, drains, and prints its result
//! as JSON, latency histogram included, which the parent merges into true percentiles over
//! every subscriber. Spreading subscribers this way keeps the load tool's own CPU time off the
//! critical path of one process, as clients spread over machines would be.

use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::publish::{Publish, Target};
use crate::report::{Percentiles, RunResult};
use crate::scenario::{histogram, DriverResult};
use crate::server_cpu::ServerCpu;

/// The line a child prints once its subscribers are open.
const READY: &str = "ready";

/// How long a child may take to open its subscribers.
const READY_TIMEOUT: Duration = Duration::from_secs(600);

/// In a child: announces readiness, waits for the parent's `done` line and returns the
/// deliveries this child should have received. `mine[c]` is how many of this child's
/// subscribers are on channel `c`.
pub async fn await_publishes(mine: Vec<u64>) -> DriverResult {
    let started = std::time::Instant::now();
    let mut out = tokio::io::stdout();
    let _ = out.write_all(format!("{READY}\n").as_bytes()).await;
    let _ = out.flush().await;
    let mut line = String::new();
    let mut r = DriverResult::default();
    let mut stdin = BufReader::new(tokio::io::stdin());
    if stdin.read_line(&mut line).await.is_err() || !line.starts_with("done") {
        r.errors
            .insert("the parent process sent no publish counts".into(), 1);
        return r;
    }
    for (c, n) in line.split_whitespace().skip(1).enumerate() {
        let n: u64 = n.parse().unwrap_or(0);
        r.published += n;
        r.expected_deliveries += n * mine.get(c).copied().unwrap_or(0);
    }
    r.elapsed = started.elapsed();
    r
}

struct Worker {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

/// In the parent: starts `workers` children, publishes to `targets` once they are all ready,
/// and merges their results. `cpu` (the server's processes) is measured from the first
/// publish until every child has drained.
pub async fn run(
    workers: usize,
    targets: Vec<Target>,
    how: Publish,
    duration: Duration,
    cpu: Option<ServerCpu>,
) -> anyhow::Result<RunResult> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut children = Vec::new();
    for i in 0..workers {
        let mut child = Command::new(&exe)
            .args(&args)
            .env(crate::WORKER_ENV, format!("{i}/{workers}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a worker process")?;
        let stdout = BufReader::new(child.stdout.take().context("worker stdout")?);
        children.push(Worker { child, stdout });
    }
    for w in &mut children {
        let mut line = String::new();
        loop {
            line.clear();
            let n = tokio::time::timeout(READY_TIMEOUT, w.stdout.read_line(&mut line))
                .await
                .context("a worker process did not open its subscribers in time")??;
            if n == 0 {
                bail!("a worker process ended before its subscribers were open");
            }
            if line.trim() == READY {
                break;
            }
        }
    }
    let cpu_before = cpu.as_ref().map(ServerCpu::seconds).transpose()?;
    let driven = crate::publish::drive(targets, how, duration).await;
    let done = format!(
        "done {}\n",
        driven
            .published_per_target
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut results = Vec::new();
    for w in &mut children {
        if let Some(mut stdin) = w.child.stdin.take() {
            stdin
                .write_all(done.as_bytes())
                .await
                .context("worker stdin")?;
        }
    }
    for mut w in children {
        let mut json = Vec::new();
        w.stdout
            .read_to_end(&mut json)
            .await
            .context("worker stdout")?;
        let status = w.child.wait().await.context("worker")?;
        if !status.success() {
            bail!("a worker process failed ({status})");
        }
        let r: RunResult =
            serde_json::from_slice(&json).context("worker printed no JSON result")?;
        results.push(r);
    }
    let cpu_after = cpu.as_ref().map(ServerCpu::seconds).transpose()?;
    let mut latency = histogram();
    for r in &results {
        for &(us, n) in &r.latency_histogram {
            let _ = latency.record_n(us.max(1), n);
        }
    }
    let mut merged = RunResult::merge(results);
    merged.delivery_latency = Percentiles::from_us(&latency);
    merged.published = driven.published;
    merged.publish_errors = driven.errors;
    merged.publishes_per_sec = driven.published as f64 / driven.elapsed.as_secs_f64().max(1e-9);
    if let Some(h) = &driven.request_latency {
        merged.publish_latency = Percentiles::from_us(h);
    }
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        merged.set_server_cpu(after - before);
    }
    Ok(merged)
}
