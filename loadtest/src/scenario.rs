//! The scenarios: ramp connections, hold them, and (echo) measure round trips.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::dial::{dial, resolve, Ws};
use crate::report::{Percentiles, RunResult};
use crate::Common;

/// What each connection task does once it is open.
#[derive(Clone, Copy)]
enum Work {
    Hold,
    Echo { size: usize, window: usize },
}

struct Shared {
    stop: watch::Receiver<bool>,
    dropped: AtomicU64,
    base: Instant,
}

#[derive(Default)]
struct TaskOutcome {
    rtt: Option<Histogram<u64>>,
    sent: u64,
    received: u64,
    out_of_order: u64,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits; these bounds are constants, so creation cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("histogram"))
}

/// `connect`: ramp and hold.
pub async fn connect(common: &Common, hold: Duration) -> RunResult {
    run(common, hold, Work::Hold, "connect").await
}

/// `echo`: ramp, then round trips for `duration`.
pub async fn echo(common: &Common, duration: Duration, size: usize, window: usize) -> RunResult {
    run(common, duration, Work::Echo { size, window }, "echo").await
}

async fn run(common: &Common, hold: Duration, work: Work, name: &str) -> RunResult {
    let mut result = RunResult {
        scenario: name.into(),
        connections_requested: common.connections,
        ..RunResult::default()
    };
    let addr = match resolve(&common.url).await {
        Ok(a) => a,
        Err(e) => {
            result
                .connect_failures
                .insert(format!("resolve: {e}"), common.connections as u64);
            return result;
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        stop: stop_rx,
        dropped: AtomicU64::new(0),
        base: Instant::now(),
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
    let url = Arc::new(common.url.clone());
    for i in 0..common.connections {
        let due = ramp_started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let source = sources[i % sources.len()];
        let opened_tx = opened_tx.clone();
        let shared = Arc::clone(&shared);
        let url = Arc::clone(&url);
        let mut go = go_rx.clone();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let ws = match dial(&url, addr, source).await {
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
            // Wait until every connection is open, then work.
            let _ = go.wait_for(|g| *g).await;
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

    let window_started = Instant::now();
    let _ = go_tx.send(true);
    tokio::time::sleep(hold).await;
    let _ = stop_tx.send(true);
    let measured = window_started.elapsed();
    let mut rtt = histogram();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok(o) = joined {
            result.sent += o.sent;
            result.received += o.received;
            result.out_of_order += o.out_of_order;
            if let Some(h) = o.rtt {
                let _ = rtt.add(&h);
            }
        }
    }
    tasks.abort_all();
    result.round_trip_latency = Percentiles::from_us(&rtt);
    result.round_trips_per_sec = result.received as f64 / measured.as_secs_f64().max(1e-9);
    result.dropped_while_held = shared.dropped.load(Ordering::Relaxed);
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
        Work::Echo { size, window } => {
            let mut h = histogram();
            let mut seq: u64 = 0;
            let mut expect: u64 = 0;
            let pad = "x".repeat(size);
            let frame = |seq: u64, base: Instant| {
                let ts = base.elapsed().as_nanos() as u64;
                let mut s = format!("{seq:020} {ts:020} ");
                s.push_str(&pad[..size.saturating_sub(s.len())]);
                Message::text(s)
            };
            for _ in 0..window {
                if ws.send(frame(seq, shared.base)).await.is_err() {
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
                            let mut parts = t.split(' ');
                            let got: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(u64::MAX);
                            let ts: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                            if got != expect {
                                outcome.out_of_order += 1;
                            }
                            expect = got.wrapping_add(1);
                            outcome.received += 1;
                            let now = shared.base.elapsed().as_nanos() as u64;
                            let _ = h.record((now.saturating_sub(ts) / 1000).max(1));
                            if stopping {
                                if outcome.received >= seq { break; }
                            } else if ws.send(frame(seq, shared.base)).await.is_err() {
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
            outcome.rtt = Some(h);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    outcome
}

/// Resolves once the stop flag is set (the watch guard never lives across an await).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
