//! `recovery`: subscribers on channels with history (`envelope = "json"`) drop and reconnect at
//! random (`--reconnect-churn`, reconnects per subscriber per second) while publishing goes on;
//! each reconnect names the last offset it saw (`?recover=<channel>:<offset>:<epoch>`) unless
//! `--no-recover`. At the end every subscriber's deliveries are checked against the offsets
//! the publisher was answered: expected, delivered, lost, duplicated and out of order.
//!
//! The node's `$connect` route must point at `--backend-listen` (it puts each subscriber in
//! the channel of its `ch` query parameter). One warm-up publish per channel gives its epoch
//! and a starting offset every subscriber names on its first connect; publishing starts once
//! every subscriber is in, so each must see every offset after the warm-up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

/// Options of the `recovery` scenario.
#[derive(Debug, Args)]
pub struct RecoveryArgs {
    /// WebSocket URL templates (comma-separated: subscriber i uses URL i mod n, and each
    /// reconnect moves to the next); `{channel}` is the subscriber's channel.
    #[arg(long, default_value = "ws://127.0.0.1:8080/?ch={channel}")]
    url: String,
    /// Publish URL templates (comma-separated, used in turn); `{channel}` is the channel.
    #[arg(long, default_value = "http://127.0.0.1:9090/@channels/{channel}")]
    publish_url: String,
    /// Subscribers.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Channels; subscriber i is in channel i % C.
    #[arg(long, default_value_t = 10)]
    channels: usize,
    /// Channel names are <prefix>-<run>-<n> (a fresh run id each time: offsets start at 1).
    #[arg(long, default_value = "churn")]
    channel_prefix: String,
    /// Publishes per second, over all channels.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Reconnects per subscriber per second (0.1: every 10 s on average); 0 never drops.
    #[arg(long, default_value_t = 0.1)]
    reconnect_churn: f64,
    /// Longest time a dropped subscriber stays away, ms (uniform from 0).
    #[arg(long, default_value_t = 500)]
    offline_ms: u64,
    /// Reconnect without `recover`, to see what would be lost.
    #[arg(long)]
    no_recover: bool,
    /// Bearer token for the control API.
    #[arg(long)]
    token: Option<String>,
    /// Run the `$connect` backend here (point the node's `$connect` route at it).
    #[arg(long, default_value = "127.0.0.1:3999")]
    backend_listen: SocketAddr,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// A reconnect storm instead: this many clients connect at once, each recovering
    /// `--missed` messages of one channel; reports recoveries per second.
    #[arg(long, default_value_t = 0)]
    storm: usize,
    /// Messages each storm client recovers.
    #[arg(long, default_value_t = 50)]
    missed: u64,
    /// Storm connects in flight.
    #[arg(long, default_value_t = 512)]
    storm_concurrency: usize,
    /// The storm's channel (default: a fresh one). A node whose `$connect` subscribes every
    /// client to a fixed channel (a `mock` route) measures recovery without a webhook call.
    #[arg(long)]
    storm_channel: Option<String>,
}

/// What a reconnect storm saw.
#[derive(Debug, Default, Serialize)]
pub struct StormReport {
    /// Clients that connected and received every missed message, in order.
    pub recovered: u64,
    /// Clients that failed (connect error, notice, timeout, wrong messages).
    pub failed: u64,
    /// Messages each recovered.
    pub missed: u64,
    /// Seconds from the first connect to the last recovery.
    pub secs: f64,
    /// Recoveries per second.
    pub recoveries_per_sec: f64,
}

/// What one run saw.
#[derive(Debug, Default, Serialize)]
pub struct RecoveryReport {
    /// Publishes the node answered 200 with an offset.
    pub published: u64,
    /// Publishes that failed.
    pub publish_errors: u64,
    /// Sum over subscribers of the offsets of their channel.
    pub expected: u64,
    /// Distinct expected offsets that arrived.
    pub delivered: u64,
    /// Expected offsets that never arrived.
    pub lost: u64,
    /// Offsets that arrived more than once.
    pub duplicated: u64,
    /// Offsets that arrived after a higher one.
    pub out_of_order: u64,
    /// Reconnects.
    pub reconnects: u64,
    /// `recovered:false` notices.
    pub not_recovered: u64,
    /// Connects that failed (retried).
    pub connect_errors: u64,
    /// Seconds of publishing.
    pub publish_secs: f64,
}

/// What every task shares.
struct Shared {
    /// Per channel: its epoch (from the publish answers) and the offsets answered.
    acked: Vec<Mutex<(Option<String>, Vec<u64>)>>,
    /// Per channel: the offset of the warm-up publish every subscriber starts after.
    base: Vec<u64>,
    churn: AtomicBool,
    stop: AtomicBool,
    reconnects: AtomicU64,
    not_recovered: AtomicU64,
    connect_errors: AtomicU64,
}

