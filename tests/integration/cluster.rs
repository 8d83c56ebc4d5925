//! Cluster mode against a real redis-server: three nodes act as one gateway; faults (a killed
//! node, Redis going away and coming back, a drained node) behave as documented.

use std::time::Duration;

use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

async fn cluster_node(redis: &RedisServer, id: &str, extra: &str) -> gangway::Node {
    let node = node(&format!(
        "{extra}\n[cluster]\nredis_url = \"{}\"\nnode_id = \"{id}\"\n{FAST}",
        redis.url()
    ))
    .await;
    eventually("node joined the cluster", || joined(&node)).await;
    node
}

/// The id of the only connection on `node`.
async fn only_id(node: &gangway::Node) -> String {
    eventually("registered", || node.broker.connection_count() == 1).await;
    node.broker.connection_ids().pop().expect("id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_reaches_any_connection() {
    let redis = RedisServer::start();
    let echo = "[routes.\"$default\"]\nintegration = \"mock\"\n";
    let a = cluster_node(&redis, "node-a", echo).await;
    let b = cluster_node(&redis, "node-b", echo).await;
    let c = cluster_node(&redis, "node-c", echo).await;
    let mut ws = connect(&a).await;
    let id = only_id(&a).await;
    let (via_b, via_c) = (Control::of(&b), Control::of(&c));

    // PostToConnection / GetConnection through another node: the owner's real answer.
    assert_eq!(via_b.stage("prod").post(&id, "via b").await.status, 200);
    assert_eq!(next_message(&mut ws).await, Message::text("via b"));
    let r = via_c.get(&id).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["identity"]["sourceIp"], "127.0.0.1");
    assert!(j["connectedAt"].as_str().expect("time").ends_with('Z'));

    // Subscribe through C (returns once live), publish through B: delivered exactly once.
    assert_eq!(via_c.subscribe(&id, "news").await.status, 204);
    assert_eq!(via_b.publish("news", "", "extra").await.status, 200);
    assert_eq!(next_message(&mut ws).await, Message::text("extra"));
    assert_eq!(via_c.channel("news").await.json()["subscribers"], 1);
    // Broadcast from C reaches the connection on A once.
    via_c.broadcast("", "all").await;
    assert_eq!(next_message(&mut ws).await, Message::text("all"));
    // Batch items for a remote connection.
    let r = via_b
        .batch(serde_json::json!([{"connectionId": id, "data": "batched"}, {"channel": "news", "data": "pub"}]).to_string())
        .await;
    let results = r.json()["results"].clone();
    assert_eq!(results[0]["status"], 200);
    // The push travels on the owner's inbox, the publish on the channel: either may land first.
    let mut got = vec![next_message(&mut ws).await, next_message(&mut ws).await];
    got.sort_by_key(|m| m.to_string());
    assert_eq!(got, vec![Message::text("batched"), Message::text("pub")]);
    // Nothing was delivered twice.
    if let Ok(Some(Ok(m))) = tokio::time::timeout(
        Duration::from_millis(300),
        futures_util::StreamExt::next(&mut ws),
    )
    .await
    {
        panic!("duplicate delivery: {m:?}");
    }

    // DeleteConnection through B with a code; then the id is gone everywhere.
    assert_eq!(
        via_b.delete(&id, "?code=4001&reason=moved").await.status,
        204
    );
    assert_eq!(expect_close(&mut ws).await, (4001, "moved".to_string()));
    eventually("closed", || a.broker.connection_count() == 0).await;
    let r = via_c.post(&id, "x").await;
    assert_eq!(r.status, 410);
    assert_eq!(r.error_type.as_deref(), Some("GoneException"));
    // An id of a node that never existed: 410 at once.
    let ghost =
        gangway_broker::ConnectionId::generate(gangway_broker::NodeTag::of("ghost")).expect("rng");
    assert_eq!(via_b.post(&ghost.to_string(), "x").await.status, 410);
    for n in [a, b, c] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_fan_out_crosses_redis_once_and_only_to_interested_nodes() {
    let redis = RedisServer::start();
    let room =
        "[routes.\"$connect\"]\nintegration = \"mock\"\nresponse = '{\"channels\": [\"room\"]}'\n";
    let a = cluster_node(&redis, "fan-a", room).await;
    let b = cluster_node(&redis, "fan-b", room).await;
    let c = cluster_node(&redis, "fan-c", room).await;
    let mut clients = vec![
        connect(&a).await,
        connect(&a).await,
        connect(&b).await,
        connect(&c).await,
    ];
    for n in [&a, &b, &c] {
        eventually("subscribed", || n.broker.local_subscriber_count("room") > 0).await;
    }
    let con = std::sync::Mutex::new(redis.client());
    let numsub = |con: &std::sync::Mutex<redis::Connection>, ch: &str| -> i64 {
        let mut con = con.lock().expect("lock");
        let v: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(ch)
            .query(&mut *con)
            .expect("numsub");
        v.1
    };
    // Three interested nodes: three Redis subscribers, one per node (not per client).
    eventually("three node subscriptions", || {
        numsub(&con, "gangway:c:room") == 3
    })
    .await;
    let r = Control::of(&b).publish("room", "", "hello room").await;
    assert_eq!(
        r.json()["recipients"],
        1,
        "recipients counts the publishing node's own"
    );
    for ws in &mut clients {
        assert_eq!(next_message(ws).await, Message::text("hello room"));
    }
    for ws in &mut clients {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(
            Duration::from_millis(200),
            futures_util::StreamExt::next(ws),
        )
        .await
        {
            panic!("duplicate: {m:?}");
        }
    }
    assert_eq!(
        Control::of(&a).channel("room").await.json()["subscribers"],
        4
    );
    // The client on C leaves: C unsubscribes from the channel in Redis.
    let last = clients.pop().expect("c's client");
    drop(last);
    eventually("c lost interest", || numsub(&con, "gangway:c:room") == 2).await;
    for n in [a, b, c] {
        n.shutdown().await;
    }
}

// Issue 12: GET /@connections lists every node's connections, whichever node is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_listed_cluster_wide() {
    let redis = RedisServer::start();
    let a = cluster_node(&redis, "list-a", "").await;
    let b = cluster_node(&redis, "list-b", "").await;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for n in [&a, &a, &a, &b, &b] {
        let (ws, id) = connect_with_id(n).await;
        clients.push(ws);
        ids.push(id);
    }
    ids.sort();
    for n in [&a, &b] {
        for limit in [1, 2, 3, 100] {
            let mut listed: Vec<String> = Control::of(n)
                .list_connections(limit)
                .await
                .iter()
                .map(|i| i["connectionId"].as_str().expect("id").to_string())
                .collect();
            assert_eq!(listed.len(), 5, "limit {limit}: {listed:?}");
            listed.sort();
            assert_eq!(listed, ids, "limit {limit}");
        }
    }
    drop(clients);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_local_traffic_answers_503_and_recovers() {
    let mut redis = RedisServer::start();
    let room =
        "[routes.\"$connect\"]\nintegration = \"mock\"\nresponse = '{\"channels\": [\"room\"]}'\n";
    let a = cluster_node(&redis, "out-a", room).await;
    let b = cluster_node(&redis, "out-b", room).await;
    let mut on_a = connect(&a).await;
    let id_a = only_id(&a).await;
    let mut on_b = connect(&b).await;
    let id_b = only_id(&b).await;
    let (via_a, via_b) = (Control::of(&a), Control::of(&b));

    redis.stop();
    eventually("a notices", || a.broker.redis_up() == Some(false)).await;
    // Its peer confirms a whole outage: nobody can reap, so a stays ready for new clients (a
    // load balancer keeps sending them; every node is as good as another).
    eventually("a confirms the outage", || {
        a.broker.not_ready_reason().is_none()
    })
    .await;
    let r = via_a.request(Method::GET, "/readyz", "").await;
    assert_eq!(r.status, 200);
    // Local traffic goes on.
    assert_eq!(via_a.post(&id_a, "local").await.status, 200);
    assert_eq!(next_message(&mut on_a).await, Message::text("local"));
    // Cross-node calls fail fast with 503, never a false 410.
    let started = std::time::Instant::now();
    let r = via_a.post(&id_b, "far").await;
    assert_eq!(r.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "not fast: {:?}",
        started.elapsed()
    );
    assert!(r.headers.get("retry-after").is_some());
    // A publish reaches local subscribers and says the cluster was not reached.
    let j = via_a.publish("room", "", "partial").await.json();
    assert_eq!(j["recipients"], 1);
    assert_eq!(j["cluster"], "unavailable");
    assert_eq!(next_message(&mut on_a).await, Message::text("partial"));

    // Redis comes back (empty): the nodes reconnect and restore every subscription.
    redis.restart();
    eventually("a reconnects", || joined(&a)).await;
    eventually("b reconnects", || joined(&b)).await;
    assert_eq!(via_b.publish("room", "", "back").await.status, 200);
    assert_eq!(next_message(&mut on_a).await, Message::text("back"));
    assert_eq!(next_message(&mut on_b).await, Message::text("back"));
    assert_eq!(via_a.post(&id_b, "far again").await.status, 200);
    assert_eq!(next_message(&mut on_b).await, Message::text("far again"));
    a.shutdown().await;
    b.shutdown().await;
}

/// Starts the gangway binary as a cluster member; returns it once it logged its start.
fn spawn_node(
    redis: &RedisServer,
    id: &str,
    backend: &Backend,
    dir: &std::path::Path,
) -> (std::process::Child, String) {
    let routes = format!(
        "[routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
         [routes.\"$disconnect\"]\nintegration = \"http\"\nurl = \"{}\"\n",
        backend.url("/connect"),
        backend.url("/disconnect"),
    );
    spawn_cluster_node(redis, id, &routes, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_connections_are_reaped_exactly_once() {
    let redis = RedisServer::start();
    let backend = Backend::start().await;
    let dir = std::env::temp_dir().join(format!("gangway-reap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let routes = format!(
        "[routes.\"$disconnect\"]\nintegration = \"http\"\nurl = \"{}\"\n",
        backend.url("/disconnect")
    );
    let b = cluster_node(&redis, "reap-b", &routes).await;
    let c = cluster_node(&redis, "reap-c", &routes).await;
    let (mut child, ws_addr) = spawn_node(&redis, "reap-a", &backend, &dir);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{ws_addr}/"))
            .await
            .expect("connect");
        clients.push(ws);
    }
    let connects = backend
        .wait_for("3 connects", |c| {
            c.iter().filter(|c| c.event_type() == "CONNECT").count() == 3
        })
        .await;
    let ids: Vec<String> = connects.iter().map(|c| c.connection_id()).collect();
    // Pushes through B reach A's connections while A lives.
    assert_eq!(Control::of(&b).post(&ids[0], "alive").await.status, 200);

    // SIGKILL: no drain, no $disconnect from A itself.
    child.kill().expect("kill");
    let _ = child.wait();
    drop(clients);
    // Within the TTL and a few seconds: 410 from every other node, and one $disconnect each.
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let r = Control::of(&c).post(&ids[1], "x").await;
        if r.status == 410 {
            break;
        }
        assert_eq!(r.status, 503, "only 503 (owner silent) may come before 410");
        assert!(
            std::time::Instant::now() < deadline,
            "no 410 after the node died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = backend
        .wait_for("3 reaped disconnects", |c| {
            c.iter().filter(|c| c.event_type() == "DISCONNECT").count() >= 3
        })
        .await;
    // Give a second reaper every chance to send duplicates.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let disconnects: Vec<_> = backend
        .calls()
        .into_iter()
        .filter(|c| c.event_type() == "DISCONNECT")
        .collect();
    assert_eq!(
        disconnects.len(),
        3,
        "exactly once cluster-wide: {:#?}",
        disconnects.iter().map(|d| &d.event).collect::<Vec<_>>()
    );
    let mut reaped: Vec<String> = disconnects.iter().map(|d| d.connection_id()).collect();
    reaped.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(reaped, expected);
    for d in &disconnects {
        assert_eq!(d.event["requestContext"]["disconnectStatusCode"], 1006);
        assert_eq!(
            d.event["requestContext"]["disconnectReason"],
            "Node lost: reap-a"
        );
        assert!(d.event["requestContext"]["connectedAt"].is_i64());
    }
    let _ = calls;
    let reaped_metric = |n: &gangway::Node| {
        n.broker
            .metrics()
            .render()
            .lines()
            .any(|l| l.starts_with("gangway_cluster_reaped_connections_total 3"))
    };
    assert!(reaped_metric(&b) || reaped_metric(&c));
    b.shutdown().await;
    c.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_sends_its_own_disconnects_and_deregisters() {
    let redis = RedisServer::start();
    let backend = Backend::start().await;
    let dir = std::env::temp_dir().join(format!("gangway-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let b = cluster_node(&redis, "drain-b", "").await;
    let (child, ws_addr) = spawn_node(&redis, "drain-a", &backend, &dir);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{ws_addr}/"))
        .await
        .expect("connect");
    backend.wait_event("CONNECT", 1).await;
    let tag = gangway_broker::NodeTag::of("drain-a").to_string();
    let mut con = redis.client();
    let listed: bool = redis::cmd("HEXISTS")
        .arg("gangway:nodes")
        .arg(&tag)
        .query(&mut con)
        .expect("hexists");
    assert!(listed, "a started node is listed");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(expect_close(&mut ws).await.0, 1001);
    let d = backend.wait_event("DISCONNECT", 1).await;
    assert_eq!(d.event["requestContext"]["disconnectStatusCode"], 1001);
    let mut child = child;
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success());
    let listed: bool = redis::cmd("HEXISTS")
        .arg("gangway:nodes")
        .arg(&tag)
        .query(&mut con)
        .expect("hexists");
    assert!(!listed, "deregistered");
    let alive: bool = redis::cmd("EXISTS")
        .arg(format!("gangway:node:{tag}"))
        .query(&mut con)
        .expect("exists");
    assert!(!alive);
    // Nobody reaps a node that left cleanly: still exactly one $disconnect.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        backend
            .calls()
            .iter()
            .filter(|c| c.event_type() == "DISCONNECT")
            .count(),
        1
    );
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_node_starts_while_redis_is_down_and_joins_when_it_comes_up() {
    let mut redis = RedisServer::start();
    redis.stop();
    let n = node(&format!(
        "[routes.\"$default\"]\nintegration = \"mock\"\n[cluster]\nredis_url = \"{}\"\nnode_id = \"late\"\n{FAST}",
        redis.url()
    ))
    .await;
    // Serving locally, not ready.
    let mut ws = connect(&n).await;
    send_text(&mut ws, "local echo").await;
    assert_eq!(next_message(&mut ws).await, Message::text("local echo"));
    assert_eq!(n.broker.not_ready_reason(), Some("redis unreachable"));
    redis.restart();
    eventually("joined", || joined(&n)).await;
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_carries_everything_over_sharded_pub_sub() {
    let servers = RedisClusterServers::start();
    let urls = servers.urls();
    let room = "[routes.\"$connect\"]\nintegration = \"mock\"\nresponse = '{\"channels\": [\"room:1\", \"room:2\", \"room:3\"]}'\n";
    let mut nodes = Vec::new();
    for name in ["rc-a", "rc-b", "rc-c"] {
        let n = node(&format!(
            "{room}\n[cluster]\nmode = \"redis-cluster\"\nredis_url = \"{}\"\nseed_urls = [\"{}\", \"{}\"]\nnode_id = \"{name}\"\n{FAST}",
            urls[0], urls[1], urls[2]
        ))
        .await;
        eventually("joined", || joined(&n)).await;
        nodes.push(n);
    }
    let mut clients = Vec::new();
    for n in &nodes {
        clients.push(connect(n).await);
        eventually("subscribed", || {
            n.broker.local_subscriber_count("room:3") == 1
        })
        .await;
    }
    // Publishes to channels on different shards reach every node's client once.
    for ch in ["room:1", "room:2", "room:3"] {
        assert_eq!(Control::of(&nodes[1]).publish(ch, "", ch).await.status, 200);
        for ws in &mut clients {
            assert_eq!(next_message(ws).await, Message::text(ch));
        }
    }
    // Cross-node push and count.
    let id_a = nodes[0].broker.connection_ids().pop().expect("id");
    assert_eq!(
        Control::of(&nodes[2]).post(&id_a, "sharded").await.status,
        200
    );
    assert_eq!(
        next_message(&mut clients[0]).await,
        Message::text("sharded")
    );
    assert_eq!(
        Control::of(&nodes[0]).channel("room:2").await.json()["subscribers"],
        3
    );
    // The traffic is sharded: shard channels carry it, classic pub/sub carries nothing.
    let mut shard_subscribers = 0;
    for s in &servers.nodes {
        let mut con = s.client();
        let v: Vec<redis::Value> = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg("gangway:c:room:1")
            .query(&mut con)
            .expect("shardnumsub");
        if let Some(redis::Value::Int(n)) = v.get(1) {
            shard_subscribers += n;
        }
        let classic: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query(&mut con)
            .expect("channels");
        assert!(classic.is_empty(), "classic pub/sub used: {classic:?}");
    }
    assert_eq!(shard_subscribers, 3);
    for n in nodes {
        n.shutdown().await;
    }
}
