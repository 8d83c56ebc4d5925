//! The `$disconnect` contract under partitions (ARCHITECTURE.md, "The `$disconnect` contract"):
//! every connection is either open, reachable from every node, with no `$disconnect` sent; or
//! closed, with its `$disconnect` delivered at least once, every copy with one `requestId`.
//! Real redis-server, real nodes, a TCP proxy the test controls between one node and Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

const TIMING: &str = "heartbeat_interval_ms = 200\nnode_ttl_ms = 1000\nrpc_timeout_ms = 1000\n";

/// A cluster member whose `$connect` and `$disconnect` go to `backend`.
async fn member(redis_url: &str, id: &str, backend: &Backend) -> gangway::Node {
    member_of(&format!("redis_url = \"{redis_url}\""), id, backend).await
}

/// A cluster member reaching Redis as `redis` (the `[cluster]` lines) says.
async fn member_of(redis: &str, id: &str, backend: &Backend) -> gangway::Node {
    let node = node(&format!(
        "[api]\nwebhook_secret = \"partition-test-secret\"\n\
         [routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
         [routes.\"$disconnect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
         [cluster]\n{redis}\nnode_id = \"{id}\"\n{TIMING}",
        backend.url("/connect"),
        backend.url("/disconnect"),
    ))
    .await;
    eventually("node joined the cluster", || joined(&node)).await;
    node
}

/// A client the test watches from its own task: what it received, and how and when it closed.
struct Watched {
    id: String,
    received: Arc<Mutex<Vec<String>>>,
    closed: Arc<Mutex<Option<(u16, Instant)>>>,
}

impl Watched {
    async fn open_on(node: &gangway::Node) -> Watched {
        let (mut ws, id) = connect_with_id(node).await;
        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let closed: Arc<Mutex<Option<(u16, Instant)>>> = Arc::default();
        let (r, c) = (Arc::clone(&received), Arc::clone(&closed));
        tokio::spawn(async move {
            let code = loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => r.lock().expect("lock").push(t.to_string()),
                    Some(Ok(Message::Close(f))) => break f.map_or(1005, |f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break 1006,
                }
            };
            *c.lock().expect("lock") = Some((code, Instant::now()));
        });
        Watched {
            id,
            received,
            closed,
        }
    }

    fn closed(&self) -> Option<(u16, Instant)> {
        *self.closed.lock().expect("lock")
    }

    fn got(&self, text: &str) -> bool {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .any(|t| t == text)
    }
}

/// Every `$disconnect` the backend got, by connection id.
fn disconnects(backend: &Backend) -> HashMap<String, Vec<Call>> {
    let mut by_id: HashMap<String, Vec<Call>> = HashMap::new();
    for c in backend.calls() {
        if c.event_type() == "DISCONNECT" {
            by_id.entry(c.connection_id()).or_default().push(c);
        }
    }
    by_id
}

fn request_id(c: &Call) -> String {
    c.event["requestContext"]["requestId"]
        .as_str()
        .expect("requestId")
        .to_string()
}

/// The contract for `closed` and `open` connections, as far as the backend saw it.
fn check_contract(backend: &Backend, closed: &[&Watched], open: &[&Watched]) {
    let by_id = disconnects(backend);
    for w in open {
        assert!(w.closed().is_none(), "{} should be open", w.id);
        assert!(
            !by_id.contains_key(&w.id),
            "$disconnect sent for open connection {}",
            w.id
        );
    }
    for w in closed {
        let (_, closed_at) = w.closed().expect("closed");
        let copies = by_id
            .get(&w.id)
            .unwrap_or_else(|| panic!("no $disconnect for closed connection {}", w.id));
        let first = copies.iter().map(|c| c.received).min().expect("a copy");
        assert!(
            closed_at <= first,
            "{}: reported gone {:?} before it closed",
            w.id,
            closed_at - first
        );
        let rid = request_id(&copies[0]);
        assert!(
            copies.iter().all(|c| request_id(c) == rid),
            "{}: copies with different requestIds",
            w.id
        );
    }
}

