//! A TCP proxy between one node and Redis that the chaos run black-holes and heals: while
//! black-holed it accepts and forwards nothing, refuses nothing (the bytes wait, as TCP
//! retransmissions would, and flow again when healed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// See the module documentation.
pub struct Proxy {
    /// Where it listens.
    pub port: u16,
    holes: Arc<AtomicBool>,
}

impl Proxy {
    /// A forwarding proxy on a free loopback port to `127.0.0.1:target`.
    pub async fn start(target: u16) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let holes = Arc::new(AtomicBool::new(false));
        let h = Arc::clone(&holes);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let h = Arc::clone(&h);
                tokio::spawn(async move {
                    hold(&h).await;
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        () = pump(cr, sw, Arc::clone(&h)) => {}
                        () = pump(sr, cw, h) => {}
                    }
                });
            }
        });
        Ok(Proxy { port, holes })
    }

    /// Swallows everything until [`Proxy::heal`].
    pub fn black_hole(&self) {
        self.holes.store(true, Ordering::SeqCst);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.holes.store(false, Ordering::SeqCst);
    }
}

async fn hold(holes: &AtomicBool) {
    while holes.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    holes: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        hold(&holes).await;
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        hold(&holes).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
