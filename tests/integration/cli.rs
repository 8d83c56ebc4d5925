//! The `gangway` binary as a user runs it: config errors, the no-config node, SIGTERM drain.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_gangway");

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
