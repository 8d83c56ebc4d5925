//! What operators watch: every metric the dashboard (`deploy/grafana/gangway.json`) and the
//! alerting rules (`deploy/prometheus/alerts.yaml`) name is exported by a live node — a single
//! node and cluster members — checked by `scripts/check-metric-names.py` against their real
//! `/metrics`, after a little traffic (a connection, a message through a backend, a push, a
//! close). And the access log: one line per connection, with what it carried.

use reqwest::Method;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// Runs the checker on these nodes' metrics.
fn check_metric_names(nodes: &[&gangway::Node]) {
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}/metrics", control_url(n)))
        .collect();
    let root = env!("CARGO_MANIFEST_DIR");
    let python = std::path::Path::new(root).join(".venv/bin/python");
    let python = if python.exists() {
        python.to_string_lossy().into_owned()
    } else {
        "python3".to_string()
    };
    let out = std::process::Command::new(python)
        .arg(format!("{root}/scripts/check-metric-names.py"))
        .args(&urls)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "metrics named by the dashboard or the alerts are missing:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A connection that sends one message through the backend, gets a push, and closes.
async fn some_traffic(node: &gangway::Node) {
    let (mut ws, id) = connect_with_id(node).await;
    send_text(&mut ws, "hello").await;
    let api = Control::of(node);
    assert_eq!(api.post(&id, "pushed").await.status, 200);
    let mut pushed = false;
    for _ in 0..3 {
        if next_message(&mut ws).await == Message::text("pushed") {
            pushed = true;
            break;
        }
    }
    assert!(pushed);
    assert_eq!(
        api.request(Method::GET, &format!("/@connections/{id}"), "")
            .await
            .status,
        200
    );
    drop(ws);
    eventually("closed", || node.broker.connection_count() == 0).await;
}

fn routes(backend: &Backend) -> String {
    format!(
        "[api]\nwebhook_secret = \"observability-secret\"\n\
         [routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
         [routes.\"$disconnect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
         [routes.\"$default\"]\nintegration = \"http\"\nurl = \"{}\"\n",
        backend.url("/connect"),
        backend.url("/disconnect"),
        backend.url("/message"),
    )
}

#[tokio::test]
async fn a_single_node_exports_every_metric_the_dashboard_and_alerts_use() {
    let backend = Backend::start().await;
    let node = node(&routes(&backend)).await;
    some_traffic(&node).await;
    check_metric_names(&[&node]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_members_export_every_metric_the_dashboard_and_alerts_use() {
    let backend = Backend::start().await;
    let redis = RedisServer::start();
    let member = |id: &'static str| {
        let toml = format!(
            "{}[cluster]\nredis_url = \"{}\"\nnode_id = \"{id}\"\n\
             heartbeat_interval_ms = 200\nnode_ttl_ms = 1000\n",
            routes(&backend),
            redis.url()
        );
        async move {
            let n = node(&toml).await;
            eventually("joined", || joined(&n)).await;
            n
        }
    };
    let a = member("obs-a").await;
    let b = member("obs-b").await;
    // A push across nodes, so both directions of cluster traffic exist.
    let (mut ws, id) = connect_with_id(&a).await;
    assert_eq!(Control::of(&b).post(&id, "across").await.status, 200);
    assert_eq!(next_message(&mut ws).await, Message::text("across"));
    drop(ws);
    some_traffic(&b).await;
    check_metric_names(&[&a, &b]);
    a.shutdown().await;
    b.shutdown().await;
}

// Issue 12: one access line per connection at info, with what it carried; off with
// `[log] access = false`.
#[tokio::test]
async fn the_access_log_has_one_line_per_connection() {
    let dir = scratch_dir("access");
    let echo = "[routes.\"$default\"]\nintegration = \"mock\"\n";
    let node = NodeProcess::spawn(&dir, "access", echo, &[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", node.websocket))
        .await
        .expect("connect");
    send_text(&mut ws, "twelve bytes").await;
    assert_eq!(next_message(&mut ws).await, Message::text("twelve bytes"));
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .expect("close");
    let line = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(l) = node
                .log()
                .into_iter()
                .find(|l| l.contains("gangway::access"))
            {
                break l;
            }
            assert!(std::time::Instant::now() < deadline, "{:?}", node.log());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let j: serde_json::Value = serde_json::from_str(&line).expect("json");
    let f = &j["fields"];
    assert_eq!(j["level"], "INFO");
    assert_eq!(f["message"], "closed");
    assert!(f["connection_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(f["source_ip"], "127.0.0.1");
    assert_eq!(f["stage"], "prod");
    assert_eq!(f["connect_status"], 101);
    assert_eq!(f["close_code"], 1000);
    assert_eq!(f["close_reason"], "\"done\"", "logged escaped");
    assert_eq!(f["messages_in"], 1);
    assert_eq!(f["bytes_in"], 12);
    assert_eq!(f["messages_out"], 1);
    assert!(f["bytes_out"].as_u64().is_some_and(|b| b >= 14), "{f}");
    assert!(f["duration_ms"].is_u64());
    drop(node);
    // Off: no access line, the connection works the same.
    let node = NodeProcess::spawn(
        &dir,
        "quiet",
        &format!("{echo}[log]\naccess = false\n"),
        &[],
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", node.websocket))
        .await
        .expect("connect");
    send_text(&mut ws, "x").await;
    assert_eq!(next_message(&mut ws).await, Message::text("x"));
    ws.close(None).await.expect("close");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!node.log().iter().any(|l| l.contains("gangway::access")));
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
