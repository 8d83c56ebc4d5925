//! The processes of a chaos run — redis-server (append-only file on) and three gangway nodes,
//! each reaching Redis through its own [`Proxy`] — and the faults injected into them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::ledger::Ledger;
use super::proxy::Proxy;
use super::Rng;

/// Nodes in the run.
pub const NODES: usize = 3;

/// Cluster timings: short, so a run sees many reaps.
const TIMING: &str = "heartbeat_interval_ms = 200\nnode_ttl_ms = 1000\nrpc_timeout_ms = 1000\n";

/// See the module documentation. Everything is killed when it is dropped.
pub struct Cluster {
    gangway: PathBuf,
    dir: PathBuf,
    redis_port: u16,
    redis: Mutex<Option<Child>>,
    proxies: Vec<Proxy>,
    nodes: Mutex<Vec<Option<Child>>>,
    websocket: Vec<String>,
    control: Vec<String>,
    http: reqwest::Client,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status();
}

impl Cluster {
    /// Starts Redis, the proxies and the nodes; returns once every node is ready.
    pub async fn start(gangway: &Path, dir: &Path, backend_port: u16) -> anyhow::Result<Cluster> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let redis_port = free_port()?;
        let mut proxies = Vec::new();
        let (mut websocket, mut control) = (Vec::new(), Vec::new());
        for _ in 0..NODES {
            proxies.push(Proxy::start(redis_port).await?);
            websocket.push(format!("127.0.0.1:{}", free_port()?));
            control.push(format!("127.0.0.1:{}", free_port()?));
        }
        for (i, proxy) in proxies.iter().enumerate() {
            std::fs::write(
                dir.join(format!("node-{i}.toml")),
                format!(
                    "[listen]\nwebsocket = \"{}\"\ncontrol = \"{}\"\n\
                     [api]\nwebhook_secret = \"chaos-run-webhook-secret\"\n\
                     [routes.\"$connect\"]\nintegration = \"http\"\nurl = \"http://127.0.0.1:{backend_port}/connect\"\n\
                     [routes.\"$disconnect\"]\nintegration = \"http\"\nurl = \"http://127.0.0.1:{backend_port}/disconnect\"\n\
                     [cluster]\nredis_url = \"redis://127.0.0.1:{}\"\nnode_id = \"chaos-{i}\"\n{TIMING}\
                     [log]\nlevel = \"info\"\n",
                    websocket[i], control[i], proxy.port
                ),
            )
            .context("node config")?;
        }
        let cluster = Cluster {
            gangway: gangway.to_path_buf(),
            dir: dir.to_path_buf(),
            redis_port,
            redis: Mutex::new(None),
            proxies,
            nodes: Mutex::new((0..NODES).map(|_| None).collect()),
            websocket,
            control,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(2))
                .build()?,
        };
        cluster.start_redis()?;
        for i in 0..NODES {
            cluster.start_node(i)?;
        }
        if !cluster.wait_ready(Duration::from_secs(30)).await {
            anyhow::bail!("the nodes did not become ready; logs in {}", dir.display());
        }
        Ok(cluster)
    }

    /// The nodes' WebSocket addresses.
    pub fn websocket_addrs(&self) -> &[String] {
        &self.websocket
    }

    /// The nodes' control addresses.
    pub fn control_addrs(&self) -> &[String] {
        &self.control
    }

    fn nodes(&self) -> MutexGuard<'_, Vec<Option<Child>>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn start_redis(&self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.redis_port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server (scripts/test.sh installs it)")?;
        *self
            .redis
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.redis_port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn kill_redis(&self) {
        if let Some(mut c) = self
            .redis
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn start_node(&self, i: usize) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{i}.log")))?;
        let child = Command::new(&self.gangway)
            .arg("--config")
            .arg(self.dir.join(format!("node-{i}.toml")))
            .args(["--log-format", "json"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("start gangway")?;
        self.nodes()[i] = Some(child);
        Ok(())
    }

    fn kill_node(&self, i: usize) {
        if let Some(mut c) = self.nodes()[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pid(&self, i: usize) -> Option<u32> {
        self.nodes()[i].as_ref().map(Child::id)
    }

    async fn ready(&self, i: usize) -> bool {
        let url = format!("http://{}/readyz", self.control[i]);
        matches!(self.http.get(url).send().await, Ok(r) if r.status() == 200)
    }

    /// Waits until every node answers `/readyz` 200; whether they did within `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let mut all = true;
            for i in 0..NODES {
                all &= self.ready(i).await;
            }
            if all {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops everything.
    pub async fn stop(&self) {
        for i in 0..NODES {
            if let Some(pid) = self.pid(i) {
                signal(pid, "CONT");
            }
            self.kill_node(i);
        }
        self.kill_redis();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..NODES {
            self.kill_node(i);
        }
        self.kill_redis();
    }
}

/// Faults injected, by kind.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    killed: usize,
    partitioned: usize,
    redis_restarted: usize,
    paused: usize,
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (node SIGKILLed and restarted {}, node cut off from Redis {}, Redis restarted with its data {}, node paused {})",
            self.killed + self.partitioned + self.redis_restarted + self.paused,
            self.killed,
            self.partitioned,
            self.redis_restarted,
            self.paused
        )
    }
}

/// Injects one fault at a time, every few seconds, until `until`; then heals everything.
pub async fn inject_faults(
    cluster: Arc<Cluster>,
    _ledger: Arc<Ledger>,
    until: Instant,
    mut rng: Rng,
) -> Faults {
    let mut faults = Faults::default();
    let started = Instant::now();
    loop {
        tokio::time::sleep(rng.millis(3_000, 7_000)).await;
        if Instant::now() >= until {
            break;
        }
        let i = rng.below(NODES as u64) as usize;
        let at = started.elapsed().as_secs_f64();
        match rng.below(4) {
            0 => {
                eprintln!("chaos: {at:7.1}s SIGKILL node {i}, restart it");
                cluster.kill_node(i);
                tokio::time::sleep(rng.millis(500, 3_000)).await;
                if let Err(e) = cluster.start_node(i) {
                    eprintln!("chaos: cannot restart node {i}: {e}");
                }
                faults.killed += 1;
            }
            1 => {
                let hole = rng.millis(2_000, 6_000);
                eprintln!("chaos: {at:7.1}s node {i} cut off from Redis for {hole:?}");
                cluster.proxies[i].black_hole();
                tokio::time::sleep(hole).await;
                cluster.proxies[i].heal();
                faults.partitioned += 1;
            }
            2 => {
                let down = rng.millis(500, 4_000);
                eprintln!("chaos: {at:7.1}s Redis killed, restarted with its data after {down:?}");
                cluster.kill_redis();
                tokio::time::sleep(down).await;
                if let Err(e) = cluster.start_redis() {
                    eprintln!("chaos: cannot restart Redis: {e}");
                }
                faults.redis_restarted += 1;
            }
            _ => {
                // Shorter than the TTL less the fencing margin: a pause the cluster must absorb
                // (a frozen node past its TTL is tests/integration/partitions.rs's case).
                let pause = rng.millis(100, 500);
                eprintln!("chaos: {at:7.1}s node {i} paused for {pause:?}");
                if let Some(pid) = cluster.pid(i) {
                    signal(pid, "STOP");
                    tokio::time::sleep(pause).await;
                    signal(pid, "CONT");
                }
                faults.paused += 1;
            }
        }
        // The next fault starts from a healthy cluster.
        if !cluster.wait_ready(Duration::from_secs(30)).await {
            eprintln!("chaos: a node did not become ready again within 30 s");
        }
    }
    for p in &cluster.proxies {
        p.heal();
    }
    faults
}
