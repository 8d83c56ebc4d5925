//! The byte stream under a WebSocket connection: the seam between Gangway and how bytes reach
//! a client.
//!
//! A [`Transport`] is what the upgrade reads from and the session runs over: any tokio
//! `AsyncRead + AsyncWrite`. Plain TCP ([`PlainTcp`]) also lends its raw socket, which two fast
//! paths use — the session's `sendmsg` of many frames in one call, and write-through fan-out
//! from the publishing thread (see `conn::outbox` for the rules that keep the byte stream
//! whole). A transport that transforms the bytes (TLS) must not lend it: [`write_frames`] then
//! writes through the stream, and fan-outs always queue.
//!
//! The session and the write-through path share plain TCP as one `Arc<TcpStream>`, so the file
//! descriptor stays open while either still uses it: a write-through never reaches a socket
//! number that was closed and reused.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf as _, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

/// `send` flags: a vanished peer is an error, never a `SIGPIPE`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const SEND_FLAGS: libc::c_int = 0;

/// A client's byte stream. See the module documentation.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {
    /// The raw TCP socket, when bytes written to it reach the client as they are (plain TCP
    /// only): the fast paths write to it directly.
    fn raw_socket(&self) -> Option<&Arc<TcpStream>> {
        None
    }
}

/// Plain TCP, lending its socket to the fast paths.
#[derive(Debug)]
pub struct PlainTcp(Arc<TcpStream>);

impl PlainTcp {
    /// Wraps an accepted socket.
    pub fn new(stream: TcpStream) -> Self {
        PlainTcp(Arc::new(stream))
    }
}

impl Transport for PlainTcp {
    fn raw_socket(&self) -> Option<&Arc<TcpStream>> {
        Some(&self.0)
    }
}

/// An in-memory stream (tests drive sessions over it): no raw socket.
impl Transport for tokio::io::DuplexStream {}

/// TLS over TCP (`wss://`): the bytes on the socket are not the frames, so no raw socket —
/// frames go through the stream and fan-outs queue (see the module documentation).
impl Transport for tokio_rustls::server::TlsStream<TcpStream> {}

impl AsyncRead for PlainTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; `try_read` cleared it, so the next poll registers.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for PlainTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // TCP sockets hold no user-space buffer.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}

/// Most frames gathered into one `sendmsg`.
const MAX_SLICES: usize = 64;

/// Writes every frame, in order: on a raw socket with `sendmsg`, gathering up to 64 frames per
/// call; otherwise through the stream.
///
/// `sendmsg` rather than `writev`: on a socket it skips the VFS write path (file position lock,
/// fsnotify), which measurably cut the kernel's cost per delivery in sparse fan-outs, where
/// every message is its own system call.
pub async fn write_frames<T: Transport + ?Sized>(
    transport: &mut T,
    frames: &mut [Bytes],
) -> io::Result<()> {
    match transport.raw_socket() {
        Some(socket) => {
            let socket = Arc::clone(socket);
            send_frames(&socket, frames).await
        }
        None => {
            for f in frames.iter() {
                transport.write_all(f).await?;
            }
            transport.flush().await
        }
    }
}

async fn send_frames(stream: &TcpStream, frames: &mut [Bytes]) -> io::Result<()> {
    use io::IoSlice;
    use tokio::io::Interest;
    let mut first = 0;
    while first < frames.len() {
        let end = (first + MAX_SLICES).min(frames.len());
        let mut written = loop {
            let sent = stream.try_io(Interest::WRITABLE, || {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                for (slot, f) in slices.iter_mut().zip(&frames[first..end]) {
                    *slot = IoSlice::new(f);
                }
                socket2::SockRef::from(stream)
                    .send_vectored_with_flags(&slices[..end - first], SEND_FLAGS)
            });
            match sent {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let f = &mut frames[first];
            if written >= f.len() {
                written -= f.len();
                first += 1;
            } else {
                f.advance(written);
                written = 0;
            }
        }
    }
    Ok(())
}
