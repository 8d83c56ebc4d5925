//! A connection's outbound queue: bounded in bytes, never awaited by a producer.
//!
//! It holds encoded frames ([`crate::conn::frame`]), so a fan-out queues the same bytes everywhere.
//! Producers (route responses, control-API pushes, publishes) call [`Outbox::push`], which either queues
//! the message or says why not at once — a publisher never waits on a slow client. The
//! connection task drains everything queued in one go and writes it with a single flush, so
//! frames waiting for one connection leave in one write. An empty outbox holds no heap memory.
//!
//! Write-through: [`Outbox::push_or_write`] may instead send the frame straight to the socket
//! from the caller's thread, with no wake-up of the connection's task — what a quiet fan-out
//! uses (see [`crate::fanout::write_through`]). The byte stream stays whole because a write-through
//! happens only under this outbox's lock, only while the queue is empty, and only while the
//! session is not *holding* the socket: the session holds it (see [`Outbox::hold`]) from the
//! moment it takes frames to write, or learns that tungstenite may have bytes of its own to
//! send (a pong, a ping, a close), until everything it wrote has left ([`Outbox::release`]).
//! A write-through that the socket takes only in part queues the rest, so the session sends
//! it next.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd as _, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::config::SlowConsumerPolicy;
use crate::conn::close;

/// A request to close the connection, with the code and reason to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason (at most 123 bytes).
    pub reason: String,
}

/// The result of offering a message to an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued for the client.
    Queued,
    /// Written to the client's socket at once (write-through).
    Written,
    /// The queue is full: the message was dropped (and, by policy, the connection is closing).
    Full,
    /// The connection is closing or closed.
    Closed,
}

/// What a queued frame is counted as besides its bytes: its queue slot and its allocation's
/// header and rounding (524 288 queued empty pushes measured 36 MB, about 69 bytes each), so
/// `send_queue_max_bytes` bounds real memory, not payload bytes.
pub const FRAME_OVERHEAD_BYTES: usize = 64;

/// What [`Outbox::drain`] took besides the frames.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    /// A close request, if one is pending.
    pub close: Option<CloseRequest>,
    /// The first frame taken is the rest of a frame a write-through put on the wire in part:
    /// it must be written before anything else, tungstenite's own bytes (a pong) included.
    pub partial_first: bool,
}

#[derive(Debug, Default)]
struct State {
    /// The rest of a frame a write-through could put on the wire only in part.
    partial: Option<Bytes>,
    frames: VecDeque<Bytes>,
    /// Counted size of `partial` and `frames` (see [`FRAME_OVERHEAD_BYTES`]).
    bytes: usize,
    close: Option<CloseRequest>,
    closed: bool,
    /// The socket, while the session allows write-through at all.
    socket: Option<Arc<TcpStream>>,
    /// The session is writing, or tungstenite may hold unsent bytes: no write-through.
    held: bool,
    /// Frames accepted for the client (queued or written through), and their bytes: the
    /// access log's "out" (counted under the lock every push takes anyway).
    sent: Sent,
}

/// What an outbox accepted for its client over its life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Frames.
    pub frames: u64,
    /// Their encoded bytes.
    pub bytes: u64,
}

