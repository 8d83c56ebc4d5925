//! Test support: real nodes on ephemeral ports, a real HTTP backend that records every webhook
//! call, and real WebSocket clients.

mod control;
mod proxy;

pub use control::Control;
pub use proxy::Proxy;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gangway::{GatewayConfig, Node};
use gangway_broker::ConfigBuilder;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The webhook secret test nodes sign with.
pub const SECRET: &str = "test-secret";

/// A WebSocket client connection.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts a node from TOML text; both listeners on 127.0.0.1:0.
pub async fn node(toml: &str) -> Node {
    let config = config(toml);
    Node::start(config).await.expect("node starts")
}

/// Parses test TOML with ephemeral listeners and the test secret.
pub fn config(toml: &str) -> GatewayConfig {
    let mut b = ConfigBuilder::new()
        .file("secret", &format!("[api]\nwebhook_secret = \"{SECRET}\"\n"))
        .file("test", toml);
    b.set("listen", "websocket", "127.0.0.1:0".into());
    b.set("listen", "control", "127.0.0.1:0".into());
    GatewayConfig::build(b).expect("valid test config")
}

/// The WebSocket URL of a node, with `path`.
pub fn ws_url(node: &Node, path: &str) -> String {
    format!("ws://{}{}", node.websocket_addr, path)
}

/// The control-API base URL of a node.
pub fn control_url(node: &Node) -> String {
    format!("http://{}", node.control_addr)
}

/// Connects a WebSocket client to `/`.
pub async fn connect(node: &Node) -> Client {
    let (ws, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::connect_async(ws_url(node, "/")),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    ws
}

/// Connects a client and returns it with the id the node gave it.
pub async fn connect_with_id(node: &Node) -> (Client, String) {
    let before = node.broker.connection_ids();
    let ws = connect(node).await;
    eventually("registered", || {
        node.broker.connection_count() > before.len()
    })
    .await;
    let id = node
        .broker
        .connection_ids()
        .into_iter()
        .find(|id| !before.contains(id))
        .expect("new id");
    (ws, id)
}

/// The next data or close message, skipping pings and pongs.
pub async fn next_message(ws: &mut Client) -> Message {
    loop {
        let m = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("message in time")
            .expect("stream open")
            .expect("valid frame");
        if !matches!(m, Message::Ping(_) | Message::Pong(_)) {
            return m;
        }
    }
}

/// The next text message, as JSON.
pub async fn next_json(ws: &mut Client) -> serde_json::Value {
    match next_message(ws).await {
        Message::Text(t) => serde_json::from_str(t.as_str()).expect("json text frame"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Reads until the server's close frame; returns its code and reason.
pub async fn expect_close(ws: &mut Client) -> (u16, String) {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error before close frame: {e}"),
            None => panic!("stream ended without a close frame"),
        }
    }
}

/// Sends a text message.
pub async fn send_text(ws: &mut Client, text: &str) {
    ws.send(Message::text(text.to_string()))
        .await
        .expect("send");
}

/// One webhook call the backend received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Request path.
    pub path: String,
    /// Request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Bytes,
    /// Body as JSON.
    pub event: serde_json::Value,
    /// When it arrived.
    pub received: std::time::Instant,
}

impl Call {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `requestContext.eventType`.
    pub fn event_type(&self) -> &str {
        self.event["requestContext"]["eventType"]
            .as_str()
            .unwrap_or("")
    }

    /// `requestContext.connectionId`.
    pub fn connection_id(&self) -> String {
        self.event["requestContext"]["connectionId"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// What the backend answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
    /// Delay before answering.
    pub delay: Duration,
}

impl Reply {
    /// 200 with this body.
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// This status, empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::ok("")
        }
    }

    /// Adds a delay.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Adds a header.
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Responder = dyn Fn(&Call, usize) -> Reply + Send + Sync;

/// A real HTTP backend on 127.0.0.1:0 that records every call.
#[derive(Clone)]
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    arrived: Arc<Notify>,
}

impl Backend {
    /// A backend that answers 200 with an empty body.
    pub async fn start() -> Backend {
        Backend::with(|_, _| Reply::ok("")).await
    }

    /// A backend that answers with `respond(call, index_of_call)`.
    pub async fn with(respond: impl Fn(&Call, usize) -> Reply + Send + Sync + 'static) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let respond: Arc<Responder> = Arc::new(respond);
        let backend = Backend {
            addr,
            calls: Arc::clone(&calls),
            arrived: Arc::clone(&arrived),
        };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let calls = Arc::clone(&calls);
                let arrived = Arc::clone(&arrived);
                let respond = Arc::clone(&respond);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let calls = Arc::clone(&calls);
                        let arrived = Arc::clone(&arrived);
                        let respond = Arc::clone(&respond);
                        async move {
                            let path = req.uri().path().to_string();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                                })
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let event =
                                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                            let call = Call {
                                path,
                                headers,
                                body,
                                event,
                                received: std::time::Instant::now(),
                            };
                            let index = {
                                let mut c = calls.lock().expect("lock");
                                c.push(call.clone());
                                c.len() - 1
                            };
                            arrived.notify_waiters();
                            let reply = respond(&call, index);
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            let mut resp = Response::builder().status(reply.status);
                            for (k, v) in &reply.headers {
                                resp = resp.header(k, v);
                            }
                            Ok::<_, Infallible>(
                                resp.body(Full::new(Bytes::from(reply.body)))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        backend
    }

    /// The URL of `path` on this backend.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }

    /// Waits until `pred` holds for the recorded calls; returns them.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let notified = self.arrived.notified();
            {
                let calls = self.calls();
                if pred(&calls) {
                    return calls;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let calls = self.calls();
                if pred(&calls) {
                    return calls;
                }
                panic!(
                    "timed out waiting for {what}; calls: {:#?}",
                    calls.iter().map(|c| &c.event).collect::<Vec<_>>()
                );
            }
        }
    }

    /// Waits for the `n`-th call (1-based) of `event_type`, and returns it.
    pub async fn wait_event(&self, event_type: &str, n: usize) -> Call {
        let calls = self
            .wait_for(&format!("{n} {event_type} event(s)"), |c| {
                c.iter().filter(|c| c.event_type() == event_type).count() >= n
            })
            .await;
        calls
            .into_iter()
            .filter(|c| c.event_type() == event_type)
            .nth(n - 1)
            .expect("event")
    }
}