/// One subscriber's record.
#[derive(Default)]
struct Seen {
    offsets: Vec<u64>,
    epoch: Option<String>,
}

/// Runs the scenario and prints the report.
pub async fn run(a: RecoveryArgs) -> anyhow::Result<()> {
    for url in a.url.split(',').chain(a.publish_url.split(',')) {
        crate::check_loopback(url, false)?;
    }
    if !a.backend_listen.ip().is_loopback() {
        bail!("--backend-listen must be a loopback address");
    }
    if a.channels == 0 || a.subscribers == 0 || a.subscribers > 20_000 {
        bail!("--channels must be at least 1 and --subscribers 1 to 20000");
    }
    if !(a.rate > 0.0 && a.rate <= 100_000.0) {
        bail!("--rate must be above 0 and at most 100000");
    }
    crate::backend::start(a.backend_listen).await?;
    if a.storm > 0 {
        return storm(&a).await;
    }
    let run_id = format!("{:x}", crate::scenario::now_us() % 0xffff_ffff);
    let names: Vec<String> = (0..a.channels)
        .map(|c| format!("{}-{run_id}-{c}", a.channel_prefix))
        .collect();
    // One warm-up publish per channel tells its epoch and where every subscriber starts: each
    // first connect names it (`recover=<channel>:<base>:<epoch>`), as an app that learned it
    // from its backend would, so nothing published after it can slip past a subscriber whose
    // subscription became live a moment after its 101.
    let mut acked = Vec::new();
    let mut base = Vec::new();
    for name in &names {
        let (epoch, offset) = warm_up(&a, name).await?;
        acked.push(Mutex::new((Some(epoch), Vec::new())));
        base.push(offset);
    }
    let shared = Arc::new(Shared {
        acked,
        base,
        churn: AtomicBool::new(true),
        stop: AtomicBool::new(false),
        reconnects: AtomicU64::new(0),
        not_recovered: AtomicU64::new(0),
        connect_errors: AtomicU64::new(0),
    });
    let urls: Vec<String> = a.url.split(',').map(str::to_string).collect();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(a.subscribers);
    let mut subs = Vec::new();
    for i in 0..a.subscribers {
        let c = i % a.channels;
        let sub = Subscriber {
            index: i,
            channel_index: c,
            channel: names[c].clone(),
            urls: urls.clone(),
            churn: a.reconnect_churn.max(0.0),
            offline_ms: a.offline_ms.min(60_000),
            recover: !a.no_recover,
        };
        subs.push(tokio::spawn(sub.run(Arc::clone(&shared), ready_tx.clone())));
    }
    drop(ready_tx);
    for _ in 0..a.subscribers {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .context("subscribers did not connect within 60 s")?;
    }
    let started = Instant::now();
    let (published, publish_errors) = publish(&a, &names, &shared).await;
    let publish_secs = started.elapsed().as_secs_f64();
    // Churn stops; everyone reconnects (recovering) and the last messages land.
    shared.churn.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(a.offline_ms.min(60_000) + 3_000)).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut report = RecoveryReport {
        published,
        publish_errors,
        publish_secs,
        ..RecoveryReport::default()
    };
    for (i, s) in subs.into_iter().enumerate() {
        let seen = s.await.unwrap_or_default();
        let acked = shared.acked[i % a.channels]
            .lock()
            .map(|g| g.1.clone())
            .unwrap_or_default();
        score(&mut report, &acked, &seen.offsets);
    }
    report.reconnects = shared.reconnects.load(Ordering::Relaxed);
    report.not_recovered = shared.not_recovered.load(Ordering::Relaxed);
    report.connect_errors = shared.connect_errors.load(Ordering::Relaxed);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "recovery: {} publishes in {:.1} s, {} reconnects ({} recover={})\n\
             expected {}  delivered {} ({:.3}%)  lost {}  duplicated {}  out of order {}  not recovered {}",
            report.published,
            report.publish_secs,
            report.reconnects,
            if a.no_recover { "without" } else { "with" },
            if a.no_recover { "off" } else { "on" },
            report.expected,
            report.delivered,
            100.0 * report.delivered as f64 / report.expected.max(1) as f64,
            report.lost,
            report.duplicated,
            report.out_of_order,
            report.not_recovered,
        );
    }
    Ok(())
}

