//! `chaos`: the `$disconnect` contract (ARCHITECTURE.md) under faults, end to end.
//!
//! Starts redis-server (append-only file on), three gangway nodes (each reaching Redis through a
//! proxy this run controls) and a backend that records every `$connect` and `$disconnect`. Keeps
//! clients connecting (each put in a channel by `$connect`), receiving pushes and publishes, and
//! leaving; and, one at a time at random intervals, injects faults: a node SIGKILLed and
//! restarted under the same id, a node's path to Redis black-holed and healed, Redis killed and
//! restarted with its data, a node paused (SIGSTOP/SIGCONT) for less than its TTL.
//!
//! At the end every open client gets a push through another node (200 and arrives), every
//! client closes, and the contract is checked for every connection ever opened: at least one
//! `$disconnect`, every copy with the same `requestId`, none before the client saw its
//! connection close; and every push answered 200 reached its client unless a fault closed that
//! connection. Prints a summary; exits non-zero on any violation. Loopback only.

mod cluster;
mod ledger;
mod proxy;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;

use cluster::Cluster;
use ledger::{Closed, Ledger};

/// `chaos` options.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// How long clients churn and faults are injected.
    #[arg(long, default_value_t = 1.0)]
    pub minutes: f64,
    /// The gangway binary.
    #[arg(long)]
    pub gangway: PathBuf,
    /// Clients connected at any time.
    #[arg(long, default_value_t = 2000)]
    pub clients: usize,
    /// Pushes per second (to random open clients, through random nodes).
    #[arg(long, default_value_t = 200.0)]
    pub push_rate: f64,
    /// Seed for the fault schedule and client choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Working directory for configs, logs and Redis data (default: a fresh temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// A small xorshift generator: the run needs variety, not cryptographic randomness.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }
}

/// Channels clients are spread over.
const ROOMS: u64 = 20;

