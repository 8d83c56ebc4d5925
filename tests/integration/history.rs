//! Channel history, the JSON envelope and recovery on reconnect, on one node, with real
//! clients: offsets in publish answers, replay after a reconnect, every way a gap is lost, the
//! history API and its refusals.

use std::time::Duration;

use crate::support::*;
use futures_util::StreamExt;
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

/// `$connect` subscribes every client to `news:eu` and `plain`; `news:*` keeps 5 messages.
const CONFIG: &str = r#"
[routes."$connect"]
integration = "mock"
response = '{"channels":["news:eu","news:1","news:2","news:3","news:4","plain"]}'
[[channels]]
pattern = "news:*"
history_size = 5
envelope = "json"
"#;

async fn connect_to(node: &gangway::Node, query: &str) -> Client {
    let (ws, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::connect_async(ws_url(node, &format!("/{query}"))),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    ws
}

/// Asserts nothing arrives on `ws` for a short while.
async fn silent(ws: &mut Client) {
    if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
        panic!("unexpected message {m:?}");
    }
}

async fn publish(api: &Control, channel: &str, body: &str) -> serde_json::Value {
    let r = api.publish(channel, "", body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Waits until `n` clients are subscribed to `channel`.
async fn subscribers(node: &gangway::Node, channel: &str, n: usize) {
    eventually("subscribed", || {
        node.broker.local_subscriber_count(channel) == n
    })
    .await;
}

#[tokio::test]
async fn offsets_envelope_and_recovery_after_a_reconnect() {
    let node = node(CONFIG).await;
    let api = Control::of(&node);
    let mut a = connect_to(&node, "").await;
    subscribers(&node, "news:eu", 1).await;

    // Offsets start at 1 in a fresh epoch; subscribers get the envelope.
    let first = publish(&api, "news:eu", r#"{"n":1}"#).await;
    assert_eq!(first["offset"], 1);
    assert_eq!(first["recipients"], 1);
    let epoch = first["epoch"].as_str().expect("epoch").to_string();
    assert_eq!(
        next_json(&mut a).await,
        serde_json::json!({"channel":"news:eu","offset":1,"epoch":epoch,"data":{"n":1}})
    );
    for n in 2..=3 {
        assert_eq!(
            publish(&api, "news:eu", &format!("text {n}")).await["offset"],
            n
        );
        let m = next_json(&mut a).await;
        assert_eq!(
            (m["offset"].as_u64(), m["data"].as_str()),
            (Some(n), Some(format!("text {n}").as_str()))
        );
    }
    // A channel no rule covers is as before: raw payloads, no offsets.
    let plain = publish(&api, "plain", "raw").await;
    assert!(plain.get("offset").is_none(), "{plain}");
    assert_eq!(next_message(&mut a).await, Message::text("raw"));

    // The client drops; two messages are published while it is away.
    drop(a);
    subscribers(&node, "news:eu", 0).await;
    for n in 4..=5 {
        publish(&api, "news:eu", &format!("text {n}")).await;
    }
    let mut b = connect_to(&node, &format!("?recover=news:eu:3:{epoch}")).await;
    for n in 4..=5 {
        assert_eq!(next_json(&mut b).await["offset"], n);
    }
    // Then live, no gap, no duplicate.
    publish(&api, "news:eu", "text 6").await;
    assert_eq!(next_json(&mut b).await["offset"], 6);
    silent(&mut b).await;

    // At the head: nothing to replay, nothing said.
    let mut c = connect_to(&node, &format!("?recover=news:eu:6:{epoch}")).await;
    silent(&mut c).await;

    // Trimmed (5 kept: 2..=6), beyond the head, another epoch: told first, then live.
    for query in [
        format!("?recover=news:eu:0:{epoch}"),
        format!("?recover=news:eu:9:{epoch}"),
        "?recover=news:eu:3:000000000000".to_string(),
    ] {
        let mut d = connect_to(&node, &query).await;
        let notice = next_json(&mut d).await;
        assert_eq!(
            notice,
            serde_json::json!({"type":"recovery","channel":"news:eu","recovered":false,"epoch":epoch,"offset":6}),
            "{query}"
        );
        silent(&mut d).await;
    }

    // A channel the client was not subscribed to: told so, nothing of the channel leaks.
    publish(&api, "news:us", "secret").await;
    let mut e = connect_to(&node, "?recover=news:us:0:abc").await;
    let notice = next_json(&mut e).await;
    assert_eq!(notice["recovered"], false);
    assert_eq!(notice["reason"], "not subscribed");
    assert!(notice.get("epoch").is_none(), "{notice}");
    silent(&mut e).await;
    // A channel without history: told so.
    let mut f = connect_to(&node, "?recover=plain:3:abc").await;
    assert_eq!(next_json(&mut f).await["reason"], "no history");

    // Batch publishes get offsets too.
    let r = api
        .batch(r#"[{"channel":"news:eu","data":"batched"},{"channel":"plain","data":"x"}]"#)
        .await;
    let results = r.json()["results"].clone();
    assert_eq!(results[0]["offset"], 7);
    assert_eq!(results[0]["epoch"], epoch.as_str());
    assert!(results[1].get("offset").is_none());
}

#[tokio::test]
async fn malformed_recover_values_are_refused_before_connect() {
    let node = node(CONFIG).await;
    for query in [
        "?recover=news:eu",
        "?recover=news:eu:x:abc",
        "?recover=news:eu:-1:abc",
        "?recover=news:eu:1:bad%20epoch",
        "?recover=bad%20name:1:abc",
        "?recover=news:eu:1:a&recover=news:eu:2:a",
        "?recover=news:eu:99999999999999999999999:abc",
    ] {
        match tokio_tungstenite::connect_async(ws_url(&node, &format!("/{query}"))).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), 400, "{query}")
            }
            other => panic!("{query}: expected 400, got {other:?}"),
        }
    }
    let too_many: String = (0..101).map(|i| format!("&recover=c{i}:1:e")).collect();
    match tokio_tungstenite::connect_async(ws_url(&node, &format!("/?x=1{too_many}"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 400),
        other => panic!("expected 400, got {other:?}"),
    }
    assert_eq!(node.broker.connection_count(), 0);
    // A well-formed one still passes.
    let _ok = connect_to(&node, "?recover=news:eu:0:abc").await;
}

#[tokio::test]
async fn history_api_pages_refuses_bad_queries_and_forgets() {
    let node = node(CONFIG).await;
    let api = Control::of(&node);
    for n in 1..=7 {
        publish(&api, "news:eu", &format!("m{n}")).await;
    }
    publish(&api, "news:eu", "\u{1F600}").await;
    let r = api
        .request(Method::POST, "/@channels/news:eu", vec![0xffu8, 0x00])
        .await;
    assert_eq!(r.json()["offset"], 9);
    let page = api.history("news:eu", "?since=5&limit=2").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let p = page.json();
    assert_eq!(
        (p["offset"].as_u64(), p["oldest"].as_u64()),
        (Some(9), Some(5))
    );
    let offsets: Vec<u64> = p["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(offsets, vec![6, 7]);
    assert_eq!(p["items"][0]["data"], "m6");
    assert_eq!(p["next"], 7);
    let last = api.history("news:eu", "?since=7").await.json();
    assert_eq!(last["items"][0]["data"], "\u{1F600}");
    assert_eq!(last["items"][1]["data"], "/wA=");
    assert_eq!(last["items"][1]["binary"], true);
    assert!(last.get("next").is_none());

    for (query, why) in [
        ("?limit=5000", "limit"),
        ("?limit=0", "limit"),
        ("?since=abc", "since"),
        ("?since=-1", "since"),
        ("?since=10", "beyond"),
    ] {
        let r = api.history("news:eu", query).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert!(r.body.contains(why), "{query}: {}", r.body);
    }
    let r = api.history("plain", "").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("keeps no history"), "{}", r.body);
    let r = api.history("bad%20name", "").await;
    assert_eq!(r.status, 400);

    let r = api.clear_history("news:eu").await;
    assert_eq!(r.json()["deleted"], 5);
    let p = api.history("news:eu", "").await.json();
    assert_eq!(p["items"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        (p["offset"].as_u64(), p["oldest"].as_u64()),
        (Some(9), Some(10))
    );
    // The offsets go on; a client behind them is told it cannot recover.
    assert_eq!(publish(&api, "news:eu", "m10").await["offset"], 10);
    let epoch = p["epoch"].as_str().expect("epoch");
    let mut c = connect_to(&node, &format!("?recover=news:eu:8:{epoch}")).await;
    assert_eq!(next_json(&mut c).await["recovered"], false);
    // The metrics count what is kept and the recoveries.
    let metrics = metrics_text(&node).await;
    assert!(metrics.contains("gangway_history_messages 1"), "{metrics}");
    assert!(
        metrics.contains("gangway_recoveries_total{result=\"lost\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn expired_history_cannot_be_recovered() {
    let node = node(
        "[routes.\"$connect\"]\nintegration = \"mock\"\nresponse = '{\"channels\":[\"t\"]}'\n\
         [[channels]]\npattern = \"t\"\nhistory_size = 10\nhistory_ttl_secs = 1\n",
    )
    .await;
    let api = Control::of(&node);
    let epoch = publish(&api, "t", "old").await["epoch"]
        .as_str()
        .expect("epoch")
        .to_string();
    publish(&api, "t", "newer").await;
    let mut fresh = connect_to(&node, &format!("?recover=t:1:{epoch}")).await;
    // envelope "none": the replay is the raw payload.
    assert_eq!(next_message(&mut fresh).await, Message::text("newer"));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut late = connect_to(&node, &format!("?recover=t:1:{epoch}")).await;
    let notice = next_json(&mut late).await;
    assert_eq!(notice["recovered"], false);
}

#[tokio::test]
async fn the_connect_backend_can_name_where_the_client_stopped() {
    let epoch = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = std::sync::Arc::clone(&epoch);
    let backend = Backend::with(move |call, _| {
        if call.event_type() == "CONNECT" {
            let e = seen.lock().expect("lock").clone();
            Reply::ok(format!(
                r#"{{"channels":[{{"name":"news:eu","since":{{"offset":2,"epoch":"{e}"}}}}]}}"#
            ))
        } else {
            Reply::ok("")
        }
    })
    .await;
    let node = node(&format!(
        "[routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
         [[channels]]\npattern = \"news:*\"\nhistory_size = 5\nenvelope = \"json\"\n",
        backend.url("/connect")
    ))
    .await;
    let api = Control::of(&node);
    for n in 1..=3 {
        let r = publish(&api, "news:eu", &format!("m{n}")).await;
        *epoch.lock().expect("lock") = r["epoch"].as_str().expect("epoch").to_string();
    }
    // The backend's `since` wins over the client's.
    let e = epoch.lock().expect("lock").clone();
    let mut c = connect_to(&node, &format!("?recover=news:eu:0:{e}")).await;
    assert_eq!(next_json(&mut c).await["offset"], 3);
    silent(&mut c).await;
}

async fn history_node(redis: &RedisServer, id: &str) -> gangway::Node {
    let n = node(&format!(
        "{CONFIG}\n[cluster]\nredis_url = \"{}\"\nnode_id = \"{id}\"\n{FAST}",
        redis.url()
    ))
    .await;
    eventually("joined", || joined(&n)).await;
    n
}

/// Offsets from the JSON envelopes on `ws` until `n` arrived.
async fn offsets(ws: &mut Client, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while out.len() < n {
        out.push(next_json(ws).await["offset"].as_u64().expect("offset"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_keep_history_in_redis_and_recover_anywhere() {
    let mut redis = RedisServer::start();
    let a = history_node(&redis, "h-a").await;
    let b = history_node(&redis, "h-b").await;
    let c = history_node(&redis, "h-c").await;
    let (via_a, via_b) = (Control::of(&a), Control::of(&b));
    let first = publish(&via_a, "news:eu", "warm-up").await;
    assert_eq!(first["offset"], 1);
    let epoch = first["epoch"].as_str().expect("epoch").to_string();

    // One subscriber per node, each starting after offset 1.
    let mut subs = Vec::new();
    for n in [&a, &b, &c] {
        subs.push(connect_to(n, &format!("?recover=news:eu:1:{epoch}")).await);
    }
    // Publishes from two nodes at once: every node delivers offsets 2..=21 in order.
    let (pa, pb) = (via_a.clone(), via_b.clone());
    let from_a = tokio::spawn(async move {
        for n in 0..10 {
            publish(&pa, "news:eu", &format!("a{n}")).await;
        }
    });
    let from_b = tokio::spawn(async move {
        for n in 0..10 {
            publish(&pb, "news:eu", &format!("b{n}")).await;
        }
    });
    from_a.await.expect("a");
    from_b.await.expect("b");
    for ws in &mut subs {
        assert_eq!(offsets(ws, 20).await, (2..=21).collect::<Vec<u64>>());
    }

    // The client on C drops; two publishes through A while it is away; it comes back to C
    // and gets them, then live ones, once.
    let away = subs.pop().expect("c's client");
    drop(away);
    eventually("left", || c.broker.local_subscriber_count("news:eu") == 0).await;
    publish(&via_a, "news:eu", "missed 1").await;
    publish(&via_b, "news:eu", "missed 2").await;
    let mut back = connect_to(&c, &format!("?recover=news:eu:21:{epoch}")).await;
    assert_eq!(offsets(&mut back, 2).await, vec![22, 23]);
    publish(&via_a, "news:eu", "live").await;
    assert_eq!(offsets(&mut back, 1).await, vec![24]);
    silent(&mut back).await;

    // Trimmed (5 kept: 20..=24) and unknown epochs: told, from any node.
    let mut trimmed = connect_to(&b, &format!("?recover=news:eu:3:{epoch}")).await;
    let notice = next_json(&mut trimmed).await;
    assert_eq!(
        (notice["recovered"].as_bool(), notice["offset"].as_u64()),
        (Some(false), Some(24))
    );

    // The history API answers from Redis through any node.
    let page = via_b.history("news:eu", "?since=21&limit=2").await.json();
    assert_eq!(
        (page["offset"].as_u64(), page["next"].as_u64()),
        (Some(24), Some(23))
    );
    assert_eq!(page["items"][0]["data"], "missed 1");
    let r = Control::of(&c).clear_history("news:eu").await;
    assert_eq!(r.json()["deleted"], 5);

    // Redis comes back empty: the epoch changes, and a client of the old one is told.
    redis.restart_empty();
    for n in [&a, &b, &c] {
        eventually("rejoined", || joined(n)).await;
    }
    let mut late = connect_to(&c, &format!("?recover=news:eu:24:{epoch}")).await;
    let notice = next_json(&mut late).await;
    assert_eq!(notice["recovered"], false);
    let new_epoch = notice["epoch"].as_str().expect("epoch").to_string();
    assert_ne!(new_epoch, epoch);
    assert_eq!(notice["offset"], 0);
    let r = publish(&via_a, "news:eu", "new era").await;
    assert_eq!(
        (r["offset"].as_u64(), r["epoch"].as_str()),
        (Some(1), Some(new_epoch.as_str()))
    );
    let m = next_json(&mut late).await;
    assert_eq!(
        (m["offset"].as_u64(), m["data"].as_str()),
        (Some(1), Some("new era"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_works_over_a_redis_cluster() {
    let servers = RedisClusterServers::start();
    let urls = servers.urls();
    let mut nodes = Vec::new();
    for name in ["hc-a", "hc-b"] {
        let n = node(&format!(
            "{CONFIG}\n[cluster]\nmode = \"redis-cluster\"\nredis_url = \"{}\"\nseed_urls = [\"{}\", \"{}\"]\nnode_id = \"{name}\"\n{FAST}",
            urls[0], urls[1], urls[2]
        ))
        .await;
        eventually("joined", || joined(&n)).await;
        nodes.push(n);
    }
    // Channels on different shards: each script runs on its channel's shard and SPUBLISHes.
    for ch in ["news:1", "news:2", "news:3", "news:4"] {
        let api = Control::of(&nodes[0]);
        let first = publish(&api, ch, "one").await;
        let epoch = first["epoch"].as_str().expect("epoch").to_string();
        let mut live = connect_to(&nodes[1], &format!("?recover={ch}:1:{epoch}")).await;
        eventually("subscribed", || {
            nodes[1].broker.local_subscriber_count(ch) == 1
        })
        .await;
        publish(&api, ch, "two").await;
        drop(live);
        publish(&api, ch, "three").await;
        live = connect_to(&nodes[1], &format!("?recover={ch}:1:{epoch}")).await;
        assert_eq!(offsets(&mut live, 2).await, vec![2, 3], "{ch}");
    }
}

/// `$connect` puts each client in `room` with the principal of its `?user=`.
async fn principal_backend() -> Backend {
    Backend::with(|call, _| {
        let user = call.event["queryStringParameters"]["user"]
            .as_str()
            .unwrap_or("anon")
            .to_string();
        Reply::ok(
            serde_json::json!({"channels": ["room"], "context": {"principalId": user}}).to_string(),
        )
    })
    .await
}

fn presence_config(backend: &Backend) -> String {
    format!(
        "[routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
         [[channels]]\npattern = \"room\"\npresence = true\n",
        backend.url("/connect")
    )
}

async fn presence_ids(api: &Control, limit: usize) -> (Vec<serde_json::Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor = String::new();
    loop {
        let r = api
            .presence("room", &format!("?limit={limit}{cursor}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let j = r.json();
        pages += 1;
        items.extend(j["items"].as_array().expect("items").iter().cloned());
        match j["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return (items, pages),
        }
    }
}

#[tokio::test]
async fn presence_lists_and_counts_a_channels_subscribers() {
    let backend = principal_backend().await;
    let node = node(&presence_config(&backend)).await;
    let api = Control::of(&node);
    let mut clients = Vec::new();
    for user in ["alice", "alice", "bob"] {
        clients.push(connect_to(&node, &format!("?user={user}")).await);
    }
    subscribers(&node, "room", 3).await;
    let (items, pages) = presence_ids(&api, 2).await;
    assert_eq!((items.len(), pages), (3, 2));
    let mut principals: Vec<&str> = items
        .iter()
        .map(|i| i["principalId"].as_str().expect("principal"))
        .collect();
    principals.sort_unstable();
    assert_eq!(principals, vec!["alice", "alice", "bob"]);
    assert!(items[0]["connectedAt"]
        .as_str()
        .expect("time")
        .ends_with('Z'));
    let stats = api.presence_stats("room").await.json();
    assert_eq!(
        stats,
        serde_json::json!({"connections": 3, "principals": 2})
    );
    // A client that leaves leaves the list.
    clients.pop();
    subscribers(&node, "room", 2).await;
    let stats = api.presence_stats("room").await.json();
    assert_eq!(
        stats,
        serde_json::json!({"connections": 2, "principals": 1})
    );
    // Refusals: a channel without presence, a bad cursor or limit.
    for (path, status) in [
        ("/@channels/other/presence", 400),
        ("/@channels/other/presence-stats", 400),
        ("/@channels/room/presence?cursor=nope", 400),
        ("/@channels/room/presence?limit=0", 400),
        ("/@channels/room/presence?limit=100000", 400),
        ("/@channels/room/nope", 404),
    ] {
        assert_eq!(
            api.request(Method::GET, path, "").await.status,
            status,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_the_cluster_and_forgets_a_killed_node() {
    let redis = RedisServer::start();
    let backend = principal_backend().await;
    let config = presence_config(&backend);
    let dir = std::env::temp_dir().join(format!("gangway-presence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let a = node(&format!(
        "{config}\n[cluster]\nredis_url = \"{}\"\nnode_id = \"p-a\"\n{FAST}",
        redis.url()
    ))
    .await;
    eventually("joined", || joined(&a)).await;
    let (mut child, ws_addr) = spawn_cluster_node(&redis, "p-b", &config, &dir);
    let _on_a = connect_to(&a, "?user=alice").await;
    let mut on_b = Vec::new();
    for user in ["bob", "carol"] {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{ws_addr}/?user={user}"))
            .await
            .expect("connect to b");
        on_b.push(ws);
    }
    let api = Control::of(&a);
    let stats = |api: Control| async move { api.presence_stats("room").await.json() };
    let mut seen = serde_json::Value::Null;
    for _ in 0..50 {
        seen = stats(api.clone()).await;
        if seen["connections"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, serde_json::json!({"connections": 3, "principals": 3}));
    let (items, _) = presence_ids(&api, 1).await;
    assert_eq!(items.len(), 3);

    // SIGKILL b: its subscribers leave the list once the cluster judges it dead.
    child.kill().expect("kill");
    let _ = child.wait();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = api.presence_stats("room").await;
        if r.status == 200 && r.json()["connections"] == 1 {
            assert_eq!(r.json()["principals"], 1);
            break;
        }
        assert!(
            r.status == 200 || r.status == 503,
            "only 503 (a silent node) may come before the list heals: {} {}",
            r.status,
            r.body
        );
        assert!(
            std::time::Instant::now() < deadline,
            "b's subscribers stayed listed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(on_b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_hear_who_joins_and_leaves_on_every_node() {
    let redis = RedisServer::start();
    let backend = principal_backend().await;
    let config = format!("{}join_leave = true\n", presence_config(&backend));
    let on = |id: &str| {
        format!(
            "{config}\n[cluster]\nredis_url = \"{}\"\nnode_id = \"{id}\"\n{FAST}",
            redis.url()
        )
    };
    let a = node(&on("jl-a")).await;
    let b = node(&on("jl-b")).await;
    for n in [&a, &b] {
        eventually("joined", || joined(n)).await;
    }
    let mut alice = connect_to(&a, "?user=alice").await;
    subscribers(&a, "room", 1).await;
    // Bob joins on the other node: alice hears it through Redis; bob hears nothing of himself.
    let mut bob = connect_to(&b, "?user=bob").await;
    let join = next_json(&mut alice).await;
    assert_eq!(
        (
            join["type"].as_str(),
            join["channel"].as_str(),
            join["principalId"].as_str()
        ),
        (Some("join"), Some("room"), Some("bob"))
    );
    let bob_id = join["connectionId"].as_str().expect("id").to_string();
    assert_eq!(b.broker.connection_ids(), vec![bob_id.clone()]);
    // Carol joins alice's node: both hear it.
    let carol = connect_to(&a, "?user=carol").await;
    assert_eq!(next_json(&mut alice).await["principalId"], "carol");
    assert_eq!(next_json(&mut bob).await["principalId"], "carol");
    // Bob is unsubscribed by a backend, carol closes: leave messages for those still there.
    assert_eq!(
        Control::of(&a).unsubscribe(&bob_id, "room").await.status,
        204
    );
    let leave = next_json(&mut alice).await;
    assert_eq!(
        (leave["type"].as_str(), leave["connectionId"].as_str()),
        (Some("leave"), Some(bob_id.as_str()))
    );
    drop(carol);
    let leave = next_json(&mut alice).await;
    assert_eq!(
        (leave["type"].as_str(), leave["principalId"].as_str()),
        (Some("leave"), Some("carol"))
    );
    silent(&mut bob).await;
}