/// The reconnect storm: `--missed` messages are published to a fresh channel, then `--storm`
/// clients connect (at most `--storm-concurrency` connects in flight), each naming the offset
/// before them; each must receive exactly those messages, in order.
async fn storm(a: &RecoveryArgs) -> anyhow::Result<()> {
    if a.storm > 20_000 || a.missed == 0 || a.missed > 10_000 {
        bail!("--storm must be at most 20000 and --missed 1 to 10000");
    }
    let channel = a.storm_channel.clone().unwrap_or_else(|| {
        format!(
            "{}-storm-{:x}",
            a.channel_prefix,
            crate::scenario::now_us() % 0xffff_ffff
        )
    });
    let (epoch, base) = warm_up(a, &channel).await?;
    for _ in 0..a.missed {
        warm_up(a, &channel).await?;
    }
    let url = a
        .url
        .split(',')
        .next()
        .unwrap_or_default()
        .replace("{channel}", &channel);
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}recover={channel}:{base}:{epoch}");
    let gate = Arc::new(tokio::sync::Semaphore::new(
        a.storm_concurrency.clamp(1, 4096),
    ));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(a.storm);
    for _ in 0..a.storm {
        let (url, gate, missed) = (url.clone(), Arc::clone(&gate), a.missed);
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.ok()?;
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.ok()?;
            drop(permit);
            let mut next = base + 1;
            while next <= base + missed {
                let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
                    .await
                    .ok()??;
                let Ok(Message::Text(t)) = m else { continue };
                let v: serde_json::Value = serde_json::from_str(&t).ok()?;
                if v["offset"].as_u64() != Some(next) {
                    return None;
                }
                next += 1;
            }
            Some((started.elapsed(), ws))
        }));
    }
    let mut report = StormReport {
        missed: a.missed,
        ..StormReport::default()
    };
    let mut last = Duration::ZERO;
    let mut open = Vec::with_capacity(a.storm);
    for t in tasks {
        match t.await.ok().flatten() {
            Some((at, ws)) => {
                report.recovered += 1;
                last = last.max(at);
                open.push(ws);
            }
            None => report.failed += 1,
        }
    }
    report.secs = last.as_secs_f64();
    report.recoveries_per_sec = report.recovered as f64 / report.secs.max(1e-9);
    drop(open);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "storm: {} clients recovered {} messages each in {:.2} s: {:.0} recoveries/s ({} failed)",
            report.recovered, report.missed, report.secs, report.recoveries_per_sec, report.failed
        );
    }
    Ok(())
}

/// Adds one subscriber's deliveries, checked against its channel's answered offsets.
fn score(report: &mut RecoveryReport, acked: &[u64], seen: &[u64]) {
    let mut count: HashMap<u64, u32> = HashMap::with_capacity(seen.len());
    let mut highest = 0u64;
    for &o in seen {
        *count.entry(o).or_default() += 1;
        if o < highest {
            report.out_of_order += 1;
        }
        highest = highest.max(o);
    }
    report.expected += acked.len() as u64;
    for o in acked {
        if count.contains_key(o) {
            report.delivered += 1;
        } else {
            report.lost += 1;
        }
    }
    report.duplicated += count
        .values()
        .map(|&n| u64::from(n.saturating_sub(1)))
        .sum::<u64>();
}

/// Publishes one message to `channel`: its epoch and offset.
async fn warm_up(a: &RecoveryArgs, channel: &str) -> anyhow::Result<(String, u64)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().no_proxy().build()?;
    let url = a
        .publish_url
        .split(',')
        .next()
        .unwrap_or_default()
        .replace("{channel}", channel);
    let mut req = client.post(&url).body("{\"warm_up\":true}");
    if let Some(t) = &a.token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = r.status();
    let body = r.bytes().await?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match (v["epoch"].as_str(), v["offset"].as_u64()) {
        (Some(e), Some(o)) if status.is_success() => Ok((e.to_string(), o)),
        _ => bail!(
            "POST {url} answered {status} {}: is the channel covered by a [[channels]] rule with history_size?",
            String::from_utf8_lossy(&body)
        ),
    }
}

/// Publishes at the rate, channel after channel, recording each answered offset.
async fn publish(a: &RecoveryArgs, names: &[String], shared: &Shared) -> (u64, u64) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(client) = reqwest::Client::builder().no_proxy().build() else {
        return (0, 1);
    };
    let targets: Vec<&str> = a.publish_url.split(',').collect();
    let total = (a.rate * a.duration_secs.min(3_600) as f64) as u64;
    let started = Instant::now();
    let (mut ok, mut failed) = (0u64, 0u64);
    // A few requests in flight keep the rate when one is slow; the offsets stay per channel.
    let mut inflight = futures_util::stream::FuturesUnordered::new();
    for n in 0..total {
        let due = started + Duration::from_secs_f64(n as f64 / a.rate);
        tokio::time::sleep_until(due.into()).await;
        let c = (n as usize) % names.len();
        let url = targets[(n as usize) % targets.len()].replace("{channel}", &names[c]);
        let mut req = client.post(url).body(format!(
            "{{\"n\":{n},\"at\":{}}}",
            crate::scenario::now_us()
        ));
        if let Some(t) = &a.token {
            req = req.bearer_auth(t);
        }
        inflight.push(async move {
            let answer = match req.send().await {
                Ok(r) if r.status().is_success() => r
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()),
                _ => None,
            };
            (c, answer)
        });
        while inflight.len() >= 16 {
            if let Some(done) = inflight.next().await {
                record(shared, done, &mut ok, &mut failed);
            }
        }
    }
    while let Some(done) = inflight.next().await {
        record(shared, done, &mut ok, &mut failed);
    }
    (ok, failed)
}