/// An HTTP client for the control API (no proxy, keep-alive).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// The node's `/metrics` page as text.
pub async fn metrics_text(node: &Node) -> String {
    http()
        .get(format!("{}/metrics", control_url(node)))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

/// Waits until `cond` holds, polling.
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A real redis-server on a free port, stopped when dropped.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    child: Option<std::process::Child>,
    dir: std::path::PathBuf,
    /// Extra arguments (TLS, users).
    extra: Vec<String>,
    /// Serving TLS only (on `port`).
    tls: bool,
}

/// A throwaway CA and a server certificate for 127.0.0.1 it signed (openssl CLI).
pub struct TestCa {
    /// The CA certificate (PEM file).
    pub ca: std::path::PathBuf,
    /// The server certificate (PEM file).
    pub cert: std::path::PathBuf,
    /// The server key (PEM file).
    pub key: std::path::PathBuf,
}

impl TestCa {
    /// Makes one in `dir` (files named after `name`).
    pub fn new(dir: &std::path::Path, name: &str) -> TestCa {
        let f = |suffix: &str| dir.join(format!("{name}-{suffix}"));
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl is needed: scripts/test.sh installs it");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let p = |path: &std::path::Path| path.to_string_lossy().into_owned();
        let (ca, ca_key, key, csr, cert, ext) = (
            f("ca.pem"),
            f("ca.key"),
            f("server.key"),
            f("server.csr"),
            f("server.pem"),
            f("ext.cnf"),
        );
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={name} test CA"),
            "-keyout",
            &p(&ca_key),
            "-out",
            &p(&ca),
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p(&key),
            "-out",
            &p(&csr),
        ]);
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("ext");
        run(&[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &p(&csr),
            "-CA",
            &p(&ca),
            "-CAkey",
            &p(&ca_key),
            "-CAcreateserial",
            "-extfile",
            &p(&ext),
            "-out",
            &p(&cert),
        ]);
        TestCa { ca, cert, key }
    }
}

