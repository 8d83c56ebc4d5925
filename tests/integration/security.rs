//! Hostile input, one test per hole closed (SECURITY.md lists them): forged or replayed control
//! requests, bodies that exhaust memory, cross-site calls, clients that starve timers or
//! over-fill queues, backends that redirect, and log injection. Each test sends what must be
//! refused and what must still pass.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const ECHO: &str = "[routes.\"$default\"]\nintegration = \"mock\"\n";
const AKID: &str = "AKIDSECURITYTEST";
const AWS_SECRET: &str = "security/test+secret";

fn sigv4_config(extra: &str) -> String {
    format!(
        "{ECHO}[[control.aws_credentials]]\naccess_key_id = \"{AKID}\"\n\
         secret_access_key = \"{AWS_SECRET}\"\n{extra}"
    )
}

/// `X-Amz-Date` now, and the scope date.
fn amz_now() -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let (days, secs) = (now.div_euclid(86_400), now.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}{m:02}{d:02}");
    let time = format!(
        "{date}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    (time, date)
}

/// A request head that looks SigV4-signed with `key` at `amz` (`X-Amz-Date`) and `date` (the
/// scope's); the signature itself is garbage.
fn signed_looking_head_at(
    node: &gangway::Node,
    key: &str,
    content_length: usize,
    (amz, date): (&str, &str),
) -> String {
    format!(
        "POST /prod/@batch HTTP/1.1\r\nHost: {}\r\nX-Amz-Date: {amz}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={key}/{date}/us-east-1/execute-api/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={}\r\nContent-Length: {content_length}\r\n\r\n",
        node.control_addr,
        "0".repeat(64)
    )
}

/// The same, dated now.
fn signed_looking_head(node: &gangway::Node, key: &str, content_length: usize) -> String {
    let (amz, date) = amz_now();
    signed_looking_head_at(node, key, content_length, (&amz, &date))
}

/// The status of the first HTTP response on `s`.
async fn response_status(s: &mut TcpStream) -> u16 {
    let head = read_head(s).await;
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {head:?}"))
}

// Items 1 and 3: the signature covers the body received; host and x-amz-date must be signed;
// the scope date must be a date; unknown keys and bad signatures read alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_covers_the_body_and_refuses_replays_and_sloppy_scopes() {
    let py = venv_python();
    let node = node(&sigv4_config("")).await;
    let (mut ws, id) = connect_with_id(&node).await;
    let endpoint = format!("{}/prod", control_url(&node));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigv4_attacks.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(py)
            .arg(script)
            .args([&endpoint, &id, AKID, AWS_SECRET])
            .output()
            .expect("run python")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "attacks:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    // Exactly the accepted pushes arrived; nothing a replay carried.
    for expected in ["harmless", "with hash", "x"] {
        assert_eq!(next_message(&mut ws).await, Message::text(expected));
    }
    ws.send(Message::text("still here")).await.expect("send");
    assert_eq!(next_message(&mut ws).await, Message::text("still here"));
    node.shutdown().await;
}

// Item 2: a request that merely looks signed is refused before its body is read.
#[tokio::test]
async fn a_signed_looking_request_is_refused_before_its_body_is_read() {
    let node = node(&sigv4_config("")).await;
    // An unknown key, a 16 MiB body announced and never sent: answered at once.
    let mut s = TcpStream::connect(node.control_addr).await.expect("tcp");
    s.write_all(signed_looking_head(&node, "AKIDUNKNOWN", 16 << 20).as_bytes())
        .await
        .expect("write");
    assert_eq!(response_status(&mut s).await, 403);
    // A stale date too.
    let mut s = TcpStream::connect(node.control_addr).await.expect("tcp");
    let stale = signed_looking_head_at(&node, AKID, 16 << 20, ("20200101T000000Z", "20200101"));
    s.write_all(stale.as_bytes()).await.expect("write");
    assert_eq!(response_status(&mut s).await, 403);
    // Over the body limit by Content-Length: 413 without reading.
    let mut s = TcpStream::connect(node.control_addr).await.expect("tcp");
    s.write_all(signed_looking_head(&node, AKID, (16 << 20) + 1).as_bytes())
        .await
        .expect("write");
    assert_eq!(response_status(&mut s).await, 413);
    node.shutdown().await;
}

