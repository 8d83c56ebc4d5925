//! The raw reference server of the side-by-side benchmarks: the least a fan-out server can do.
//! It completes WebSocket handshakes by hand, keeps each socket's write half, and on
//! `POST /pub` encodes the frame once and writes it to every socket, one `write` per socket per
//! message, in a loop. No routing, no queues, no coalescing: the baseline a broker must beat.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// Every open socket's write half, with the id its reader uses to remove it at EOF.
type Sockets = Arc<Mutex<Vec<(u64, OwnedWriteHalf)>>>;

/// Serves WebSocket clients on `ws` and publishes on `http` (`POST /pub`) until killed.
pub async fn serve(ws: SocketAddr, http: SocketAddr) -> anyhow::Result<()> {
    let sockets: Sockets = Arc::default();
    let ws_listener = TcpListener::bind(ws).await?;
    let http_listener = TcpListener::bind(http).await?;
    println!("reference server: websocket ws://{ws}/ publish http://{http}/pub");
    let s = Arc::clone(&sockets);
    tokio::spawn(async move {
        let mut next_id = 0u64;
        loop {
            let stream = match ws_listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: keep serving, try again shortly.
                    eprintln!("reference server: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let s = Arc::clone(&s);
            next_id += 1;
            let id = next_id;
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (mut read, mut write) = stream.into_split();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.ends_with(b"\r\n\r\n") {
                    match read.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if buf.len() > 16 * 1024 {
                        return;
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                let Some(key) = text.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| v.trim().to_string())
                }) else {
                    return;
                };
                let accept =
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
                let response = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                if write.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                s.lock().await.push((id, write));
                // Read and discard until the client leaves; then close its socket, so runs
                // against one server do not pile up descriptors.
                while let Ok(n) = read.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                }
                s.lock().await.retain(|(i, _)| *i != id);
            });
        }
    });
    while let Ok((stream, _)) = http_listener.accept().await {
        let s = Arc::clone(&sockets);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let s = Arc::clone(&s);
                async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let frame = encode_text(&body);
                    let mut sockets = s.lock().await;
                    let mut sent = 0usize;
                    for (_, w) in sockets.iter_mut() {
                        if w.write_all(&frame).await.is_ok() {
                            sent += 1;
                        }
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                        "{{\"recipients\":{sent}}}"
                    )))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
    Ok(())
}

/// One unmasked text frame.
fn encode_text(payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(len + 10);
    f.push(0x81);
    if len < 126 {
        f.push(len as u8);
    } else if len <= u16::MAX as usize {
        f.push(126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}
