//! Issue 13, item 1 — TLS on both listeners: real clients trusting the test's own CA (Python
//! `websockets`, boto3, the AWS CLI, a Rust client, the load tool over `wss://`), client
//! certificates on the control listener, a plain client refused, and a certificate renewed on
//! SIGHUP without dropping connected clients.

use std::process::Command;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

const ECHO: &str = "[routes.\"$default\"]\nintegration = \"mock\"\n";

fn tls_config(ca: &TestCa, client_ca: bool) -> String {
    let p = |path: &std::path::Path| path.display().to_string();
    format!(
        "{ECHO}[control]\ntokens = [\"tls-token-123\"]\n\
         [[control.aws_credentials]]\naccess_key_id = \"AKIDTLS\"\nsecret_access_key = \"tls-secret-key\"\n\
         [tls.websocket]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         [tls.control]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{}",
        p(&ca.cert),
        p(&ca.key),
        p(&ca.cert),
        p(&ca.key),
        if client_ca {
            format!("client_ca_file = \"{}\"\n", p(&ca.ca))
        } else {
            String::new()
        }
    )
}

/// A rustls client trusting only `ca`.
fn client_tls(ca: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("pem")).expect("add");
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A `wss://` client of `addr` trusting `ca`.
async fn wss(addr: &str, ca: &std::path::Path) -> Result<Client, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tokio_tungstenite::client_async_tls_with_config(
        format!("wss://{addr}/"),
        stream,
        None,
        Some(tokio_tungstenite::Connector::Rustls(client_tls(ca))),
    )
    .await
    .map(|(ws, _)| ws)
    .map_err(|e| e.to_string())
}

fn run_clients(node: &NodeProcess, ca: &TestCa, client_cert: bool) {
    let py = venv_python();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls_clients.py");
    let mut cmd = Command::new(py);
    cmd.arg(script)
        .arg(format!("wss://{}/", node.websocket))
        .arg(format!("https://{}/prod", node.control))
        .arg(&ca.ca);
    if client_cert {
        cmd.arg(&ca.cert).arg(&ca.key);
    }
    let out = cmd.output().expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok   boto3 over https://"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_speak_tls_to_both_listeners() {
    let dir = scratch_dir("tls");
    let ca = TestCa::new(&dir, "tls");
    let node = NodeProcess::spawn(&dir, "tls", &tls_config(&ca, false), &[]);
    run_clients(&node, &ca, false);

    // A Rust client too, and a plain one is refused (no HTTP in the clear).
    let mut ws = wss(&node.websocket, &ca.ca).await.expect("wss");
    ws.send(Message::text("rust over tls")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("frame").expect("ok"),
        Message::text("rust over tls")
    );
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{}/", node.websocket))
            .await
            .is_err(),
        "a plain ws:// client must not get in"
    );

    // The load tool over wss://, verified against the test CA.
    let tool =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/gangway-loadtest");
    assert!(
        tool.exists(),
        "{} is needed: scripts/test.sh builds it (cargo build --workspace --bins)",
        tool.display()
    );
    let out = Command::new(&tool)
        .args([
            "echo",
            "--url",
            &format!("wss://{}/", node.websocket),
            "--ca-file",
        ])
        .arg(&ca.ca)
        .args(["--connections", "20", "--duration-secs", "1", "--json"])
        .output()
        .expect("loadtest");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["connections_established"], 20, "{j}");
    assert!(j["received"].as_u64().unwrap_or(0) > 0, "{j}");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_listener_can_require_client_certificates() {
    let dir = scratch_dir("mtls");
    let ca = TestCa::new(&dir, "mtls");
    let node = NodeProcess::spawn(&dir, "mtls", &tls_config(&ca, true), &[]);
    // The script presents the CA-signed certificate for boto3 and the probe, then checks that
    // a caller without one is refused.
    run_clients(&node, &ca, true);
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_after_sighup_without_dropping_clients() {
    let dir = scratch_dir("renew");
    let first = TestCa::new(&dir, "first");
    let second = TestCa::new(&dir, "second");
    // The node reads its certificate from fixed paths; renewal replaces the files.
    let (cert, key) = (dir.join("live.pem"), dir.join("live.key"));
    std::fs::copy(&first.cert, &cert).expect("copy");
    std::fs::copy(&first.key, &key).expect("copy");
    let live = TestCa {
        ca: first.ca.clone(),
        cert: cert.clone(),
        key: key.clone(),
    };
    let node = NodeProcess::spawn(&dir, "renew", &tls_config(&live, false), &[]);
    let mut old = wss(&node.websocket, &first.ca)
        .await
        .expect("first certificate");
    assert!(
        wss(&node.websocket, &second.ca).await.is_err(),
        "not yet renewed"
    );

    std::fs::copy(&second.cert, &cert).expect("copy");
    std::fs::copy(&second.key, &key).expect("copy");
    node.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !node
        .log()
        .iter()
        .any(|l| l.contains("configuration reloaded"))
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", node.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(node
        .log()
        .iter()
        .any(|l| l.contains("configuration reloaded") && l.contains("tls.websocket.cert_file")));
    // New handshakes get the new certificate; the client from before is still connected.
    let mut new = wss(&node.websocket, &second.ca)
        .await
        .expect("renewed certificate");
    new.send(Message::text("new")).await.expect("send");
    assert_eq!(
        new.next().await.expect("frame").expect("ok"),
        Message::text("new")
    );
    old.send(Message::text("still here")).await.expect("send");
    assert_eq!(
        old.next().await.expect("frame").expect("ok"),
        Message::text("still here")
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_configuration_errors_name_their_key() {
    let dir = scratch_dir("tls-config");
    let ca = TestCa::new(&dir, "cfg");
    let check = |tls: &str| {
        gangway::GatewayConfig::from_toml_str(&format!("{ECHO}{tls}"))
            .expect_err("invalid")
            .problems[0]
            .key
            .clone()
    };
    assert_eq!(
        check(
            "[tls.websocket]\ncert_file = \"/nonexistent.pem\"\nkey_file = \"/nonexistent.key\"\n"
        ),
        "tls.websocket.cert_file"
    );
    assert_eq!(
        check(&format!(
            "[tls.websocket]\ncert_file = \"{}\"\n",
            ca.cert.display()
        )),
        "tls.websocket"
    );
    // A key that is not the certificate's.
    let other = TestCa::new(&dir, "other");
    assert_eq!(
        check(&format!(
            "[tls.websocket]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            ca.cert.display(),
            other.key.display()
        )),
        "tls.websocket.cert_file"
    );
    assert_eq!(
        check(&format!(
            "[tls.control]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"/nonexistent\"\n",
            ca.cert.display(),
            ca.key.display()
        )),
        "tls.control.client_ca_file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