// Item 2: bodies awaiting verification are capped in count (and bytes), and must arrive in time.
#[tokio::test]
async fn unverified_bodies_are_capped_and_must_arrive_in_time() {
    let node = node(&sigv4_config("[control]\nbody_timeout_secs = 1\n")).await;
    // 64 known-key requests announcing 1 MiB each and trickling: the 65th is refused at once.
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut s = TcpStream::connect(node.control_addr).await.expect("tcp");
        s.write_all(signed_looking_head(&node, AKID, 1 << 20).as_bytes())
            .await
            .expect("write");
        s.write_all(b"[").await.expect("write");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s = TcpStream::connect(node.control_addr).await.expect("tcp");
    s.write_all(signed_looking_head(&node, AKID, 10).as_bytes())
        .await
        .expect("write");
    assert_eq!(response_status(&mut s).await, 503);
    // The stalled ones time out (408) after body_timeout_secs, freeing the budget.
    for s in &mut held {
        assert_eq!(response_status(s).await, 408);
    }
    drop(held);
    let mut s = TcpStream::connect(node.control_addr).await.expect("tcp");
    s.write_all(signed_looking_head(&node, AKID, 2).as_bytes())
        .await
        .expect("write");
    s.write_all(b"[]").await.expect("write");
    assert_eq!(
        response_status(&mut s).await,
        403,
        "read and verified (a garbage signature)"
    );
    node.shutdown().await;
}

// Item 4: a 16 MiB batch raises the node's peak memory by a small multiple of its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_batch_costs_a_small_multiple_of_its_size() {
    let dir = scratch_dir("batch-memory");
    let mut proc = NodeProcess::spawn(&dir, "node", ECHO, &[]);
    let pid = proc.child.id();
    let c = http();
    let url = format!("http://{}/@batch", proc.control);
    // Warm up the allocator and the HTTP path.
    let r = c.post(&url).body("[]").send().await.expect("post");
    assert_eq!(r.status(), 200);
    let before = peak_rss(pid);
    let size = 16 << 20;
    // Items that are tiny objects (the old parser built a tree node for every one of them)...
    let mut flat = String::from("[");
    while flat.len() < size - 16 {
        flat.push_str("{\"\":0},");
    }
    flat.pop();
    flat.push(']');
    // ...and the same nested in one item's data.
    let id = "AVpvRk1vGeeYed9gPVVeYgSb";
    let mut nested = format!("[{{\"connectionId\":\"{id}\",\"data\":[");
    while nested.len() < size - 16 {
        nested.push_str("{\"\":0},");
    }
    nested.pop();
    nested.push_str("]}]");
    for body in [flat, nested] {
        let r = c.post(&url).body(body).send().await.expect("post");
        assert!(r.status() == 413 || r.status() == 200, "{}", r.status());
    }
    let grew = peak_rss(pid).saturating_sub(before);
    println!(
        "peak RSS grew by {grew} bytes for a {size}-byte batch: {:.2}x",
        grew as f64 / size as f64
    );
    assert!(
        grew < 4 * size as u64,
        "a 16 MiB batch raised peak RSS by {grew} bytes"
    );
    proc.signal("TERM");
    assert!(proc.wait_exit().await.success());
    let _ = std::fs::remove_dir_all(&dir);
}

