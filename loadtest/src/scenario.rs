//! The engine every scenario runs on: ramp connections, then work (hold, echo, or receive while
//! a driver publishes), then drain and report.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::dial::{authority, dial, resolve, Ws};
use crate::report::{Percentiles, RunResult};
use crate::Common;

/// What each connection does once every connection is open.
#[derive(Clone, Copy)]
pub enum Work {
    /// Stay connected, answer pings.
    Hold,
    /// Send, wait for the echo, repeat (`window` in flight).
    Echo {
        /// Message size.
        size: usize,
        /// Messages in flight.
        window: usize,
    },
    /// Receive stamped messages sent by a driver (publishes or pushes).
    Receive,
}

/// What a driver (the publishing side) reports.
#[derive(Debug, Default)]
pub struct DriverResult {
    /// Requests that succeeded.
    pub published: u64,
    /// Deliveries those requests should cause.
    pub expected_deliveries: u64,
    /// Failed requests, by cause.
    pub errors: BTreeMap<String, u64>,
    /// Request latency, µs.
    pub request_latency: Option<Histogram<u64>>,
    /// How long the driver ran.
    pub elapsed: Duration,
    /// Successful requests to each target, in target order (fanout).
    pub published_per_target: Vec<u64>,
}

struct Shared {
    timeline: crate::timeline::Timeline,
    stop: watch::Receiver<bool>,
    dropped: AtomicU64,
    received: AtomicU64,
    progress: Option<indicatif::ProgressBar>,
}

#[derive(Default)]
struct TaskOutcome {
    latency: Option<Histogram<u64>>,
    sent: u64,
    received: u64,
    out_of_order: u64,
    duplicates: u64,
}

/// A histogram of microseconds, 1 µs to 60 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("histogram"))
}

/// Microseconds since the Unix epoch: the timestamp every stamped message carries.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A stamped message body: `<stream> <seq> <send time µs> ` padded to `size` bytes.
pub fn stamp(stream: u64, seq: u64, size: usize) -> String {
    let mut s = format!("{stream:010} {seq:020} {:020} ", now_us());
    while s.len() < size {
        s.push('x');
    }
    s
}

