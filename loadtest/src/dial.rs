//! Opening client connections from a chosen source address.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use tokio::net::{lookup_host, TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;

/// An open client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

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
    url.strip_prefix("ws://").context("ws:// URL")?;
    let authority = authority(url);
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    lookup_host(authority)
        .await?
        .next()
        .context("the URL's host does not resolve")
}

/// Connects to `addr` from `source` (any port) and upgrades to WebSocket at `url`.
pub async fn dial(url: &str, addr: SocketAddr, source: Option<IpAddr>) -> Result<Ws, String> {
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
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => format!("http {}", r.status()),
            other => format!("handshake: {other}"),
        })?;
    Ok(ws)
}