// Item 5: without credentials, only local programs may call the control API.
#[tokio::test]
async fn the_credential_less_control_api_refuses_browsers_and_foreign_hosts() {
    let node = node(ECHO).await;
    let (mut ws, _) = connect_with_id(&node).await;
    let url = format!("{}/@broadcast", control_url(&node));
    let c = http();
    // A web page's "simple" request: text/plain with an Origin.
    let r = c
        .post(&url)
        .header("Origin", "http://evil.example")
        .header("Content-Type", "text/plain")
        .body("from a web page")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-amzn-errortype"], "ForbiddenException");
    let r = c
        .post(&url)
        .header("Sec-Fetch-Site", "cross-site")
        .body("from a web page")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    // DNS rebinding: the page's own host name in Host.
    for host in [
        "evil.example",
        "evil.example:9090",
        "localhost.evil.example",
    ] {
        let r = c
            .post(&url)
            .header("Host", host)
            .body("rebound")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 403, "{host}");
        let r = c
            .get(format!("{}/metrics", control_url(&node)))
            .header("Host", host)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 403, "metrics via {host}");
    }
    // Local programs pass, with any loopback Host.
    for host in [
        node.control_addr.to_string(),
        format!("localhost:{}", node.control_addr.port()),
    ] {
        let r = c
            .post(&url)
            .header("Host", host.as_str())
            .body("local")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(next_message(&mut ws).await, Message::text("local"));
    }
    node.shutdown().await;
    // With credentials configured, the credentials decide (an Origin is no reason to refuse).
    let node = node_with(&format!(
        "{ECHO}[control]\ntokens = [\"token-security-1\"]\n"
    ))
    .await;
    let (mut ws, _) = connect_with_id(&node).await;
    let r = c
        .post(format!("{}/@broadcast", control_url(&node)))
        .bearer_auth("token-security-1")
        .header("Origin", "https://admin.example")
        .body("with token")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(next_message(&mut ws).await, Message::text("with token"));
    node.shutdown().await;
}

async fn node_with(toml: &str) -> gangway::Node {
    node(toml).await
}

/// Writes frames to `s` until `stop`, as fast as the socket takes them.
fn flood(mut w: tokio::net::tcp::OwnedWriteHalf, chunk: Vec<u8>, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
}

/// Reads server frames until a close frame; its code and reason.
async fn read_close(r: &mut tokio::net::tcp::OwnedReadHalf) -> (u16, String) {
    loop {
        let mut head = [0u8; 2];
        tokio::time::timeout(PATIENCE, r.read_exact(&mut head))
            .await
            .expect("a close frame in time")
            .expect("frame");
        let len = match head[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                r.read_exact(&mut l).await.expect("len");
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                r.read_exact(&mut l).await.expect("len");
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await.expect("payload");
        if head[0] & 0x0f == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
        }
    }
}

// Item 6: an endless fragmented message neither starves the timers nor lives forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_fragmented_message_cannot_starve_the_timers() {
    // Fragments uncapped (well, 16 M): the duration limit must still fire while the flood runs.
    let node = node(&format!(
        "{ECHO}[limits]\nmax_connection_secs = 2\nmax_fragments_per_message = 16777216\n"
    ))
    .await;
    let s = raw_upgrade(&node).await;
    let (mut r, mut w) = s.into_split();
    w.write_all(&frame(0x1, false, b"start"))
        .await
        .expect("write");
    let stop = Arc::new(AtomicBool::new(false));
    flood(w, frame(0x0, false, b"").repeat(8192), Arc::clone(&stop));
    let (code, reason) = read_close(&mut r).await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        (code, reason.as_str()),
        (1001, "Connection duration limit reached")
    );
    node.shutdown().await;

    // With the default cap, such a message is closed with 1009 as soon as it passes it.
    let node = node_with(&format!(
        "{ECHO}[limits]\nmax_fragments_per_message = 100\n"
    ))
    .await;
    let s = raw_upgrade(&node).await;
    let (mut r, mut w) = s.into_split();
    w.write_all(&frame(0x1, false, b"start"))
        .await
        .expect("write");
    let stop = Arc::new(AtomicBool::new(false));
    flood(w, frame(0x0, false, b"").repeat(64), Arc::clone(&stop));
    let (code, reason) = read_close(&mut r).await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!((code, reason.as_str()), (1009, "Too many fragments"));
    // A message within the cap is fine.
    let mut s = raw_upgrade(&node).await;
    let mut m = frame(0x1, false, b"a");
    for _ in 0..98 {
        m.extend(frame(0x0, false, b"b"));
    }
    m.extend(frame(0x0, true, b"c"));
    s.write_all(&m).await.expect("write");
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.expect("echo");
    assert_eq!(head, [0x81, 100]);
    node.shutdown().await;
}