fn record(
    shared: &Shared,
    (c, answer): (usize, Option<serde_json::Value>),
    ok: &mut u64,
    failed: &mut u64,
) {
    let Some(v) = answer else {
        *failed += 1;
        return;
    };
    let (Some(offset), Some(epoch)) = (v["offset"].as_u64(), v["epoch"].as_str()) else {
        *failed += 1;
        return;
    };
    if let Ok(mut g) = shared.acked[c].lock() {
        g.0.get_or_insert_with(|| epoch.to_string());
        g.1.push(offset);
        *ok += 1;
    }
}

struct Subscriber {
    index: usize,
    channel_index: usize,
    channel: String,
    urls: Vec<String>,
    churn: f64,
    offline_ms: u64,
    recover: bool,
}

impl Subscriber {
    async fn run(self, shared: Arc<Shared>, ready: tokio::sync::mpsc::Sender<()>) -> Seen {
        let mut seen = Seen::default();
        let mut ready = Some(ready);
        let mut attempt = self.index;
        while !shared.stop.load(Ordering::Relaxed) {
            let url = self.url(attempt, &shared, &seen);
            attempt += 1;
            let mut ws = match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok((ws, _)) => ws,
                Err(_) => {
                    shared.connect_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Some(r) = ready.take() {
                let _ = r.send(()).await;
            }
            let stay = self.stay();
            let until = tokio::time::Instant::now() + stay;
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    return seen;
                }
                let leave =
                    shared.churn.load(Ordering::Relaxed) && tokio::time::Instant::now() >= until;
                if leave {
                    break;
                }
                let next = tokio::time::timeout(Duration::from_millis(100), ws.next()).await;
                match next {
                    Err(_) => continue,
                    Ok(Some(Ok(Message::Text(t)))) => self.note(&t, &mut seen, &shared),
                    Ok(Some(Ok(_))) => continue,
                    Ok(_) => break,
                }
            }
            drop(ws);
            if !shared.churn.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
                // Dropped by the server, not by churn: reconnect at once.
            } else if !shared.stop.load(Ordering::Relaxed) {
                let away = crate::scenario::now_us() % (self.offline_ms + 1);
                tokio::time::sleep(Duration::from_millis(away)).await;
            }
            shared.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        seen
    }

    /// How long to stay connected: exponential with mean 1 / churn.
    fn stay(&self) -> Duration {
        if self.churn <= 0.0 {
            return Duration::from_secs(86_400);
        }
        let u = ((crate::scenario::now_us() ^ (self.index as u64).wrapping_mul(0x9e37_79b9))
            % 1_000_000) as f64
            / 1_000_000.0;
        Duration::from_secs_f64((-(1.0 - u).ln() / self.churn).min(3_600.0))
    }

    fn url(&self, attempt: usize, shared: &Shared, seen: &Seen) -> String {
        let mut url = self.urls[attempt % self.urls.len()].replace("{channel}", &self.channel);
        if self.recover {
            let epoch = seen.epoch.clone().or_else(|| {
                shared.acked[self.channel_index]
                    .lock()
                    .ok()
                    .and_then(|g| g.0.clone())
            });
            if let Some(epoch) = epoch {
                let last = seen
                    .offsets
                    .iter()
                    .copied()
                    .max()
                    .unwrap_or(shared.base[self.channel_index]);
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&format!("recover={}:{last}:{epoch}", self.channel));
            }
        }
        url
    }

    fn note(&self, text: &str, seen: &mut Seen, shared: &Shared) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        if v["type"] == "recovery" {
            shared.not_recovered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let (Some(o), Some(e)) = (v["offset"].as_u64(), v["epoch"].as_str()) {
            seen.offsets.push(o);
            if seen.epoch.as_deref() != Some(e) {
                seen.epoch = Some(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_counts_loss_duplicates_and_order() {
        let mut r = RecoveryReport::default();
        score(&mut r, &[1, 2, 3, 4, 5], &[1, 2, 2, 4, 3]);
        assert_eq!((r.expected, r.delivered, r.lost), (5, 4, 1));
        assert_eq!((r.duplicated, r.out_of_order), (1, 1));
    }
}