impl RedisServer {
    /// Starts one (redis-server must be installed: scripts/test.sh installs it).
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[], false)
    }

    /// Starts one with extra arguments (`--user …`); `tls`: the port serves TLS only (the
    /// arguments must name the certificate files).
    pub fn start_with(extra: &[&str], tls: bool) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("gangway-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut r = RedisServer {
            port,
            child: None,
            dir,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            tls,
        };
        r.spawn();
        r
    }

    /// Starts one serving TLS only, with `ca`'s server certificate.
    pub fn start_tls(ca: &TestCa) -> RedisServer {
        let p = |path: &std::path::Path| path.to_string_lossy().into_owned();
        let (cert, key, root) = (p(&ca.cert), p(&ca.key), p(&ca.ca));
        RedisServer::start_with(
            &[
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &root,
                "--tls-auth-clients",
                "no",
            ],
            true,
        )
    }

    fn spawn(&mut self) {
        let (plain, tls) = if self.tls {
            ("0".to_string(), self.port.to_string())
        } else {
            (self.port.to_string(), "0".to_string())
        };
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &plain,
                "--tls-port",
                &tls,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is needed: run scripts/test.sh (it installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and waits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes it (SIGSTOP): every client's packets go unanswered, nothing is refused.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{name} redis-server");
    }

    /// Starts it again on the same port (empty).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts it again on the same port with its data gone (a Redis that lost its disk).
    pub fn restart_empty(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).expect("redis dir");
        self.spawn();
    }

    /// A synchronous client, for checks.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection()
            .expect("connect to redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const CLUSTER_ARGS: [&str; 6] = [
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "5000",
];

/// A real 3-master Redis Cluster (redis-server ×3 + `redis-cli --cluster create`), stopped
/// when dropped.
pub struct RedisClusterServers {
    /// The masters.
    pub nodes: Vec<RedisServer>,
}

impl RedisClusterServers {
    /// Starts three cluster-enabled servers and joins them (needs redis-server and redis-cli).
    pub fn start() -> RedisClusterServers {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // Cluster bus ports are port + 10000: pick ports whose bus port is free too.
            let port = loop {
                let p = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("free port")
                    .port();
                if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
                    break p;
                }
            };
            let dir =
                std::env::temp_dir().join(format!("gangway-rc-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("dir");
            let child = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(CLUSTER_ARGS)
                .arg("--dir")
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("redis-server");
            let deadline = std::time::Instant::now() + PATIENCE;
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            nodes.push(RedisServer {
                port,
                child: Some(child),
                dir,
                // A restart rejoins the cluster with its nodes.conf (and so its slots).
                extra: CLUSTER_ARGS.iter().map(|a| a.to_string()).collect(),
                tls: false,
            });
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is needed: run scripts/test.sh (it installs it)");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let ok = nodes.iter().all(|n| {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut n.client())
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
            });
            if ok {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "cluster never became ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisClusterServers { nodes }
    }

    /// Seed URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}

/// Opens a raw socket and completes the upgrade by hand.
pub async fn raw_upgrade(node: &gangway::Node) -> TcpStream {
    let mut s = TcpStream::connect(node.websocket_addr).await.expect("tcp");
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Reads an HTTP response head.
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut byte))
            .await
            .expect("in time")
            .expect("read");
        if n == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A masked client frame.
pub fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads server frames until a close frame; returns its code.
pub async fn read_close_code(s: &mut TcpStream) -> u16 {
    loop {
        let mut head = [0u8; 2];
        tokio::time::timeout(PATIENCE, s.read_exact(&mut head))
            .await
            .expect("in time")
            .expect("frame");
        let len = match head[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).await.expect("len");
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                s.read_exact(&mut l).await.expect("len");
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.expect("payload");
        if head[0] & 0x0f == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

/// The project's `.venv` Python, with boto3 and the AWS CLI (scripts/test.sh installs them).
pub fn venv_python() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".venv/bin/python");
    let ok = std::process::Command::new(&py)
        .args(["-c", "import boto3, awscli"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} with boto3 and awscli is needed: run scripts/test.sh (it installs them)",
        py.display()
    );
    py
}