impl Sent {
    fn add(&mut self, frame: &Bytes) {
        self.frames += 1;
        self.bytes += frame.len() as u64;
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    /// The attached socket's descriptor, else -1. Changed only under `state`'s lock, so exact
    /// while it is held (a batch of write-throughs reads it there without visiting the socket's
    /// own allocation); read without the lock it is only a hint (see [`Outbox::fd_hint`]).
    fd: AtomicI32,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    /// An empty outbox (no allocation).
    pub fn new() -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            fd: AtomicI32::new(-1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the queue itself stays consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an encoded frame unless that would pass `max_bytes`; on overflow applies `policy`.
    pub fn push(&self, frame: Bytes, max_bytes: usize, policy: SlowConsumerPolicy) -> PushOutcome {
        let s = self.lock();
        self.push_locked(s, frame, max_bytes, policy)
    }

    /// Writes `frame` straight to the socket when the stream allows it (see the module
    /// documentation); otherwise queues it like [`Outbox::push`]. A socket that takes only part
    /// of the frame gets the rest through the queue.
    pub fn push_or_write(
        &self,
        frame: &Bytes,
        max_bytes: usize,
        policy: SlowConsumerPolicy,
    ) -> PushOutcome {
        match self.write_slot(self.lock()) {
            Ok(slot) => {
                let sent = match slot.socket() {
                    Some(socket) => socket2::SockRef::from(socket)
                        .send_with_flags(frame, crate::conn::transport::SEND_FLAGS),
                    None => Err(std::io::ErrorKind::WouldBlock.into()),
                };
                slot.finish(sent, frame, max_bytes, policy)
            }
            Err(s) => self.push_locked(s, frame.clone(), max_bytes, policy),
        }
    }

    /// The outbox locked for a write-through, when one may happen now and the lock was free
    /// (a batch of write-throughs must not wait for a busy connection: it queues for it).
    pub(crate) fn try_write_slot(&self) -> Option<WriteSlot<'_>> {
        let s = self.state.try_lock().ok()?;
        self.write_slot(s).ok()
    }

    fn write_slot<'a>(
        &'a self,
        s: std::sync::MutexGuard<'a, State>,
    ) -> Result<WriteSlot<'a>, std::sync::MutexGuard<'a, State>> {
        let open = !s.closed && s.close.is_none();
        if open && !s.held && s.frames.is_empty() && s.partial.is_none() && s.socket.is_some() {
            Ok(WriteSlot {
                outbox: self,
                state: s,
            })
        } else {
            Err(s)
        }
    }

    fn push_locked(
        &self,
        mut s: std::sync::MutexGuard<'_, State>,
        frame: Bytes,
        max_bytes: usize,
        policy: SlowConsumerPolicy,
    ) -> PushOutcome {
        let size = frame.len() + FRAME_OVERHEAD_BYTES;
        if s.closed || s.close.is_some() {
            return PushOutcome::Closed;
        }
        // An empty queue takes any one frame (a largest message plus its overhead may be a
        // little over a bound equal to `max_message_bytes`).
        if s.bytes + size > max_bytes && s.bytes > 0 {
            if policy == SlowConsumerPolicy::Disconnect {
                s.close = Some(CloseRequest {
                    code: close::SLOW_CONSUMER,
                    reason: "slow consumer".into(),
                });
                drop(s);
                self.notify.notify_one();
            }
            return PushOutcome::Full;
        }
        s.bytes += size;
        s.sent.add(&frame);
        s.frames.push_back(frame);
        drop(s);
        self.notify.notify_one();
        PushOutcome::Queued
    }

    /// Frames and bytes accepted for the client so far.
    pub fn sent(&self) -> Sent {
        self.lock().sent
    }

    /// Asks the connection to close with `code` and `reason`. The first request wins.
    /// Returns false when the connection was already closing.
    pub fn request_close(&self, code: u16, reason: &str) -> bool {
        let mut s = self.lock();
        if s.closed || s.close.is_some() {
            return false;
        }
        s.close = Some(CloseRequest {
            code,
            reason: reason.to_string(),
        });
        drop(s);
        self.notify.notify_one();
        true
    }

    /// Lets write-through reach `socket` (the session calls this once it runs).
    pub(crate) fn attach(&self, socket: Arc<TcpStream>) {
        let fd = socket.as_raw_fd();
        let mut s = self.lock();
        s.socket = Some(socket);
        self.fd.store(fd, Ordering::Relaxed);
    }

    /// The socket's descriptor while one is attached, else -1, read without the lock: a hint
    /// for ordering a fan-out's writes (see [`crate::fanout::write_through`]), which may be
    /// stale by the time anything is written and is never written to.
    pub(crate) fn fd_hint(&self) -> RawFd {
        self.fd.load(Ordering::Relaxed)
    }

    /// Tungstenite may hold bytes to send (it owes a pong): no write-through until
    /// [`Outbox::release`]. A partly written frame stays first in the queue.
    pub fn hold(&self) {
        self.lock().held = true;
    }

    /// The session is about to write by itself: no write-through until [`Outbox::release`].
    /// Returns the rest of a frame a write-through put on the wire in part, if any: the
    /// session must write it before anything else.
    #[must_use = "a partly written frame must be finished before any other write"]
    pub fn hold_for_write(&self) -> Option<Bytes> {
        let mut s = self.lock();
        s.held = true;
        let partial = s.partial.take();
        if let Some(p) = &partial {
            s.bytes = s.bytes.saturating_sub(p.len() + FRAME_OVERHEAD_BYTES);
        }
        partial
    }