// Item 6: the inbound rate limit counts frames, not only messages.
#[tokio::test]
async fn the_rate_limit_counts_fragments() {
    let node = node(&format!("{ECHO}[limits]\ninbound_messages_per_sec = 4\n")).await;
    let mut ws = connect(&node).await;
    // Two messages of three frames each: six frames in the window, over a limit of four,
    // though only two messages (frames are counted as they arrive).
    for _ in 0..2 {
        ws.send(Message::Frame(
            tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
                "a",
                tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
                    tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
                ),
                false,
            ),
        ))
        .await
        .expect("first fragment");
        for (part, fin) in [("b", false), ("c", true)] {
            ws.send(Message::Frame(
                tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
                    part,
                    tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
                        tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Continue,
                    ),
                    fin,
                ),
            ))
            .await
            .expect("fragment");
        }
    }
    let mut echoed = 0;
    let mut limited = 0;
    for _ in 0..2 {
        match next_message(&mut ws).await {
            Message::Text(t) if t.as_str() == "abc" => echoed += 1,
            Message::Text(t) => {
                let j: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
                assert_eq!(j["message"], "Too many requests");
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((echoed, limited), (1, 1));
    node.shutdown().await;
}

// Item 7: max_connections holds while slow $connect calls run; unfinished upgrades are capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_during_slow_connects() {
    let backend = Backend::with(|_, _| Reply::ok("").after(Duration::from_millis(800))).await;
    let node = node(&format!(
        "[routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n{ECHO}\
         [limits]\nmax_connections = 5\n",
        backend.url("/connect")
    ))
    .await;
    let url = ws_url(&node, "/");
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { tokio_tungstenite::connect_async(url).await })
        })
        .collect();
    let mut upgraded = Vec::new();
    let mut refused = 0;
    for a in attempts {
        match a.await.expect("join") {
            Ok((ws, _)) => upgraded.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 503);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((upgraded.len(), refused), (5, 15));
    // A slot comes back when a connection ends.
    drop(upgraded.pop());
    eventually("a slot is free", || node.broker.connection_count() == 4).await;
    let (_ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("room again");
    node.shutdown().await;
}

#[tokio::test]
async fn sockets_that_never_finish_their_upgrade_are_capped() {
    let node = node(&format!("{ECHO}[limits]\nmax_pending_handshakes = 3\n")).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(node.websocket_addr).await.expect("tcp"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut s = TcpStream::connect(node.websocket_addr).await.expect("tcp");
    assert_eq!(response_status(&mut s).await, 503);
    drop(idle);
    eventually_async("room for upgrades again", || async {
        tokio_tungstenite::connect_async(ws_url(&node, "/"))
            .await
            .is_ok()
    })
    .await;
    let metrics = node.broker.metrics().render();
    assert!(
        metrics.contains("gangway_handshakes_rejected_total{reason=\"handshakes_full\"} 1"),
        "{metrics}"
    );
    node.shutdown().await;
}

/// Polls an async condition until it holds.
async fn eventually_async<F, Fut>(what: &str, cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Item 8: a backend's redirect is an answer, never followed.
#[tokio::test]
async fn backend_redirects_are_not_followed() {
    let elsewhere = Backend::start().await;
    let target = elsewhere.url("/steal");
    let redirecting =
        Backend::with(move |_, _| Reply::status(307).header("Location", &target)).await;
    let node = node(&format!(
        "[routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n{ECHO}",
        redirecting.url("/connect")
    ))
    .await;
    match tokio_tungstenite::connect_async(ws_url(&node, "/")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 502),
        other => panic!(
            "a redirecting $connect let the client in: {:?}",
            other.is_ok()
        ),
    }
    redirecting.wait_event("CONNECT", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        elsewhere.calls().is_empty(),
        "the signed event was re-sent to the redirect target"
    );
    node.shutdown().await;
}

// Item 9: send_queue_max_bytes bounds real memory: empty messages count their overhead.
#[tokio::test]
async fn empty_pushes_count_against_the_send_queue() {
    let node = node(&format!(
        "{ECHO}[limits]\nsend_queue_max_bytes = 1048576\nslow_consumer_policy = \"drop\"\n"
    ))
    .await;
    let (_ws, id) = connect_with_id(&node).await;
    // This runtime has one thread and the loop never yields: the connection's task cannot
    // drain the queue meanwhile, so exactly what the queue takes is counted.
    let mut accepted = 0usize;
    loop {
        match node
            .broker
            .post_to_connection(&id, bytes::Bytes::new())
            .await
        {
            Ok(()) => accepted += 1,
            Err(gangway_broker::ConnectionError::LimitExceeded) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(accepted < 1_000_000, "the queue never filled");
    }
    // 1 MiB at 66 counted bytes per empty frame (2 bytes and the overhead) is 15 887; it used
    // to be 524 288 (2 bytes each), which cost 36 MB.
    assert_eq!(accepted, (1 << 20) / 66, "empty pushes a 1 MiB queue takes");
    node.shutdown().await;
}

// Item 11: a failing $disconnect backend cannot take the permits $connect needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_disconnect_backend_does_not_stall_connects() {
    let connect = Backend::start().await;
    // $disconnect: accepts the TCP connection and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hole_addr = hole.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let node = node(&format!(
        "[routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
         [routes.\"$disconnect\"]\nintegration = \"http\"\nurl = \"http://{hole_addr}/d\"\n\
         timeout_ms = 5000\n{ECHO}\
         [limits]\nmax_concurrent_integration_calls = 2\nmax_concurrent_disconnect_calls = 2\n",
        connect.url("/connect")
    ))
    .await;
    // Churn: four connections come and go; their $disconnect calls hang.
    for _ in 0..4 {
        let mut ws = connect_ws(&node).await;
        ws.close(None).await.expect("close");
        while ws.next().await.is_some() {}
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A new client is let in at once, not after the hung calls time out.
    let started = std::time::Instant::now();
    let _ws = connect_ws(&node).await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "$connect waited {waited:?} behind $disconnect calls"
    );
    node.shutdown().await;
}

async fn connect_ws(node: &gangway::Node) -> Client {
    connect(node).await
}

// Item 11: waiting for an integration permit counts against the route's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_permit_counts_against_the_timeout() {
    let slow = Backend::with(|_, _| Reply::ok("late").after(Duration::from_secs(3))).await;
    let node = node(&format!(
        "[routes.\"$default\"]\nintegration = \"http\"\nurl = \"{}\"\ntimeout_ms = 1000\ntwo_way = true\n\
         [limits]\nmax_concurrent_integration_calls = 1\n",
        slow.url("/m")
    ))
    .await;
    let mut a = connect(&node).await;
    let mut b = connect(&node).await;
    send_text(&mut a, "first").await;
    slow.wait_event("MESSAGE", 1).await;
    let started = std::time::Instant::now();
    send_text(&mut b, "second").await;
    // b's call waits for a's permit, which a holds for its whole 1 s timeout; b's own second
    // therefore ends while it waits: Internal server error well before a's 3 s backend replies.
    let j = next_json(&mut b).await;
    assert_eq!(j["message"], "Internal server error");
    // (It used to wait for the permit first and then time out: about 2 s.)
    assert!(
        started.elapsed() < Duration::from_millis(1700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(next_json(&mut a).await["message"], "Internal server error");
    node.shutdown().await;
}

// Item 12: untrusted strings cannot forge log lines; one line per $connect answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_strings_are_logged_escaped_and_once() {
    let mut bad: Vec<String> = (0..1_904).map(|i| format!("bad name {i}")).collect();
    bad.push("x\nERROR forged: channel".into());
    let answer = serde_json::json!({ "channels": bad }).to_string();
    let backend = Backend::with(move |_, _| Reply::ok(answer.clone())).await;
    let dir = scratch_dir("log-injection");
    let toml = format!(
        "[api]\nwebhook_secret = \"log-test-secret\"\n\
         [routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n{ECHO}",
        backend.url("/connect")
    );
    // Text logs, where a raw newline would start a forged record.
    let proc = NodeProcess::spawn(
        &dir,
        "node",
        &toml,
        &["--log-level", "debug", "--log-format", "text"],
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", proc.websocket))
        .await
        .expect("connect");
    ws.send(Message::Close(Some(
        tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 4000.into(),
            reason: "bye\nERROR forged: admin logged in".into(),
        },
    )))
    .await
    .expect("close");
    while ws.next().await.is_some() {}
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = proc.log();
    let summaries: Vec<_> = log
        .iter()
        .filter(|l| l.contains("$connect channels not subscribed"))
        .collect();
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    assert!(summaries[0].contains("refused=1905"), "{}", summaries[0]);
    assert!(
        log.iter()
            .any(|l| l.contains("gangway::access") && l.contains("bye\\nERROR forged")),
        "the close reason is logged, escaped"
    );
    for line in &log {
        assert!(
            line.starts_with(|c: char| c.is_ascii_digit()),
            "a log record was split or forged: {line:?}"
        );
    }
    drop(proc);
    let _ = std::fs::remove_dir_all(&dir);
}

// Item 12: a node that calls backends needs a webhook secret; none is ever generated or logged.
#[test]
fn an_http_route_without_a_webhook_secret_is_refused() {
    let dir = scratch_dir("no-secret");
    let file = dir.join("g.toml");
    std::fs::write(
        &file,
        "[routes.\"$connect\"]\nintegration = \"http\"\nurl = \"http://127.0.0.1:1/c\"\n",
    )
    .expect("write");
    for args in [vec!["--check"], vec![]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gangway"))
            .arg("--config")
            .arg(&file)
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("api.webhook_secret"), "{err}");
    }
    // With a secret (here from the environment) it is valid; a mock-only node needs none.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gangway"))
        .arg("--config")
        .arg(&file)
        .arg("--check")
        .env("GANGWAY_API_WEBHOOK_SECRET", "from-the-env")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&file, ECHO).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gangway"))
        .arg("--config")
        .arg(&file)
        .arg("--check")
        .output()
        .expect("run");
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