fn parse_stamp(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.split(' ');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

/// Runs one scenario. `url_for(i)` is connection `i`'s URL; `driver`, if any, runs for `hold`
/// once every connection is open, and its expected deliveries decide how long to drain.
pub async fn run<F, Fut>(
    common: &Common,
    name: &str,
    work: Work,
    url_for: &(dyn Fn(usize) -> String + Sync),
    hold: Duration,
    driver: Option<F>,
) -> RunResult
where
    F: FnOnce(Duration) -> Fut,
    Fut: Future<Output = DriverResult>,
{
    let mut result = RunResult {
        scenario: name.into(),
        connections_requested: common.connections,
        ..RunResult::default()
    };
    // Resolve each distinct server once (connections may be spread over several).
    let mut addrs = std::collections::HashMap::new();
    for i in 0..common.connections.min(64) {
        let url = url_for(i);
        if let std::collections::hash_map::Entry::Vacant(e) =
            addrs.entry(authority(&url).to_string())
        {
            match resolve(&url).await {
                Ok(a) => {
                    e.insert(a);
                }
                Err(err) => {
                    result
                        .connect_failures
                        .insert(format!("resolve: {err}"), common.connections as u64);
                    return result;
                }
            }
        }
    }
    let addrs = Arc::new(addrs);
    let tls = if (0..common.connections.min(64)).any(|i| url_for(i).starts_with("wss://")) {
        match crate::dial::tls_config(common.ca_file.as_deref(), common.tls_resume) {
            Ok(c) => Some(c),
            Err(e) => {
                result
                    .connect_failures
                    .insert(format!("tls: {e:#}"), common.connections as u64);
                return result;
            }
        }
    } else {
        None
    };
    let progress = (!common.json && !common.quiet).then(|| {
        let bar = indicatif::ProgressBar::new(common.connections as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>12} [{bar:30}] {pos}/{len} {prefix} {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message("connecting");
        spawn_rate_meter(bar.clone());
        bar
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Ramp (at the connect rate) + the run + draining, in seconds.
    let span = common.connections as u64 / common.connect_rate.max(1) as u64 + hold.as_secs() + 30;
    let shared = Arc::new(Shared {
        timeline: crate::timeline::Timeline::new(span as usize),
        stop: stop_rx,
        dropped: AtomicU64::new(0),
        received: AtomicU64::new(0),
        progress: progress.clone(),
    });
    let (opened_tx, mut opened_rx) = mpsc::channel::<Result<Duration, String>>(1024);
    let (go_tx, go_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let ramp_started = Instant::now();
    let rate = common.connect_rate.max(1) as f64;
    let sources: Vec<Option<IpAddr>> = if common.source_ips.is_empty() {
        vec![None]
    } else {
        common.source_ips.iter().copied().map(Some).collect()
    };
    for i in 0..common.connections {
        let due = ramp_started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let source = sources[i % sources.len()];
        let opened_tx = opened_tx.clone();
        let shared = Arc::clone(&shared);
        let url = url_for(i);
        let mut go = go_rx.clone();
        let addrs = Arc::clone(&addrs);
        let tls = tls.clone();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let addr = match addrs.get(authority(&url)) {
                Some(a) => *a,
                None => match resolve(&url).await {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = opened_tx.send(Err(format!("resolve: {e}"))).await;
                        return TaskOutcome::default();
                    }
                },
            };
            let dialed = dial(&url, addr, source, tls.as_ref()).await;
            // Counted as each dial ends, not when the collector gets to it: the bar shows the
            // real connect rate during the ramp.
            if let Some(p) = &shared.progress {
                p.inc(1);
            }
            let ws = match dialed {
                Ok(ws) => {
                    let _ = opened_tx.send(Ok(t0.elapsed())).await;
                    ws
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e)).await;
                    return TaskOutcome::default();
                }
            };
            drop(opened_tx);
            // Receivers read from the start; the others wait until every connection is open.
            if !matches!(work, Work::Receive) {
                let _ = go.wait_for(|g| *g).await;
            }
            work_on(ws, work, &shared).await
        });
    }
    drop(opened_tx);
    let mut latency = histogram();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut established = 0;
    while let Some(r) = opened_rx.recv().await {
        match r {
            Ok(d) => {
                established += 1;
                let _ = latency.record(d.as_micros().max(1) as u64);
            }
            Err(e) => *failures.entry(e).or_default() += 1,
        }
    }
    let ramp = ramp_started.elapsed();
    result.connections_established = established;
    result.connect_failures = failures;
    result.connect_latency = Percentiles::from_us(&latency);
    result.connects_per_sec = established as f64 / ramp.as_secs_f64().max(1e-9);

    if let Some(p) = &progress {
        // The run: messages received so far, their rate, and the time since it started.
        p.set_style(
            indicatif::ProgressStyle::with_template("{msg:>12} {pos} received {prefix} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        p.set_message(name.to_string());
        p.set_position(0);
        p.set_prefix("");
        p.reset_elapsed();
    }
    let window_started = Instant::now();
    let _ = go_tx.send(true);
    let driven = match driver {
        Some(d) => Some(d(hold).await),
        None => {
            tokio::time::sleep(hold).await;
            None
        }
    };
    let measured = window_started.elapsed();
    if let Some(d) = &driven {
        // Drain: wait (up to 5 s) for the deliveries the driver caused.
        let deadline = Instant::now() + Duration::from_secs(5);
        while shared.received.load(Ordering::Relaxed) < d.expected_deliveries
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let last_delivery = window_started.elapsed();
    let _ = stop_tx.send(true);
    let mut rtt = histogram();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok(o) = joined {
            result.sent += o.sent;
            result.received += o.received;
            result.out_of_order += o.out_of_order;
            result.duplicates += o.duplicates;
            if let Some(h) = o.latency {
                let _ = rtt.add(&h);
            }
        }
    }
    tasks.abort_all();
    if let Some(p) = &progress {
        p.finish_and_clear();
    }
    result.dropped_while_held = shared.dropped.load(Ordering::Relaxed);
    result.timeline = shared.timeline.seconds();
    match driven {
        None => {
            result.round_trip_latency = Percentiles::from_us(&rtt);
            result.round_trips_per_sec = result.received as f64 / measured.as_secs_f64().max(1e-9);
        }
        Some(d) => {
            result.published = d.published;
            result.publish_errors = d.errors;
            result.publishes_per_sec = d.published as f64 / d.elapsed.as_secs_f64().max(1e-9);
            if let Some(h) = &d.request_latency {
                result.publish_latency = Percentiles::from_us(h);
            }
            result.expected_deliveries = d.expected_deliveries;
            result.lost = d.expected_deliveries.saturating_sub(result.received);
            result.deliveries_per_sec =
                result.received as f64 / last_delivery.as_secs_f64().max(1e-9);
            result.delivery_latency = Percentiles::from_us(&rtt);
            if common.export_histogram {
                result.latency_histogram = crate::report::histogram_counts(&rtt);
            }
        }
    }
    result
}

async fn work_on(mut ws: Ws, work: Work, shared: &Shared) -> TaskOutcome {
    let mut stop = shared.stop.clone();
    let mut outcome = TaskOutcome::default();
    match work {
        Work::Hold => loop {
            tokio::select! {
                _ = stopped(&mut stop) => break,
                m = ws.next() => match m {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        shared.dropped.fetch_add(1, Ordering::Relaxed);
                        return outcome;
                    }
                    Some(Ok(_)) => {}
                },
            }
        },
        Work::Receive => {
            let mut h = histogram();
            let mut last_seq: Option<u64> = None;
            let mut seen: Vec<u64> = Vec::new();
            loop {
                tokio::select! {
                    _ = stopped(&mut stop) => break,
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            let Some((_, seq, ts)) = parse_stamp(t.as_str()) else { continue };
                            let word = (seq / 64) as usize;
                            if seen.len() <= word {
                                seen.resize(word + 1, 0);
                            }
                            if seen[word] & (1 << (seq % 64)) != 0 {
                                outcome.duplicates += 1;
                                continue;
                            }
                            seen[word] |= 1 << (seq % 64);
                            if last_seq.is_some_and(|l| seq < l) {
                                outcome.out_of_order += 1;
                            }
                            last_seq = Some(last_seq.map_or(seq, |l| l.max(seq)));
                            outcome.received += 1;
                            shared.received.fetch_add(1, Ordering::Relaxed);
                            let latency = now_us().saturating_sub(ts).max(1);
                            let _ = h.record(latency);
                            shared.timeline.record(latency);
                            if let Some(p) = &shared.progress {
                                p.inc(1);
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            shared.dropped.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Some(Ok(_)) => {}
                    },
                }
            }
            outcome.latency = Some(h);
        }
        Work::Echo { size, window } => {
            let mut h = histogram();
            let mut seq: u64 = 0;
            let mut expect: u64 = 0;
            for _ in 0..window {
                if ws.send(Message::text(stamp(0, seq, size))).await.is_err() {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    return outcome;
                }
                seq += 1;
            }
            let mut stopping = false;
            loop {
                tokio::select! {
                    _ = stopped(&mut stop), if !stopping => stopping = true,
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            let (got, ts) = parse_stamp(t.as_str()).map(|(_, s, ts)| (s, ts)).unwrap_or((u64::MAX, 0));
                            if got != expect {
                                outcome.out_of_order += 1;
                            }
                            expect = got.wrapping_add(1);
                            outcome.received += 1;
                            let latency = now_us().saturating_sub(ts).max(1);
                            let _ = h.record(latency);
                            shared.timeline.record(latency);
                            if stopping {
                                if outcome.received >= seq { break; }
                            } else if ws.send(Message::text(stamp(0, seq, size))).await.is_err() {
                                shared.dropped.fetch_add(1, Ordering::Relaxed);
                                break;
                            } else {
                                seq += 1;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            shared.dropped.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Some(Ok(_)) => {}
                    },
                }
            }
            outcome.sent = seq;
            outcome.latency = Some(h);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    outcome
}

/// Resolves once the stop flag is set (the watch guard never lives across an await).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Keeps the bar's prefix at its true average rate (position over elapsed time, since the
/// last `reset_elapsed`), four times a second, until the bar is finished. indicatif's own
/// `{per_sec}` is a short moving estimate that reads near zero when counts arrive in bursts.
fn spawn_rate_meter(bar: indicatif::ProgressBar) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        while !bar.is_finished() {
            tick.tick().await;
            let secs = bar.elapsed().as_secs_f64();
            if secs > 0.0 {
                bar.set_prefix(format!("{:.0}/s", bar.position() as f64 / secs));
            }
        }
    });
}