    /// Everything the session wrote has left: write-through may resume once the queue is empty.
    pub fn release(&self) {
        let mut s = self.lock();
        if s.frames.is_empty() && s.partial.is_none() {
            s.held = false;
        }
    }

    /// Takes every queued frame into `out` (the rest of a partly written frame first), and the
    /// close request if one is pending. Taking frames holds the socket (see [`Outbox::hold`])
    /// until the session releases it.
    pub fn drain(&self, out: &mut Vec<Bytes>) -> Drained {
        let mut s = self.lock();
        let partial = s.partial.take();
        let partial_first = partial.is_some();
        if partial_first || !s.frames.is_empty() {
            s.held = true;
        }
        out.extend(partial);
        out.extend(s.frames.drain(..));
        s.bytes = 0;
        if s.frames.capacity() > 64 {
            // Give back memory a burst left behind: idle connections stay small.
            s.frames = VecDeque::new();
        }
        Drained {
            close: s.close.clone(),
            partial_first,
        }
    }

    /// Puts `rest` where a partial write-through leaves the rest of its frame (tests only).
    #[cfg(test)]
    pub(crate) fn set_partial(&self, rest: Bytes) {
        let mut s = self.lock();
        s.bytes += rest.len() + FRAME_OVERHEAD_BYTES;
        s.partial = Some(rest);
        s.held = true;
        drop(s);
        self.notify.notify_one();
    }

    /// Marks the outbox closed for good: later pushes answer [`PushOutcome::Closed`].
    /// Returns how many queued messages were discarded.
    pub fn close(&self) -> usize {
        let mut s = self.lock();
        s.closed = true;
        s.held = true;
        s.socket = None;
        self.fd.store(-1, Ordering::Relaxed);
        let n = s.frames.len() + usize::from(s.partial.take().is_some());
        s.frames = VecDeque::new();
        s.bytes = 0;
        n
    }

    /// True once [`Outbox::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Bytes currently counted against the bound (payloads plus [`FRAME_OVERHEAD_BYTES`] each).
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Waits until something was pushed or a close was requested since the last wait.
    pub async fn wait(&self) {
        self.notify.notified().await
    }
}

/// An outbox locked while a write-through sends to its socket: the queue is empty, the session
/// is not writing, the connection is open. Nothing else reaches the socket until
/// [`WriteSlot::finish`] says what the socket took.
pub(crate) struct WriteSlot<'a> {
    outbox: &'a Outbox,
    state: std::sync::MutexGuard<'a, State>,
}