// Item 14: domainName is never the client's Host header.
#[tokio::test]
async fn domain_name_is_never_taken_from_the_client() {
    let backend = Backend::start().await;
    let route = format!(
        "[routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n{ECHO}",
        backend.url("/connect")
    );
    let node = node(&route).await;
    let mut s = TcpStream::connect(node.websocket_addr).await.expect("tcp");
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: attacker.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    assert!(read_head(&mut s).await.starts_with("HTTP/1.1 101"));
    let call = backend.wait_event("CONNECT", 1).await;
    assert_eq!(
        call.event["requestContext"]["domainName"],
        node.websocket_addr.to_string()
    );
    node.shutdown().await;
    // A configured domain_name wins.
    let node = node_with(&format!("[api]\ndomain_name = \"ws.example.com\"\n{route}")).await;
    let _ws = connect(&node).await;
    let call = backend.wait_event("CONNECT", 2).await;
    assert_eq!(call.event["requestContext"]["domainName"], "ws.example.com");
    node.shutdown().await;
}

const FAST_CLUSTER: &str =
    "heartbeat_interval_ms = 200\nnode_ttl_ms = 1000\nrpc_timeout_ms = 2000\n";

/// A node of a cluster on `redis_url` with extra `[cluster]` keys.
async fn cluster_member(
    id: &str,
    redis_url: &str,
    cluster_extra: &str,
    extra: &str,
) -> gangway::Node {
    node(&format!(
        "{ECHO}{extra}\n[cluster]\nredis_url = \"{redis_url}\"\nnode_id = \"{id}\"\n{FAST_CLUSTER}{cluster_extra}"
    ))
    .await
}