/// Runs the chaos scenario; the process exit code is 1 on any violation.
pub async fn run(args: ChaosArgs) -> anyhow::Result<bool> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("gangway-chaos-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).context("working directory")?;
    let ledger = Arc::new(Ledger::default());
    let backend_port = ledger::serve_backend(Arc::clone(&ledger)).await?;
    let cluster = Arc::new(Cluster::start(&args.gangway, &dir, backend_port).await?);
    eprintln!(
        "chaos: seed {seed}, {} clients, {:.1} min, nodes {:?}, logs in {}",
        args.clients,
        args.minutes,
        cluster.websocket_addrs(),
        dir.display()
    );
    let churn_until = Instant::now() + Duration::from_secs_f64(args.minutes.max(0.1) * 60.0);
    let stop_churn = Arc::new(AtomicBool::new(false));
    let next_index = Arc::new(AtomicU64::new(0));
    // rustls needs a process-wide crypto provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;

    let mut clients = Vec::new();
    for slot in 0..args.clients {
        clients.push(tokio::spawn(client_slot(
            Arc::clone(&cluster),
            Arc::clone(&ledger),
            Arc::clone(&stop_churn),
            Arc::clone(&next_index),
            Rng::new(seed ^ (slot as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        )));
    }
    let pusher = tokio::spawn(push_loop(
        Arc::clone(&cluster),
        Arc::clone(&ledger),
        http.clone(),
        args.push_rate,
        churn_until,
        Rng::new(seed ^ 0xA5A5),
    ));
    let publisher = tokio::spawn(publish_loop(
        Arc::clone(&cluster),
        Arc::clone(&ledger),
        http.clone(),
        churn_until,
        Rng::new(seed ^ 0x5A5A),
    ));
    let faults = cluster::inject_faults(
        Arc::clone(&cluster),
        Arc::clone(&ledger),
        churn_until,
        Rng::new(seed ^ 0xF00D),
    )
    .await;
    let _ = pusher.await;
    let _ = publisher.await;

    // Settle: no more faults; every node ready again.
    cluster.wait_ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_churn.store(true, Ordering::SeqCst);
    // Every open client gets a push through another node: 200, and it arrives.
    let open = ledger.open_connections();
    let mut final_ok = 0usize;
    for (id, node) in &open {
        let via = (node + 1) % cluster::NODES;
        let token = format!("final-{id}");
        let status = push(&http, &cluster, via, id, &token).await;
        ledger.pushed(id, &token, status, true);
        if status == Some(200) {
            final_ok += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Every client leaves; their $disconnect events (and any late duplicates) arrive.
    ledger.close_all_clients();
    for c in &clients {
        c.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ledger.every_closed_reported() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let summary = ledger.check(&faults, open.len(), final_ok);
    println!("{summary}");
    cluster.stop().await;
    Ok(summary.violations == 0)
}

/// One client slot: connects, lives a while, leaves, again, until the churn stops.
async fn client_slot(
    cluster: Arc<Cluster>,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    next_index: Arc<AtomicU64>,
    mut rng: Rng,
) {
    // Spread the first connections over a couple of seconds.
    tokio::time::sleep(rng.millis(0, 2000)).await;
    while !stop.load(Ordering::SeqCst) {
        let node = rng.below(cluster::NODES as u64) as usize;
        let index = next_index.fetch_add(1, Ordering::SeqCst);
        let room = rng.below(ROOMS);
        let url = format!(
            "ws://{}/?i={index}&ch=room-{room}",
            cluster.websocket_addrs()[node]
        );
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(&url),
        )
        .await;
        let mut ws = match connected {
            Ok(Ok((ws, _))) => ws,
            _ => {
                tokio::time::sleep(rng.millis(100, 500)).await;
                continue;
            }
        };
        // The node called $connect before it answered 101.
        let Some(id) = ledger.id_of(index) else {
            let _ = ws.close(None).await;
            continue;
        };
        ledger.opened(&id, node);
        let lifetime = rng.millis(3_000, 30_000);
        let leave_at = tokio::time::Instant::now() + lifetime;
        let mut leaving = false;
        let mut staying = false;
        let closed = loop {
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => ledger.received(t.as_str()),
                    Some(Ok(Message::Close(f))) => {
                        break Closed::ByServer(f.map_or(1005, |f| u16::from(f.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break Closed::ByServer(1006),
                },
                () = tokio::time::sleep_until(leave_at), if !leaving && !staying => {
                    if stop.load(Ordering::SeqCst) {
                        // The churn stopped: stay for the final check.
                        staying = true;
                    } else {
                        // Pushers stop choosing it; pushes already answered still arrive.
                        leaving = true;
                        ledger.leaving(&id);
                    }
                }
                () = tokio::time::sleep_until(leave_at + Duration::from_secs(1)), if leaving => {
                    break Closed::ByClient;
                }
            }
        };
        ledger.closed(&id, closed);
        if closed == Closed::ByClient {
            let _ = ws.close(None).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        ledger.received(t.as_str());
                    }
                }
            })
            .await;
        }
        tokio::time::sleep(rng.millis(0, 300)).await;
    }
}

async fn push(
    http: &reqwest::Client,
    cluster: &Cluster,
    node: usize,
    id: &str,
    token: &str,
) -> Option<u16> {
    let url = format!("http://{}/@connections/{id}", cluster.control_addrs()[node]);
    http.post(url)
        .body(token.to_string())
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Pushes to random open clients through random nodes.
async fn push_loop(
    cluster: Arc<Cluster>,
    ledger: Arc<Ledger>,
    http: reqwest::Client,
    rate: f64,
    until: Instant,
    mut rng: Rng,
) {
    let gap = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let mut n = 0u64;
    let inflight = Arc::new(tokio::sync::Semaphore::new(64));
    while Instant::now() < until {
        tokio::time::sleep(gap).await;
        let Some(id) = ledger.random_open(&mut rng) else {
            continue;
        };
        let Ok(permit) = Arc::clone(&inflight).acquire_owned().await else {
            break;
        };
        n += 1;
        let token = format!("push-{n}");
        let node = rng.below(cluster::NODES as u64) as usize;
        let (c, l, h) = (Arc::clone(&cluster), Arc::clone(&ledger), http.clone());
        tokio::spawn(async move {
            let status = push(&h, &c, node, &id, &token).await;
            l.pushed(&id, &token, status, false);
            drop(permit);
        });
    }
    let _ = inflight.acquire_many(64).await;
}

/// Publishes to random rooms through random nodes, five a second.
async fn publish_loop(
    cluster: Arc<Cluster>,
    ledger: Arc<Ledger>,
    http: reqwest::Client,
    until: Instant,
    mut rng: Rng,
) {
    let mut n = 0u64;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        n += 1;
        let node = rng.below(cluster::NODES as u64) as usize;
        let url = format!(
            "http://{}/@channels/room-{}",
            cluster.control_addrs()[node],
            rng.below(ROOMS)
        );
        let status = http
            .post(url)
            .body(format!("publish-{n}"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        ledger.published(status);
    }
}