impl WriteSlot<'_> {
    /// The socket to write to (open while the slot lives; always there: a slot is made only
    /// for an outbox with a socket).
    pub(crate) fn socket(&self) -> Option<&TcpStream> {
        self.state.socket.as_deref()
    }

    /// The socket's descriptor, open while the slot lives (read from the outbox, not the
    /// socket's allocation; -1 only if there were no socket, which a slot never lacks: a send
    /// to it would fail with `EBADF` and the frame queue).
    pub(crate) fn fd(&self) -> RawFd {
        self.outbox.fd.load(Ordering::Relaxed)
    }

    /// Records what the socket took of `frame`: all of it (written), part (the rest is
    /// queued first and the session sends it before any other byte, whatever the queue's
    /// bound: the queue was empty), or nothing (queued as [`Outbox::push`] would).
    pub(crate) fn finish(
        mut self,
        sent: std::io::Result<usize>,
        frame: &Bytes,
        max_bytes: usize,
        policy: SlowConsumerPolicy,
    ) -> PushOutcome {
        match sent {
            Ok(n) if n == frame.len() => {
                self.state.sent.add(frame);
                PushOutcome::Written
            }
            Ok(n) if n > 0 => {
                let s = &mut self.state;
                s.sent.add(frame);
                let rest = frame.slice(n..);
                s.bytes += rest.len() + FRAME_OVERHEAD_BYTES;
                s.partial = Some(rest);
                s.held = true;
                drop(self.state);
                self.outbox.notify.notify_one();
                PushOutcome::Queued
            }
            // Nothing taken (a full socket buffer), or an error the session will meet on its
            // own write.
            _ => self
                .outbox
                .push_locked(self.state, frame.clone(), max_bytes, policy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_bytes_with_disconnect_policy() {
        let o = Outbox::new();
        let d = SlowConsumerPolicy::Disconnect;
        let max = 8 + FRAME_OVERHEAD_BYTES;
        assert_eq!(
            o.push(Bytes::from_static(b"12345"), max, d),
            PushOutcome::Queued
        );
        assert_eq!(
            o.push(Bytes::from_static(b"12345"), max, d),
            PushOutcome::Full
        );
        // Now closing: further pushes are refused.
        assert_eq!(
            o.push(Bytes::from_static(b"1"), max, d),
            PushOutcome::Closed
        );
        let mut out = Vec::new();
        let drained = o.drain(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(drained.close.map(|c| c.code), Some(close::SLOW_CONSUMER));
    }

    #[test]
    fn drop_policy_keeps_the_connection() {
        let o = Outbox::new();
        let p = SlowConsumerPolicy::Drop;
        let max = 8 + FRAME_OVERHEAD_BYTES;
        assert_eq!(
            o.push(Bytes::from_static(b"12345"), max, p),
            PushOutcome::Queued
        );
        assert_eq!(
            o.push(Bytes::from_static(b"12345"), max, p),
            PushOutcome::Full
        );
        let mut out = Vec::new();
        assert!(o.drain(&mut out).close.is_none());
        assert_eq!(
            o.push(Bytes::from_static(b"12345"), max, p),
            PushOutcome::Queued
        );
        assert_eq!(o.queued_bytes(), 5 + FRAME_OVERHEAD_BYTES);
    }

    #[test]
    fn empty_frames_count_their_overhead() {
        // Empty pushes used to be free: 524 288 of them fit a 1 MiB queue and took 36 MB.
        let o = Outbox::new();
        let max = 1 << 20;
        let mut queued = 0;
        while o.push(crate::conn::frame::text(""), max, SlowConsumerPolicy::Drop)
            == PushOutcome::Queued
        {
            queued += 1;
        }
        assert_eq!(queued, max / (2 + FRAME_OVERHEAD_BYTES));
    }

    #[test]
    fn an_empty_queue_takes_one_frame_of_any_size() {
        let o = Outbox::new();
        let p = SlowConsumerPolicy::Drop;
        assert_eq!(
            o.push(Bytes::from(vec![0u8; 100]), 100, p),
            PushOutcome::Queued
        );
        assert_eq!(o.push(Bytes::from_static(b"x"), 100, p), PushOutcome::Full);
    }

    #[test]
    fn a_partly_written_frame_leaves_first_and_holds_the_socket() {
        let o = Outbox::new();
        let p = SlowConsumerPolicy::Drop;
        o.set_partial(Bytes::from_static(b"rest"));
        assert_eq!(
            o.push(Bytes::from_static(b"next"), 1 << 20, p),
            PushOutcome::Queued
        );
        o.release();
        let mut out = Vec::new();
        let drained = o.drain(&mut out);
        assert!(drained.partial_first);
        assert_eq!(
            out,
            vec![Bytes::from_static(b"rest"), Bytes::from_static(b"next")]
        );
        // A write of the session's own takes the partial frame first.
        o.set_partial(Bytes::from_static(b"tail"));
        assert_eq!(o.hold_for_write(), Some(Bytes::from_static(b"tail")));
        assert_eq!(o.hold_for_write(), None);
        assert_eq!(o.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn the_descriptor_is_known_while_a_socket_is_attached_and_forgotten_at_close() {
        let (_client, server) = crate::test_socket_pair().await;
        let fd = server.as_raw_fd();
        let o = Outbox::new();
        assert_eq!(o.fd_hint(), -1, "no socket yet");
        assert!(
            o.try_write_slot().is_none(),
            "no write-through without a socket"
        );
        o.attach(Arc::new(server));
        assert_eq!(o.fd_hint(), fd);
        let slot = o
            .try_write_slot()
            .expect("an idle attached outbox takes a write-through");
        assert_eq!(slot.fd(), fd);
        assert_eq!(slot.socket().map(|s| s.as_raw_fd()), Some(fd));
        drop(slot);
        o.close();
        assert_eq!(o.fd_hint(), -1, "a closed outbox names no descriptor");
        assert!(o.try_write_slot().is_none());
    }

    #[test]
    fn closed_outbox_refuses() {
        let o = Outbox::new();
        assert!(o.request_close(1000, "bye"));
        assert!(!o.request_close(1001, "again"));
        assert_eq!(
            o.push(Bytes::from_static(b"x"), 8, SlowConsumerPolicy::Drop),
            PushOutcome::Closed
        );
    }
}