// Item 13: rediss:// works, verified against tls_ca_file; a server signed by another CA is not
// trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_is_verified() {
    let dir = scratch_dir("redis-tls");
    let ca = TestCa::new(&dir, "good");
    let other = TestCa::new(&dir, "other");
    let redis = RedisServer::start_tls(&ca);
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let trust = |ca: &TestCa| format!("tls_ca_file = \"{}\"\n", ca.ca.display());
    let a = cluster_member("tls-a", &url, &trust(&ca), "").await;
    let b = cluster_member("tls-b", &url, &trust(&ca), "").await;
    for n in [&a, &b] {
        eventually("joined over TLS", || n.broker.not_ready_reason().is_none()).await;
    }
    // A push from b reaches a client of a, through Redis over TLS.
    let (mut ws, id) = connect_with_id(&a).await;
    let r = http()
        .post(format!("{}/@connections/{id}", control_url(&b)))
        .body("over tls")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(next_message(&mut ws).await, Message::text("over tls"));
    // Trusting another CA: never joins.
    let c = cluster_member("tls-c", &url, &trust(&other), "").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.broker.not_ready_reason(), Some("redis unreachable"));
    for n in [a, b, c] {
        n.shutdown().await;
    }
    // A CA file that is not one is refused by validation, with its key.
    let bogus = dir.join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").expect("write");
    let problems = gangway_broker::Config::from_toml_str(&format!(
        "[cluster]\nredis_url = \"{url}\"\ntls_ca_file = \"{}\"\n",
        bogus.display()
    ))
    .expect_err("invalid");
    assert_eq!(problems.problems[0].key, "cluster.tls_ca_file");
    let problems = gangway_broker::Config::from_toml_str(&format!(
        "[cluster]\nredis_url = \"redis://127.0.0.1:1\"\ntls_ca_file = \"{}\"\n",
        ca.ca.display()
    ))
    .expect_err("plain URL with a CA");
    assert_eq!(problems.problems[0].key, "cluster.redis_url");
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

