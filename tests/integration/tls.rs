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
    wss_over(stream, addr, ca).await
}

/// The TLS handshake and WebSocket upgrade over `stream` (connected to `addr`), trusting `ca`.
async fn wss_over(
    stream: tokio::net::TcpStream,
    addr: &str,
    ca: &std::path::Path,
) -> Result<Client, String> {
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

/// A `wss://` client that first sends `prefix` (a PROXY header), in two writes split at `split`.
async fn wss_behind_proxy(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    prefix: &[u8],
    split: usize,
) -> Result<Client, String> {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (first, rest) = prefix.split_at(split.min(prefix.len()));
    stream.write_all(first).await.map_err(|e| e.to_string())?;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    stream.write_all(rest).await.map_err(|e| e.to_string())?;
    wss_over(stream, &addr.to_string(), ca).await
}

/// A TCP relay in front of `upstream` that sends `header` and the client's first bytes (its
/// ClientHello) in one write, as a TLS-passthrough balancer does; its address.
async fn proxy_relay(upstream: std::net::SocketAddr, header: Vec<u8>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.expect("accept");
        let mut server = tokio::net::TcpStream::connect(upstream)
            .await
            .expect("upstream");
        let mut first = vec![0u8; 16 * 1024];
        let n = client.read(&mut first).await.expect("client hello");
        let mut packet = header;
        packet.extend_from_slice(&first[..n]);
        server.write_all(&packet).await.expect("write");
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    });
    addr
}

/// A PROXY v2 header for a TCP4 client `src`:5555 → 127.0.0.1:443.
fn proxy_v2(src: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&5555u16.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// The sourceIp GetConnection reports for the only connection of `node` not in `known`.
async fn newest_source_ip(node: &gangway::Node, known: &mut Vec<String>) -> String {
    eventually("registered", || {
        node.broker
            .connection_ids()
            .iter()
            .any(|id| !known.contains(id))
    })
    .await;
    let id = node
        .broker
        .connection_ids()
        .into_iter()
        .find(|id| !known.contains(id))
        .expect("new connection");
    known.push(id.clone());
    let r = Control::of(node)
        .request(reqwest::Method::GET, &format!("/@connections/{id}"), "")
        .await;
    r.json()["identity"]["sourceIp"]
        .as_str()
        .expect("sourceIp")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_before_tls_sets_the_client_from_trusted_peers_only() {
    let dir = scratch_dir("tls-proxy");
    let ca = TestCa::new(&dir, "proxy");
    let tls = format!(
        "{ECHO}[tls.websocket]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        ca.cert.display(),
        ca.key.display()
    );
    let trusted = node(&format!(
        "[listen]\ntrusted_proxies = [\"127.0.0.0/8\"]\nproxy_protocol = true\n{tls}"
    ))
    .await;
    let mut known = Vec::new();

    // v1 and v2 headers (v2 split across two packets) before the ClientHello.
    let v1 = b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 443\r\n";
    let mut ws = wss_behind_proxy(trusted.websocket_addr, &ca.ca, v1, v1.len())
        .await
        .expect("v1");
    assert_eq!(newest_source_ip(&trusted, &mut known).await, "198.51.100.9");
    send_text(&mut ws, "over tls").await;
    assert_eq!(next_message(&mut ws).await, Message::text("over tls"));
    let v2 = proxy_v2([203, 0, 113, 7]);
    let _ws2 = wss_behind_proxy(trusted.websocket_addr, &ca.ca, &v2, 10)
        .await
        .expect("v2, split");
    assert_eq!(newest_source_ip(&trusted, &mut known).await, "203.0.113.7");

    // Header and ClientHello in one packet, through a relay: exactly the header is consumed.
    let relay = proxy_relay(trusted.websocket_addr, proxy_v2([192, 0, 2, 44])).await;
    let mut ws3 = wss_behind_proxy(relay, &ca.ca, b"", 0)
        .await
        .expect("one packet");
    assert_eq!(newest_source_ip(&trusted, &mut known).await, "192.0.2.44");
    send_text(&mut ws3, "relayed").await;
    assert_eq!(next_message(&mut ws3).await, Message::text("relayed"));

    // A trusted peer that starts TLS without the header, or sends a broken one: refused.
    assert!(wss(&trusted.websocket_addr.to_string(), &ca.ca)
        .await
        .is_err());
    assert!(wss_behind_proxy(
        trusted.websocket_addr,
        &ca.ca,
        b"PROXY TCP4 nonsense\r\n",
        99
    )
    .await
    .is_err());
    assert_eq!(trusted.broker.connection_count(), 3);

    // From an untrusted peer the header is not read: TLS sees garbage and fails; a plain TLS
    // client is the TCP peer it is.
    let untrusted = node(&format!(
        "[listen]\ntrusted_proxies = [\"10.0.0.0/8\"]\nproxy_protocol = true\n{tls}"
    ))
    .await;
    assert!(
        wss_behind_proxy(untrusted.websocket_addr, &ca.ca, v1, v1.len())
            .await
            .is_err()
    );
    let _plain = wss(&untrusted.websocket_addr.to_string(), &ca.ca)
        .await
        .expect("untrusted peer, no header");
    let mut known = Vec::new();
    assert_eq!(newest_source_ip(&untrusted, &mut known).await, "127.0.0.1");
    trusted.shutdown().await;
    untrusted.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
