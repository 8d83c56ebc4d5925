//! The `gangway` binary as a user runs it: config errors, the no-config node, SIGTERM drain.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_gangway");

const ECHO: &str = "[routes.\"$default\"]\nintegration = \"mock\"\n";

#[test]
fn every_config_problem_is_reported_at_once() {
    let dir = std::env::temp_dir().join(format!("gangway-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[listen]\nwebsocket = \"nope\"\n[limits]\nmax_frame_bytes = \"big\"\n[routes.chat]\nintegration = \"http\"\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .env("GANGWAY_LIMITS_IDLE_TIMEOUT_SECS", "0")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "listen.websocket",
        "limits.max_frame_bytes",
        "routes.\"chat\".url",
        "limits.idle_timeout_secs",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    // --check on a good file.
    std::fs::write(&file, "[api]\nstage = \"dev\"\n").expect("write");
    let out = Command::new(BIN)
        .arg("--check")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    assert!(out.status.success());
    // An open control listener without credentials is refused before binding.
    let out = Command::new(BIN)
        .args(["--check", "--control-listen", "0.0.0.0:0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen.control"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn no_config_node_echoes_and_drains_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--log-format", "json"])
        .env("GANGWAY_LISTEN_WEBSOCKET", "127.0.0.1:0")
        .env("GANGWAY_LISTEN_CONTROL", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ws_addr = None;
    let deadline = std::time::Instant::now() + PATIENCE;
    while ws_addr.is_none() && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let Ok(j) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if j["fields"]["message"] == "gangway node started" {
                ws_addr = j["fields"]["websocket"].as_str().map(str::to_string);
            }
        }
    }
    let ws_addr = ws_addr.expect("startup log line with the websocket address");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{ws_addr}/"))
        .await
        .expect("connect");
    send_text(&mut ws, r#"{"action":"anything"}"#).await;
    assert_eq!(
        next_message(&mut ws).await,
        Message::text(r#"{"action":"anything"}"#)
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(expect_close(&mut ws).await.0, 1001);
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gangway did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Issue 12: `--probe` is the image's HEALTHCHECK (no curl in it).
#[tokio::test]
async fn probe_passes_for_a_live_node_and_fails_otherwise() {
    let dir = scratch_dir("probe");
    let node = NodeProcess::spawn(&dir, "probe", ECHO, &[]);
    let probe = |url: String| {
        let out = Command::new(BIN)
            .args(["--probe", &url])
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(probe(format!("http://{}/healthz", node.control)).0, Some(0));
    assert_eq!(probe(format!("http://{}/readyz", node.control)).0, Some(0));
    // A 404, a closed port, and URLs it refuses: exit 1 with the reason.
    let (code, err) = probe(format!("http://{}/nope", node.control));
    assert_eq!(code, Some(1));
    assert!(err.contains("HTTP 404"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let (code, err) = probe(format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot connect"), "{err}");
    let (code, err) = probe("https://127.0.0.1:1/healthz".into());
    assert_eq!(code, Some(1));
    assert!(err.contains("only http://"), "{err}");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

// Issue 12: a port in use is reported once, and a log that is not a terminal has no colours.
#[test]
fn a_busy_port_is_reported_once_without_colour() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let out = Command::new(BIN)
        .args([
            "--websocket-listen",
            &addr,
            "--control-listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(all.matches("in use").count(), 1, "{all}");
    assert!(all.contains(&addr), "{all}");
    assert!(
        !all.contains('\u{1b}'),
        "colour codes in a piped log: {all:?}"
    );
}

// Issue 12: a file without a $default or custom route answers every message `Forbidden`;
// --check says so (and stays valid: it is a legal, if odd, gateway).
#[test]
fn check_warns_when_no_route_answers_messages() {
    let dir = scratch_dir("no-route");
    let file = dir.join("g.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).expect("write");
        let out = Command::new(BIN)
            .arg("--check")
            .arg("--config")
            .arg(&file)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let out = check("[control]\ntokens = [\"a-long-token\"]\n");
    assert!(out.contains("warning: no route answers messages"), "{out}");
    let out = check(ECHO);
    assert!(!out.contains("warning"), "{out}");
    let out = check("[routes.chat]\nintegration = \"mock\"\n");
    assert!(!out.contains("warning"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

// Issue 12: the variables Kubernetes injects for Services called `gangway` and
// `gangway-control` do not stop the node; a misspelt key in a known section still does.
#[test]
fn kubernetes_service_link_variables_do_not_stop_the_node() {
    let links = [
        ("GANGWAY_SERVICE_HOST", "10.0.0.1"),
        ("GANGWAY_SERVICE_PORT", "8080"),
        ("GANGWAY_PORT", "tcp://10.0.0.1:8080"),
        ("GANGWAY_PORT_8080_TCP", "tcp://10.0.0.1:8080"),
        ("GANGWAY_PORT_8080_TCP_PROTO", "tcp"),
        ("GANGWAY_PORT_8080_TCP_PORT", "8080"),
        ("GANGWAY_PORT_8080_TCP_ADDR", "10.0.0.1"),
        ("GANGWAY_CONTROL_SERVICE_HOST", "10.0.0.2"),
        ("GANGWAY_CONTROL_SERVICE_PORT", "9090"),
        ("GANGWAY_CONTROL_PORT", "tcp://10.0.0.2:9090"),
        ("GANGWAY_CONTROL_PORT_9090_TCP", "tcp://10.0.0.2:9090"),
        ("GANGWAY_CONTROL_PORT_9090_TCP_PROTO", "tcp"),
        ("GANGWAY_CONTROL_PORT_9090_TCP_PORT", "9090"),
        ("GANGWAY_CONTROL_PORT_9090_TCP_ADDR", "10.0.0.2"),
    ];
    let out = Command::new(BIN)
        .arg("--check")
        .envs(links)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .arg("--check")
        .envs(links)
        .env("GANGWAY_LIMITS_MAX_MESAGE_BYTES", "1024")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.max_mesage_bytes"));
}

/// Waits until the node process logged a line containing `text` (`n` times in all).
async fn logged(node: &NodeProcess, text: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.log().iter().filter(|l| l.contains(text)).count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "never logged {text:?}:\n{}",
            node.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of the node process at `ws` (host:port).
async fn client_of(ws: &str) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(format!("ws://{ws}/"))
        .await
        .expect("connect");
    client
}

// Issue 12: SIGHUP and POST /@admin/reload re-read the file; clients stay connected and their
// next message takes the new route; a bad file is refused whole and the old one keeps serving.
#[tokio::test]
async fn reload_applies_new_routes_without_dropping_clients() {
    let dir = scratch_dir("reload");
    let route = |answer: &str| {
        format!(
            "[routes.\"$default\"]\nintegration = \"mock\"\nresponse = \"{answer}\"\n\
             [control]\ntokens = [\"reload-token-1\"]\n"
        )
    };
    let node = NodeProcess::spawn(&dir, "reload", &route("old"), &[]);
    let file = dir.join("reload.toml");
    let mut ws = client_of(&node.websocket).await;
    send_text(&mut ws, "hi").await;
    assert_eq!(next_message(&mut ws).await, Message::text("old"));

    // SIGHUP with a new route and a restart-only change: the route applies, the stage is named.
    std::fs::write(&file, format!("{}[api]\nstage = \"dev\"\n", route("new"))).expect("write");
    node.signal("HUP");
    logged(&node, "configuration reloaded", 1).await;
    let line = node
        .log()
        .into_iter()
        .find(|l| l.contains("configuration reloaded"))
        .expect("line");
    assert!(line.contains("api.stage"), "{line}");
    send_text(&mut ws, "hi").await;
    assert_eq!(next_message(&mut ws).await, Message::text("new"));

    // A bad file: refused whole, logged with its problem, the running configuration stays.
    std::fs::write(
        &file,
        format!("{}[limits]\nmax_frame_bytes = \"big\"\n", route("broken")),
    )
    .expect("write");
    node.signal("HUP");
    logged(&node, "configuration reload refused", 1).await;
    assert!(node.log().join("\n").contains("limits.max_frame_bytes"));
    send_text(&mut ws, "hi").await;
    assert_eq!(next_message(&mut ws).await, Message::text("new"));

    // The same through the control API: credentials required; 422 for a bad file; 200 with
    // what applied.
    let api = Control::at(&format!("http://{}", node.control));
    let r = api
        .request(reqwest::Method::POST, "/@admin/reload", "")
        .await;
    assert_eq!(r.status, 401);
    let admin = api.bearer("reload-token-1");
    let r = admin
        .request(reqwest::Method::POST, "/@admin/reload", "")
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.json()["message"]
        .as_str()
        .is_some_and(|m| m.contains("limits.max_frame_bytes")));
    // New token too: the next request must use it.
    std::fs::write(
        &file,
        "[routes.\"$default\"]\nintegration = \"mock\"\nresponse = \"newer\"\n\
         [control]\ntokens = [\"reload-token-2\"]\n",
    )
    .expect("write");
    let r = admin
        .request(reqwest::Method::POST, "/@admin/reload", "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let applied: Vec<&str> = j["applied"]
        .as_array()
        .expect("applied")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        applied.contains(&"routes") && applied.contains(&"control"),
        "{j}"
    );
    send_text(&mut ws, "hi").await;
    assert_eq!(next_message(&mut ws).await, Message::text("newer"));
    let r = admin
        .request(reqwest::Method::POST, "/@admin/reload", "")
        .await;
    assert_eq!(
        r.status, 403,
        "the old token must be refused after the reload"
    );
    let r = api
        .bearer("reload-token-2")
        .request(reqwest::Method::POST, "/@admin/reload", "")
        .await;
    assert_eq!(r.status, 200);
    // The client was never dropped.
    send_text(&mut ws, "still here").await;
    assert_eq!(next_message(&mut ws).await, Message::text("newer"));
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
