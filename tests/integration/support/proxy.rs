//! A TCP proxy the test controls, between a node and Redis: it forwards, black-holes (accepts
//! and forwards nothing, refuses nothing — what a dead route or a dropped-packet firewall does;
//! the bytes wait, as TCP retransmissions would, and flow again when healed), slows (holds
//! every chunk a while), or resets (closes every connection and each new one at once).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PASS: u8 = 0;
const BLACK_HOLE: u8 = 1;
const RESET: u8 = 2;
const SLOW: u8 = 3;

/// How long a slow proxy holds each chunk, each way.
pub const SLOW_DELAY: Duration = Duration::from_millis(25);

/// See the module documentation. Stops when dropped.
pub struct Proxy {
    /// Where it listens.
    pub port: u16,
    mode: Arc<AtomicU8>,
    changed: watch::Sender<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free port to `127.0.0.1:target`, forwarding.
    pub async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let mode = Arc::new(AtomicU8::new(PASS));
        let (changed, _) = watch::channel(PASS);
        let (m, tx) = (Arc::clone(&mode), changed.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (m, rx) = (Arc::clone(&m), tx.subscribe());
                tokio::spawn(async move {
                    if m.load(Ordering::SeqCst) == RESET {
                        return;
                    }
                    wait_while_black_holed(&m, rx.clone()).await;
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        () = pump(cr, sw, Arc::clone(&m), rx.clone()) => {}
                        () = pump(sr, cw, Arc::clone(&m), rx.clone()) => {}
                    }
                });
            }
        });
        Proxy {
            port,
            mode,
            changed,
            task,
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        let _ = self.changed.send(mode);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.set(PASS);
    }

    /// Swallows everything: nothing forwarded, nothing refused.
    pub fn black_hole(&self) {
        self.set(BLACK_HOLE);
    }

    /// Forwards, but holds every chunk [`SLOW_DELAY`] first, each way (a congested path).
    pub fn slow(&self) {
        self.set(SLOW);
    }

    /// Closes every connection, and every new one at once.
    pub fn reset(&self) {
        self.set(RESET);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.set(RESET);
    }
}

async fn wait_while_black_holed(mode: &AtomicU8, mut rx: watch::Receiver<u8>) {
    while mode.load(Ordering::SeqCst) == BLACK_HOLE {
        if tokio::time::timeout(Duration::from_millis(100), rx.changed())
            .await
            .is_ok_and(|r| r.is_err())
        {
            return;
        }
    }
}

/// Copies one direction until either side ends or the proxy resets.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<AtomicU8>,
    rx: watch::Receiver<u8>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        wait_while_black_holed(&mode, rx.clone()).await;
        if mode.load(Ordering::SeqCst) == RESET {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // A mode change while waiting for bytes: look again (a black hole holds them).
            () = mode_changed(rx.clone()) => continue,
        };
        // Read before the black hole began: held until it heals, like a retransmission.
        wait_while_black_holed(&mode, rx.clone()).await;
        if mode.load(Ordering::SeqCst) == SLOW {
            tokio::time::sleep(SLOW_DELAY).await;
        }
        if mode.load(Ordering::SeqCst) == RESET || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn mode_changed(mut rx: watch::Receiver<u8>) {
    rx.borrow_and_update();
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}