// Item 13: Redis ACL credentials in the URL; a wrong password never joins and is never logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acl_credentials_from_the_url() {
    let redis = RedisServer::start_with(
        &[
            "--user",
            "default",
            "off",
            "--user",
            "gangway",
            "on",
            ">acl-pass-1234",
            "~gangway:*",
            "&gangway:*",
            "+@all",
        ],
        false,
    );
    let good = format!("redis://gangway:acl-pass-1234@127.0.0.1:{}", redis.port);
    let a = cluster_member("acl-a", &good, "", "").await;
    eventually("joined with credentials", || {
        a.broker.not_ready_reason().is_none()
    })
    .await;
    let dir = scratch_dir("redis-acl");
    let wrong = format!("redis://gangway:wrong-pass-5678@127.0.0.1:{}", redis.port);
    let proc = NodeProcess::spawn(
        &dir,
        "wrong",
        &format!("{ECHO}[cluster]\nredis_url = \"{wrong}\"\nnode_id = \"acl-b\"\n{FAST_CLUSTER}"),
        &[],
    );
    let readyz = format!("http://{}/readyz", proc.control);
    let r = http().get(&readyz).send().await.expect("readyz");
    assert_eq!(r.status(), 503);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = proc.log().join("\n");
    assert!(
        !log.contains("wrong-pass-5678"),
        "the password was logged:\n{log}"
    );
    // No password either: refused.
    let anonymous = cluster_member(
        "acl-c",
        &format!("redis://127.0.0.1:{}", redis.port),
        "",
        "",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        anonymous.broker.not_ready_reason(),
        Some("redis unreachable")
    );
    a.shutdown().await;
    anonymous.shutdown().await;
    drop(proc);
    let _ = std::fs::remove_dir_all(&dir);
}

// Item 13: what arrives from Redis passes this node's max_message_bytes like a local push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_messages_over_the_size_limit_are_dropped() {
    use gangway_broker::internals::Msg;
    let redis = RedisServer::start();
    let a = cluster_member(
        "size-a",
        &redis.url(),
        "",
        "[limits]\nmax_message_bytes = 1000\nmax_frame_bytes = 1000\n",
    )
    .await;
    eventually("joined", || a.broker.not_ready_reason().is_none()).await;
    let (mut ws, id) = connect_with_id(&a).await;
    a.broker.subscribe(&id, "big").await.expect("subscribe");
    // Another "node" (anyone who can write to Redis) publishes straight to the channel.
    let publish = |payload: Vec<u8>| {
        let msg = Msg::Publish {
            origin: gangway_broker::NodeTag::of("elsewhere"),
            channel: "big".into(),
            exclude: None,
            payload: payload.into(),
        };
        let _: i64 = redis::cmd("PUBLISH")
            .arg("gangway:c:big")
            .arg(msg.encode())
            .query(&mut redis.client())
            .expect("publish");
    };
    publish(vec![b'x'; 2000]);
    publish(b"small".to_vec());
    assert_eq!(next_message(&mut ws).await, Message::text("small"));
    let metrics = a.broker.metrics().render();
    assert!(
        metrics.contains("gangway_cluster_dropped_total{reason=\"too_large\"} 1"),
        "{metrics}"
    );
    a.shutdown().await;
}
