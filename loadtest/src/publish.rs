//! The publishing side of `fanout` and `direct`: HTTP POSTs of stamped messages over
//! keep-alive connections, at a set rate or as fast as `concurrency` requests in flight allow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::scenario::{histogram, stamp, DriverResult};

/// One publish destination: a URL and the deliveries one request to it should cause.
#[derive(Debug, Clone)]
pub struct Target {
    /// Full request URL.
    pub url: String,
    /// Receivers one request reaches.
    pub deliveries: u64,
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct Publish {
    /// Requests per second over all targets; 0 means as fast as possible.
    pub rate: f64,
    /// Requests in flight.
    pub concurrency: usize,
    /// Message size, bytes.
    pub size: usize,
    /// `Authorization: Bearer` token, if the control API wants one.
    pub token: Option<String>,
}

/// Publishes round-robin over `targets` for `duration`.
pub async fn drive(targets: Vec<Target>, how: Publish, duration: Duration) -> DriverResult {
    // The workspace builds reqwest without a built-in TLS provider; plain http needs none, but
    // the builder insists on one being installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(how.concurrency.max(1))
        .tcp_nodelay(true)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            let mut r = DriverResult::default();
            r.errors.insert(format!("client: {e}"), 1);
            return r;
        }
    };
    let targets = Arc::new(targets);
    let seqs: Arc<Vec<AtomicU64>> =
        Arc::new((0..targets.len()).map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicU64::new(0));
    let result = Arc::new(Mutex::new(DriverResult {
        request_latency: Some(histogram()),
        published_per_target: vec![0; targets.len()],
        ..DriverResult::default()
    }));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..how.concurrency.max(1) {
        let (client, targets, seqs, next, result, how) = (
            client.clone(),
            Arc::clone(&targets),
            Arc::clone(&seqs),
            Arc::clone(&next),
            Arc::clone(&result),
            how.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if how.rate > 0.0 {
                    let due = started + Duration::from_secs_f64(n as f64 / how.rate);
                    if due > started + duration {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                } else if started.elapsed() >= duration {
                    break;
                }
                let t = (n % targets.len() as u64) as usize;
                let seq = seqs[t].fetch_add(1, Ordering::Relaxed);
                let mut req = client
                    .post(&targets[t].url)
                    .body(stamp(t as u64, seq, how.size));
                if let Some(token) = &how.token {
                    req = req.bearer_auth(token);
                }
                let t0 = Instant::now();
                let outcome = match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        Ok(())
                    }
                    Ok(r) => Err(format!("http {}", r.status().as_u16())),
                    Err(e) => Err(if e.is_connect() {
                        "connect".into()
                    } else {
                        "request".into()
                    }),
                };
                let elapsed = t0.elapsed();
                if let Ok(mut r) = result.lock() {
                    match outcome {
                        Ok(()) => {
                            r.published += 1;
                            if let Some(p) = r.published_per_target.get_mut(t) {
                                *p += 1;
                            }
                            r.expected_deliveries += targets[t].deliveries;
                            if let Some(h) = r.request_latency.as_mut() {
                                let _ = h.record(elapsed.as_micros().max(1) as u64);
                            }
                        }
                        Err(e) => *r.errors.entry(e).or_default() += 1,
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let mut r = match Arc::try_unwrap(result) {
        Ok(m) => m.into_inner().unwrap_or_default(),
        Err(shared) => shared
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default(),
    };
    r.elapsed = started.elapsed();
    r
}