/// Peak resident memory of a process (`VmHWM`), bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// A gangway binary running as its own process (JSON logs), killed when dropped.
pub struct NodeProcess {
    /// The process.
    pub child: std::process::Child,
    /// Its WebSocket listener, `ip:port`.
    pub websocket: String,
    /// Its control listener, `ip:port`.
    pub control: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl NodeProcess {
    /// Writes `toml` to a file in `dir` and starts the binary on it (listeners on 127.0.0.1:0)
    /// with `args` (JSON logs unless they say `--log-format text`); returns once it logged its
    /// start.
    pub fn spawn(dir: &std::path::Path, name: &str, toml: &str, args: &[&str]) -> NodeProcess {
        Self::spawn_with_env(dir, name, toml, args, &[])
    }

    /// [`NodeProcess::spawn`] with environment changes: each `(name, value)` is set, or removed
    /// when `value` is empty.
    pub fn spawn_with_env(
        dir: &std::path::Path,
        name: &str,
        toml: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> NodeProcess {
        use std::io::BufRead as _;
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, toml).expect("config file");
        let format: &[&str] = if args.contains(&"--log-format") {
            &[]
        } else {
            &["--log-format", "json"]
        };
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gangway"));
        for (k, _) in env.iter().filter(|(_, v)| v.is_empty()) {
            command.env_remove(k);
        }
        let mut child = command
            .arg("--config")
            .arg(&file)
            .args(format)
            .args(args)
            .env("GANGWAY_LISTEN_WEBSOCKET", "127.0.0.1:0")
            .env("GANGWAY_LISTEN_CONTROL", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .envs(env.iter().filter(|(_, v)| !v.is_empty()).copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn gangway");
        let stdout = child.stdout.take().expect("stdout");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let store = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let line = strip_ansi(&line);
                if let Ok(j) = serde_json::from_str::<serde_json::Value>(&line) {
                    if j["fields"]["message"] == "gangway node started" {
                        let _ = tx.send((
                            j["fields"]["websocket"].as_str().unwrap_or("").to_string(),
                            j["fields"]["control"].as_str().unwrap_or("").to_string(),
                        ));
                    }
                } else if line.contains("gangway node started") {
                    let field = |name: &str| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix(name))
                            .unwrap_or("")
                            .to_string()
                    };
                    let _ = tx.send((field("websocket="), field("control=")));
                }
                store.lock().expect("lock").push(line);
            }
        });
        let (websocket, control) = rx.recv_timeout(PATIENCE).expect("startup log line");
        NodeProcess {
            child,
            websocket,
            control,
            lines,
        }
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    /// Sends a signal (`TERM`, `KILL`, `STOP`, `CONT`, `HUP`).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{name}");
    }

    /// Waits for the process to exit; its status.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gangway did not exit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `node` is ready and, in cluster mode, reaches Redis: it joined, or rejoined
/// after an outage (during a confirmed whole outage a node is ready without Redis).
pub fn joined(node: &Node) -> bool {
    node.broker.not_ready_reason().is_none() && node.broker.redis_up() != Some(false)
}

/// A fresh scratch directory for one test, removed by the caller when it likes.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gangway-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Removes terminal colour sequences (`ESC [ … m`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Cluster settings that judge a node dead within a second (tests).
pub const FAST: &str = "heartbeat_interval_ms = 200\nnode_ttl_ms = 1000\nrpc_timeout_ms = 2000\n";

/// Starts a `gangway` process in cluster mode on ephemeral ports, with `extra` TOML (routes,
/// channels) and its config file in `dir`; returns it with its WebSocket address, once it logged
/// that it started. Tests SIGKILL it to lose a node.
pub fn spawn_cluster_node(
    redis: &RedisServer,
    id: &str,
    extra: &str,
    dir: &std::path::Path,
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let file = dir.join(format!("{id}.toml"));
    std::fs::write(
        &file,
        format!(
            "[listen]\nwebsocket = \"127.0.0.1:0\"\ncontrol = \"127.0.0.1:0\"\n\
             [api]\nwebhook_secret = \"cluster-test-secret\"\n{extra}\n\
             [cluster]\nredis_url = \"{}\"\nnode_id = \"{id}\"\n{FAST}",
            redis.url()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gangway"))
        .arg("--config")
        .arg(&file)
        .args(["--log-format", "json"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gangway");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ws = loop {
        let line = lines.next().expect("log line").expect("read");
        let Ok(j) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if j["fields"]["message"] == "gangway node started" {
            break j["fields"]["websocket"].as_str().expect("addr").to_string();
        }
    };
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, ws)
}