async fn until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_closes_its_clients_before_it_is_reaped() {
    let redis = RedisServer::start();
    let backend = Backend::start().await;
    let proxy = Proxy::start(redis.port).await;
    let a = member(&redis.url(), "part-a", &backend).await;
    let c = member(&redis.url(), "part-c", &backend).await;
    let b = member(&proxy.url(), "part-b", &backend).await;
    // A few heartbeats: every node learns where its peers' control APIs are.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut on_b = Vec::new();
    for _ in 0..8 {
        on_b.push(Watched::open_on(&b).await);
    }
    let mut on_a = Vec::new();
    for _ in 0..4 {
        on_a.push(Watched::open_on(&a).await);
    }
    let (via_a, via_b, via_c) = (Control::of(&a), Control::of(&b), Control::of(&c));
    assert_eq!(via_a.post(&on_b[0].id, "before").await.status, 200);
    until("a push across nodes", Duration::from_secs(5), || {
        on_b[0].got("before")
    })
    .await;
    assert_eq!(
        via_a
            .request(reqwest::Method::GET, "/@node", "")
            .await
            .json()["redis"],
        "up"
    );

    // B's path to Redis becomes a black hole for 8 s.
    proxy.black_hole();
    let cut = Instant::now();
    until("B fences", Duration::from_secs(5), || {
        on_b.iter().all(|w| w.closed().is_some())
    })
    .await;
    for w in &on_b {
        assert_eq!(w.closed().expect("closed").0, 1012, "Service Restart");
    }
    assert!(b
        .broker
        .not_ready_reason()
        .is_some_and(|r| r.starts_with("fenced")));
    let r = via_b.request(reqwest::Method::GET, "/readyz", "").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        via_b
            .request(reqwest::Method::GET, "/@node", "")
            .await
            .json()["fenced"],
        true
    );
    assert!(
        tokio_tungstenite::connect_async(ws_url(&b, "/"))
            .await
            .is_err(),
        "a fenced node refuses upgrades"
    );
    // The survivors reap B: a $disconnect for each of its connections, after it closed them.
    backend
        .wait_for("B's connections reaped", |calls| {
            on_b.iter().all(|w| {
                calls.iter().any(|c| {
                    c.event_type() == "DISCONNECT"
                        && c.connection_id() == w.id
                        && c.event["requestContext"]["disconnectReason"] == "Node lost: part-b"
                })
            })
        })
        .await;
    check_contract(
        &backend,
        &on_b.iter().collect::<Vec<_>>(),
        &on_a.iter().collect::<Vec<_>>(),
    );
    // A's connections are untouched and reachable from every live node.
    for (i, w) in on_a.iter().enumerate() {
        let text = format!("during {i}");
        assert_eq!(via_c.post(&w.id, text.clone()).await.status, 200);
        until(
            "a push during the partition",
            Duration::from_secs(5),
            || w.got(&text),
        )
        .await;
    }
    assert_eq!(via_a.post(&on_b[1].id, "x").await.status, 410);

    // Heal after 8 s: B finds it was reaped, lifts the fence and serves again.
    tokio::time::sleep((cut + Duration::from_secs(8)).saturating_duration_since(Instant::now()))
        .await;
    proxy.heal();
    until("B ready again", Duration::from_secs(10), || joined(&b)).await;
    let fresh = Watched::open_on(&b).await;
    assert_eq!(via_a.post(&fresh.id, "after").await.status, 200);
    until("a push to B's new client", Duration::from_secs(5), || {
        fresh.got("after")
    })
    .await;
    for w in &on_b {
        for via in [&via_a, &via_b, &via_c] {
            assert_eq!(via.post(&w.id, "late").await.status, 410);
        }
    }
    // Give late duplicates every chance, then check the whole contract again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut open: Vec<&Watched> = on_a.iter().collect();
    open.push(&fresh);
    check_contract(&backend, &on_b.iter().collect::<Vec<_>>(), &open);
    let fenced_total = b
        .broker
        .metrics()
        .render()
        .lines()
        .find_map(|l| {
            l.strip_prefix("gangway_cluster_fenced_connections_total ")
                .map(str::to_string)
        })
        .expect("metric");
    assert!(fenced_total.trim().parse::<u64>().expect("number") >= 8);
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_redis_outage_of_30_s_closes_nothing_and_reports_nobody_gone() {
    let redis = RedisServer::start();
    let backend = Backend::start().await;
    let a = member(&redis.url(), "outage-a", &backend).await;
    let b = member(&redis.url(), "outage-b", &backend).await;
    let c = member(&redis.url(), "outage-c", &backend).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let nodes = [&a, &b, &c];
    let mut clients: Vec<(usize, Watched)> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for _ in 0..3 {
            clients.push((i, Watched::open_on(n).await));
        }
    }

    // Every node loses Redis at once (frozen: nothing answers, nothing is refused).
    redis.pause();
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        round += 1;
        // Local pushes and local fan-out keep working on every node.
        for (i, n) in nodes.iter().enumerate() {
            let via = Control::of(n);
            let text = format!("round {round} on {i}");
            let mine: Vec<&Watched> = clients
                .iter()
                .filter(|(j, _)| *j == i)
                .map(|(_, w)| w)
                .collect();
            assert_eq!(via.post(&mine[0].id, text.clone()).await.status, 200);
            let fan = format!("fan {round} on {i}");
            assert_eq!(via.broadcast("", fan.clone()).await.status, 200);
            until(
                "local traffic during the outage",
                Duration::from_secs(5),
                || mine[0].got(&text) && mine.iter().all(|w| w.got(&fan)),
            )
            .await;
            assert!(!n
                .broker
                .not_ready_reason()
                .is_some_and(|r| r.starts_with("fenced")));
        }
    }
    assert!(
        clients.iter().all(|(_, w)| w.closed().is_none()),
        "a client was closed"
    );

    redis.resume();
    for n in nodes {
        until("ready again", Duration::from_secs(10), || joined(n)).await;
    }
    // Several TTLs: a reaper acting on stale evidence would have struck by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let open: Vec<&Watched> = clients.iter().map(|(_, w)| w).collect();
    check_contract(&backend, &[], &open);
    // Cross-node pushes work again.
    for (i, w) in &clients {
        let via = Control::of(nodes[(i + 1) % 3]);
        assert_eq!(via.post(&w.id, "after").await.status, 200);
    }
    for (_, w) in &clients {
        until(
            "cross-node push after the outage",
            Duration::from_secs(5),
            || w.got("after"),
        )
        .await;
    }
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_its_data_after_several_ttls_reports_nobody_gone() {
    // Append-only file on: what a managed Redis brings back after a failover.
    let mut redis =
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"], false);
    let backend = Backend::start().await;
    let a = member(&redis.url(), "aof-a", &backend).await;
    let b = member(&redis.url(), "aof-b", &backend).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let on_a = Watched::open_on(&a).await;
    let on_b = Watched::open_on(&b).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    redis.stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    redis.restart();
    for n in [&a, &b] {
        until("ready again", Duration::from_secs(10), || joined(n)).await;
    }
    // The restored keys had all expired: reapers acting at once would report both nodes gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    check_contract(&backend, &[], &[&on_a, &on_b]);
    assert_eq!(Control::of(&a).post(&on_b.id, "ab").await.status, 200);
    assert_eq!(Control::of(&b).post(&on_a.id, "ba").await.status, 200);
    until(
        "cross-node pushes after the restart",
        Duration::from_secs(5),
        || on_a.got("ba") && on_b.got("ab"),
    )
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_past_its_ttl_finds_out_it_was_reaped_and_closes_its_clients() {
    let redis = RedisServer::start();
    let backend = Backend::start().await;
    let a = member(&redis.url(), "frozen-a", &backend).await;
    let dir = std::env::temp_dir().join(format!("gangway-frozen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let frozen = NodeProcess::spawn(
        &dir,
        "frozen-b",
        &format!(
            "[api]\nwebhook_secret = \"partition-test-secret\"\n\
             [routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
             [routes.\"$disconnect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
             [cluster]\nredis_url = \"{}\"\nnode_id = \"frozen-b\"\n{TIMING}",
            backend.url("/connect"),
            backend.url("/disconnect"),
            redis.url()
        ),
        &[],
    );
    let mut clients = Vec::new();
    for n in 1..=4 {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", frozen.websocket))
            .await
            .expect("connect");
        clients.push(ws);
        backend
            .wait_for("its $connect", |c| {
                c.iter().filter(|c| c.event_type() == "CONNECT").count() == n
            })
            .await;
    }
    let ids: Vec<String> = backend
        .calls()
        .iter()
        .filter(|c| c.event_type() == "CONNECT")
        .map(Call::connection_id)
        .collect();
    let via_a = Control::of(&a);
    assert_eq!(via_a.post(&ids[0], "alive").await.status, 200);

    // A stalled VM: frozen for four TTLs. The survivor reaps it meanwhile.
    frozen.signal("STOP");
    backend
        .wait_for("the frozen node's connections reaped", |calls| {
            ids.iter().all(|id| {
                calls.iter().any(|c| {
                    c.event_type() == "DISCONNECT"
                        && &c.connection_id() == id
                        && c.event["requestContext"]["disconnectReason"] == "Node lost: frozen-b"
                })
            })
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    frozen.signal("CONT");
    // Resumed, it finds it was reaped: every client it held is closed, with 1012.
    for ws in &mut clients {
        let (code, _) = expect_close(ws).await;
        assert_eq!(code, 1012);
    }
    for id in &ids {
        assert_eq!(via_a.post(id, "late").await.status, 410);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let by_id = disconnects(&backend);
    for id in &ids {
        let copies = &by_id[id];
        let rid = request_id(&copies[0]);
        assert!(
            copies.iter().all(|c| request_id(c) == rid),
            "{id}: one requestId"
        );
    }
    drop(frozen);
    a.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_redis_connections_are_reset_fences_and_comes_back() {
    let redis = RedisServer::start();
    let backend = Backend::start().await;
    let proxy = Proxy::start(redis.port).await;
    let a = member(&redis.url(), "reset-a", &backend).await;
    let b = member(&proxy.url(), "reset-b", &backend).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let on_a = Watched::open_on(&a).await;
    let on_b = Watched::open_on(&b).await;

    proxy.reset();
    until("B fences", Duration::from_secs(5), || {
        on_b.closed().is_some()
    })
    .await;
    assert_eq!(on_b.closed().expect("closed").0, 1012);
    backend
        .wait_for("B's connection reaped", |calls| {
            calls.iter().any(|c| {
                c.event_type() == "DISCONNECT"
                    && c.connection_id() == on_b.id
                    && c.event["requestContext"]["disconnectReason"] == "Node lost: reset-b"
            })
        })
        .await;
    proxy.heal();
    until("B ready again", Duration::from_secs(10), || joined(&b)).await;
    check_contract(&backend, &[&on_b], &[&on_a]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_losing_one_master_keeps_the_contract() {
    let mut servers = RedisClusterServers::start();
    let urls = servers.urls();
    let redis = format!(
        "mode = \"redis-cluster\"\nredis_url = \"{}\"\nseed_urls = [\"{}\", \"{}\"]",
        urls[0], urls[1], urls[2]
    );
    let backend = Backend::start().await;
    let mut nodes = Vec::new();
    for id in ["shard-a", "shard-b", "shard-c"] {
        nodes.push(member_of(&redis, id, &backend).await);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut clients: Vec<(usize, Watched)> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for _ in 0..3 {
            clients.push((i, Watched::open_on(n).await));
        }
    }

    // One shard's master dies (no replica): the keys and shard channels it held are gone for
    // three seconds, then it comes back with its slots.
    servers.nodes[0].stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    servers.nodes[0].restart();
    for n in &nodes {
        until("ready again", Duration::from_secs(20), || joined(n)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (closed, open): (Vec<&Watched>, Vec<&Watched>) = clients
        .iter()
        .map(|(_, w)| w)
        .partition(|w| w.closed().is_some());
    for w in &closed {
        assert_eq!(
            w.closed().expect("closed").0,
            1012,
            "only fencing closes clients"
        );
    }
    check_contract(&backend, &closed, &open);
    for (i, w) in &clients {
        let via = Control::of(&nodes[(i + 1) % 3]);
        let text = format!("after {}", w.id);
        let status = via.post(&w.id, text.clone()).await.status;
        if w.closed().is_some() {
            assert_eq!(status, 410);
        } else {
            assert_eq!(status, 200);
            until(
                "a push after the shard came back",
                Duration::from_secs(5),
                || w.got(&text),
            )
            .await;
        }
    }
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_path_to_redis_keeps_the_contract() {
    let redis = RedisServer::start();
    let backend = Backend::start().await;
    let proxy = Proxy::start(redis.port).await;
    let a = member(&redis.url(), "slow-a", &backend).await;
    let b = member(&proxy.url(), "slow-b", &backend).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let on_a = Watched::open_on(&a).await;
    let on_b = Watched::open_on(&b).await;

    // Every chunk between B and Redis waits 25 ms each way, for five seconds.
    proxy.slow();
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.heal();
    until("B ready", Duration::from_secs(10), || joined(&b)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Slow is not lost: whatever B decided, the contract holds; here nothing had to close.
    let (closed, open): (Vec<&Watched>, Vec<&Watched>) = [&on_a, &on_b]
        .into_iter()
        .partition(|w| w.closed().is_some());
    check_contract(&backend, &closed, &open);
    assert!(open.len() == 2, "a slow path closed a client");
    assert_eq!(Control::of(&a).post(&on_b.id, "ab").await.status, 200);
    assert_eq!(Control::of(&b).post(&on_a.id, "ba").await.status, 200);
    until("pushes both ways", Duration::from_secs(5), || {
        on_a.got("ba") && on_b.got("ab")
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}
