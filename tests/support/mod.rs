//! Test support: real nodes on ephemeral ports, a real HTTP backend that records every webhook
//! call, and real WebSocket clients.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gangway::Node;
use gangway_broker::{Config, ConfigBuilder};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
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
pub fn config(toml: &str) -> Config {
    let mut b = ConfigBuilder::new().file("test", toml);
    b.set("listen", "websocket", "127.0.0.1:0".into());
    b.set("listen", "control", "127.0.0.1:0".into());
    let mut c = b.build().expect("valid test config");
    if c.api.webhook_secret.is_none() {
        c.api.webhook_secret = Some(SECRET.into());
    }
    c
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
}

impl RedisServer {
    /// Starts one (redis-server must be installed: scripts/test.sh installs it).
    pub fn start() -> RedisServer {
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
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
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

    /// Starts it again on the same port (empty).
    pub fn restart(&mut self) {
        self.stop();
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
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
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
