//! What the chaos run saw: every connection (opened, leaving, closed and how), every
//! `$disconnect` the backend got, every push and whether it arrived; and the contract check.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::cluster::Faults;
use super::Rng;

/// How a client's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The client left (after a second of not being pushed to).
    ByClient,
    /// The server closed it, or the TCP connection dropped (the code the client saw).
    ByServer(u16),
}

struct Conn {
    node: usize,
    closed: Option<(Closed, Instant)>,
}

struct Disconnect {
    request_id: String,
    at: Instant,
}

struct Push {
    id: String,
    token: String,
    status: Option<u16>,
    at: Instant,
    last: bool,
}

#[derive(Default)]
struct Inner {
    ids: HashMap<u64, String>,
    conns: HashMap<String, Conn>,
    open: Vec<String>,
    open_at: HashMap<String, usize>,
    disconnects: HashMap<String, Vec<Disconnect>>,
    pushes: Vec<Push>,
    received: HashSet<String>,
    published_ok: u64,
    published_failed: u64,
}

/// See the module documentation.
#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection id `$connect` reported for client connection `index`.
    pub fn id_of(&self, index: u64) -> Option<String> {
        self.lock().ids.get(&index).cloned()
    }

    /// The client saw connection `id` open on `node`.
    pub fn opened(&self, id: &str, node: usize) {
        let mut g = self.lock();
        g.conns.insert(id.to_string(), Conn { node, closed: None });
        let pos = g.open.len();
        g.open.push(id.to_string());
        g.open_at.insert(id.to_string(), pos);
    }

    fn not_open(g: &mut Inner, id: &str) {
        if let Some(pos) = g.open_at.remove(id) {
            g.open.swap_remove(pos);
            if let Some(moved) = g.open.get(pos).cloned() {
                g.open_at.insert(moved, pos);
            }
        }
    }

    /// The client is about to leave: no new pushes choose it.
    pub fn leaving(&self, id: &str) {
        Self::not_open(&mut self.lock(), id);
    }

    /// The client saw its connection end.
    pub fn closed(&self, id: &str, how: Closed) {
        let mut g = self.lock();
        Self::not_open(&mut g, id);
        if let Some(c) = g.conns.get_mut(id) {
            c.closed.get_or_insert((how, Instant::now()));
        }
    }

    /// Every client still connected leaves now.
    pub fn close_all_clients(&self) {
        let mut g = self.lock();
        let now = Instant::now();
        for c in g.conns.values_mut() {
            c.closed.get_or_insert((Closed::ByClient, now));
        }
        g.open.clear();
        g.open_at.clear();
    }

    /// A random open connection that is not leaving.
    pub fn random_open(&self, rng: &mut Rng) -> Option<String> {
        let g = self.lock();
        if g.open.is_empty() {
            return None;
        }
        g.open.get(rng.below(g.open.len() as u64) as usize).cloned()
    }

    /// Open connections (id, node).
    pub fn open_connections(&self) -> Vec<(String, usize)> {
        let g = self.lock();
        g.open
            .iter()
            .filter_map(|id| g.conns.get(id).map(|c| (id.clone(), c.node)))
            .collect()
    }

    /// A client received `text`.
    pub fn received(&self, text: &str) {
        if text.starts_with("push-") || text.starts_with("final-") {
            self.lock().received.insert(text.to_string());
        }
    }

    /// A push of `token` to `id` was answered `status` (`None`: no answer).
    pub fn pushed(&self, id: &str, token: &str, status: Option<u16>, last: bool) {
        self.lock().pushes.push(Push {
            id: id.to_string(),
            token: token.to_string(),
            status,
            at: Instant::now(),
            last,
        });
    }

    /// A publish was answered `status`.
    pub fn published(&self, status: Option<u16>) {
        let mut g = self.lock();
        if status == Some(200) {
            g.published_ok += 1;
        } else {
            g.published_failed += 1;
        }
    }

    /// True when every connection the clients saw has at least one `$disconnect`.
    pub fn every_closed_reported(&self) -> bool {
        let g = self.lock();
        g.conns.keys().all(|id| g.disconnects.contains_key(id))
    }

    fn on_event(&self, event: &serde_json::Value) -> String {
        let ctx = &event["requestContext"];
        let id = ctx["connectionId"].as_str().unwrap_or("").to_string();
        let mut g = self.lock();
        match ctx["eventType"].as_str() {
            Some("CONNECT") => {
                let query = &event["queryStringParameters"];
                if let Some(i) = query["i"].as_str().and_then(|i| i.parse::<u64>().ok()) {
                    g.ids.insert(i, id);
                }
                match query["ch"].as_str() {
                    Some(ch) => serde_json::json!({ "channels": [ch] }).to_string(),
                    None => "{}".into(),
                }
            }
            Some("DISCONNECT") => {
                let request_id = ctx["requestId"].as_str().unwrap_or("").to_string();
                g.disconnects.entry(id).or_default().push(Disconnect {
                    request_id,
                    at: Instant::now(),
                });
                String::new()
            }
            _ => String::new(),
        }
    }

    /// Checks the contract over everything seen.
    pub fn check(&self, faults: &Faults, final_open: usize, final_ok: usize) -> Summary {
        let g = self.lock();
        let mut s = Summary {
            faults: faults.clone(),
            final_open,
            final_ok,
            ..Summary::default()
        };
        let violation = |s: &mut Summary, what: String| {
            s.violations += 1;
            let kind: String = what
                .split(": ")
                .nth(1)
                .unwrap_or("")
                .split(' ')
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            *s.kinds.entry(kind).or_default() += 1;
            if s.examples.len() < 20 {
                s.examples.push(what);
            }
        };
        for (id, c) in &g.conns {
            s.connections += 1;
            let Some((how, closed_at)) = c.closed else {
                violation(&mut s, format!("{id}: never closed"));
                continue;
            };
            match how {
                Closed::ByClient => s.closed_by_client += 1,
                Closed::ByServer(code) => *s.closed_by_server.entry(code).or_default() += 1,
            }
            let Some(copies) = g.disconnects.get(id) else {
                violation(
                    &mut s,
                    format!("{id}: closed, no $disconnect (node {}, {how:?})", c.node),
                );
                continue;
            };
            s.disconnects += copies.len();
            s.duplicates += copies.len() - 1;
            if copies.iter().any(|d| d.request_id != copies[0].request_id) {
                violation(
                    &mut s,
                    format!("{id}: $disconnect copies with different requestIds"),
                );
            }
            if let Some(first) = copies.iter().map(|d| d.at).min() {
                if first < closed_at {
                    violation(
                        &mut s,
                        format!("{id}: $disconnect {:?} before the client saw it close (node {}, {how:?})", closed_at - first, c.node),
                    );
                }
            }
        }
        s.unseen = g
            .disconnects
            .keys()
            .filter(|id| !g.conns.contains_key(*id))
            .count();
        for p in &g.pushes {
            s.pushes += 1;
            let arrived = g.received.contains(&p.token);
            let conn = g.conns.get(&p.id);
            match p.status {
                Some(200) => {
                    s.pushes_ok += 1;
                    if arrived {
                        s.pushes_arrived += 1;
                    } else if matches!(conn.and_then(|c| c.closed), Some((Closed::ByServer(_), _)))
                    {
                        s.lost_with_connection += 1;
                    } else {
                        violation(
                            &mut s,
                            format!("push {} to {}: answered 200, never arrived", p.token, p.id),
                        );
                    }
                }
                Some(410) => {
                    s.pushes_gone += 1;
                    let open_long_after = conn
                        .and_then(|c| c.closed)
                        .is_some_and(|(_, at)| at > p.at + Duration::from_secs(1));
                    if open_long_after || p.last {
                        let node = conn.map_or(9, |c| c.node);
                        violation(
                            &mut s,
                            format!(
                                "push {} to {}: 410 while it was open (node {node})",
                                p.token, p.id
                            ),
                        );
                    }
                }
                other => {
                    *s.pushes_other.entry(other.unwrap_or(0)).or_default() += 1;
                    if p.last {
                        violation(&mut s, format!("final push to {}: {other:?}", p.id));
                    }
                }
            }
        }
        s.published_ok = g.published_ok;
        s.published_failed = g.published_failed;
        s
    }
}

