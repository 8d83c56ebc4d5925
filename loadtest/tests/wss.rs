//! The load tool over `wss://`: a real TLS WebSocket echo server (tokio-rustls + tungstenite)
//! with a throwaway CA made by `openssl`, and the `gangway-loadtest` binary pointed at it with
//! `--ca-file`; without the CA the same run must fail verification. And a remote target is
//! refused unless `--allow-remote` says otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const BIN: &str = env!("CARGO_BIN_EXE_gangway-loadtest");

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is needed: scripts/test.sh installs it");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a `localhost` server certificate it signed: (ca.pem, server.pem, server.key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    let s = |b: &PathBuf| b.to_string_lossy().into_owned();
    let (ca, ca_key, cert, key, csr, ext) = (
        p("ca.pem"),
        p("ca.key"),
        p("server.pem"),
        p("server.key"),
        p("server.csr"),
        p("ext.cnf"),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=loadtest CA",
        "-keyout",
        &s(&ca_key),
        "-out",
        &s(&ca),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
    ]);
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&cert),
    ]);
    (ca, cert, key)
}

/// Serves WebSocket echo over TLS on a free loopback port; its address.
async fn tls_echo(cert: &Path, key: &Path) -> std::net::SocketAddr {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert")
        .map(|c| c.expect("cert"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn loadtest(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(BIN).args(args).output().expect("run");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_wss_with_the_test_ca() {
    let dir = std::env::temp_dir().join(format!("loadtest-wss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (ca, cert, key) = certificates(&dir);
    let addr = tls_echo(&cert, &key).await;
    let url = format!("wss://localhost:{}/", addr.port());
    let ca_arg = ca.to_string_lossy().into_owned();
    let (ok, j, err) = tokio::task::spawn_blocking({
        let (url, ca_arg) = (url.clone(), ca_arg.clone());
        move || {
            loadtest(&[
                "echo",
                "--url",
                &url,
                "--ca-file",
                &ca_arg,
                "--connections",
                "20",
                "--duration-secs",
                "1",
                "--json",
            ])
        }
    })
    .await
    .expect("join");
    assert!(ok, "{err}");
    assert_eq!(j["connections_established"], 20, "{j}");
    assert!(j["received"].as_u64().unwrap_or(0) > 0, "{j}");
    // Without the test CA the server cannot be verified: nothing connects.
    let (_, j, _) = tokio::task::spawn_blocking(move || {
        loadtest(&[
            "connect",
            "--url",
            &url,
            "--connections",
            "3",
            "--hold-secs",
            "0",
            "--json",
        ])
    })
    .await
    .expect("join");
    assert_eq!(j["connections_established"], 0, "{j}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn remote_targets_need_allow_remote() {
    let (ok, _, err) = loadtest(&[
        "connect",
        "--url",
        "ws://192.0.2.1:8080/",
        "--connections",
        "1",
        "--hold-secs",
        "0",
        "--json",
    ]);
    assert!(!ok);
    assert!(err.contains("--allow-remote"), "{err}");
}
