//! Opening client connections from a chosen source address, over TCP (`ws://`) or TLS
//! (`wss://`, verified against the system's roots or a given CA file).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use tokio::net::{lookup_host, TcpSocket, TcpStream};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// An open client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The TLS client for `wss://` targets: servers are verified against `ca_file` (PEM) when
/// given, else against the system's roots; sessions are resumed only when `resume` says so.
pub fn tls_config(
    ca_file: Option<&Path>,
    resume: bool,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read {}", path.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("bad PEM in {}", path.display()))?)
                    .context("not a CA certificate")?;
            }
            if roots.is_empty() {
                anyhow::bail!("{} holds no certificate", path.display());
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// The `host:port` part of a URL.
pub fn authority(url: &str) -> &str {
    url.split("://")
        .nth(1)
        .unwrap_or("")
        .split(['/', '?'])
        .next()
        .unwrap_or("")
}

/// Resolves the URL's host and port.
pub async fn resolve(url: &str) -> anyhow::Result<SocketAddr> {
    let port = if url.starts_with("ws://") {
        80
    } else if url.starts_with("wss://") {
        443
    } else {
        anyhow::bail!("a ws:// or wss:// URL");
    };
    let authority = authority(url);
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:{port}")
    };
    lookup_host(authority)
        .await?
        .next()
        .context("the URL's host does not resolve")
}

/// Connects to `addr` from `source` (any port), over TLS with `tls` for a `wss://` URL, and
/// upgrades to WebSocket at `url`.
pub async fn dial(
    url: &str,
    addr: SocketAddr,
    source: Option<IpAddr>,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Ws, String> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind: {e}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    // tungstenite zero-fills its whole read buffer before every read: its 128 KiB default
    // would cost the load generator more than the server it measures.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let connector = if url.starts_with("wss://") {
        Connector::Rustls(Arc::clone(tls.ok_or("wss:// without a TLS configuration")?))
    } else {
        Connector::Plain
    };
    let (ws, _) =
        tokio_tungstenite::client_async_tls_with_config(url, stream, Some(config), Some(connector))
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(r) => format!("http {}", r.status()),
                other => format!("handshake: {other}"),
            })?;
    Ok(ws)
}