/// The run's outcome.
#[derive(Default)]
pub struct Summary {
    faults: Faults,
    connections: usize,
    closed_by_client: usize,
    closed_by_server: std::collections::BTreeMap<u16, usize>,
    disconnects: usize,
    duplicates: usize,
    unseen: usize,
    pushes: usize,
    pushes_ok: usize,
    pushes_arrived: usize,
    lost_with_connection: usize,
    pushes_gone: usize,
    pushes_other: std::collections::BTreeMap<u16, usize>,
    published_ok: u64,
    published_failed: u64,
    final_open: usize,
    final_ok: usize,
    /// Contract violations.
    pub violations: usize,
    examples: Vec<String>,
    kinds: std::collections::BTreeMap<String, usize>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "chaos summary")?;
        writeln!(f, "  faults injected      {}", self.faults)?;
        writeln!(f, "  connections          {} opened; closed by client {}, by server {:?} (code: count; 1006 = dropped)", self.connections, self.closed_by_client, self.closed_by_server)?;
        writeln!(f, "  $disconnect events   {} ({} duplicates with the same requestId; {} for connections the client never saw open)", self.disconnects, self.duplicates, self.unseen)?;
        writeln!(f, "  pushes               {} sent: {} answered 200 ({} arrived, {} lost with a connection a fault closed), {} answered 410, others {:?} (0 = no answer)", self.pushes, self.pushes_ok, self.pushes_arrived, self.lost_with_connection, self.pushes_gone, self.pushes_other)?;
        writeln!(
            f,
            "  publishes            {} answered 200, {} not",
            self.published_ok, self.published_failed
        )?;
        writeln!(
            f,
            "  final check          {} open clients pushed through another node, {} answered 200",
            self.final_open, self.final_ok
        )?;
        writeln!(
            f,
            "  violations           {} {:?}",
            self.violations, self.kinds
        )?;
        for e in &self.examples {
            writeln!(f, "    {e}")?;
        }
        Ok(())
    }
}

/// Serves the nodes' `$connect` (puts the client in its `?ch=` channel, learns its id from
/// `?i=`) and `$disconnect` webhooks on a free loopback port; returns the port.
pub async fn serve_backend(ledger: Arc<Ledger>) -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    crate::backend::serve(listener, move |body| {
        let event: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        ledger.on_event(&event)
    });
    Ok(port)
}
