//! Batched socket sends through `io_uring`: one kernel entry for a whole batch of a fan-out's
//! writes instead of one `send` system call per recipient.
//!
//! Used by write-through fan-outs (see [`crate::fanout::write_through`]) when
//! `[limits] send_path` is `"uring"`, or `"auto"` and the probe at startup succeeds.
//!
//! Invariants this module keeps (the reason its `unsafe` is sound):
//! - Every submission entry points at the caller's `frame` and a socket the caller keeps open;
//!   [`UringSender::send_all`] returns only after the kernel has posted a completion for every
//!   entry it took, so neither is used by the kernel after the call.
//! - Sends carry `MSG_DONTWAIT`: the kernel completes each one at submission (bytes taken, or
//!   `EAGAIN` for a full socket buffer) and never parks it to retry later, so a socket is
//!   written at most once per entry and never after the call.
//! - One batch at a time per ring: each ring sits behind its own mutex (a sender holds one
//!   ring per fan-out lane, so lanes on different threads never wait for each other), and an
//!   entry the kernel did not take (a failed `io_uring_enter`) poisons that ring for good — it
//!   is never submitted later by mistake — and the whole sender with it: callers fall back to
//!   `sendmsg`.
//!
//! This is the only module of the project allowed `unsafe` (the workspace denies it elsewhere).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use io_uring::{opcode, types, IoUring, Probe};

pub use crate::error::UringError;

/// Most sends in one submission: large enough that the system-call cost vanishes, small enough
/// that the outbox locks a batch holds are held for about a millisecond.
pub const BATCH: usize = 256;

/// Rings for batched sends, one per fan-out lane. See the module documentation.
pub struct UringSender {
    /// Each `None` once poisoned (see the module documentation).
    rings: Vec<Mutex<Option<IoUring>>>,
    /// False once any ring was poisoned.
    usable: AtomicBool,
}

impl std::fmt::Debug for UringSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringSender")
            .field("rings", &self.rings.len())
            .field("usable", &self.is_usable())
            .finish()
    }
}

impl UringSender {
    /// Sets up `rings` rings (at least one: one per thread that may send at once) and checks
    /// that they can send: the runtime probe behind `send_path = "auto"`.
    pub fn probe(rings: usize) -> Result<Self, UringError> {
        let build = || {
            IoUring::builder()
                .setup_cqsize(2 * BATCH as u32)
                .build(BATCH as u32)
                .map_err(UringError::Unavailable)
        };
        let first = build()?;
        let mut probe = Probe::new();
        first
            .submitter()
            .register_probe(&mut probe)
            .map_err(UringError::Unavailable)?;
        if !probe.is_supported(opcode::Send::CODE) {
            return Err(UringError::NoSend);
        }
        let mut built = Vec::with_capacity(rings.max(1));
        built.push(Mutex::new(Some(first)));
        for _ in 1..rings.max(1) {
            built.push(Mutex::new(Some(build()?)));
        }
        Ok(UringSender {
            rings: built,
            usable: AtomicBool::new(true),
        })
    }

    /// False once a ring was set aside after a failure: callers send another way.
    pub fn is_usable(&self) -> bool {
        self.usable.load(Ordering::Acquire)
    }

    /// A ring no other thread is using (the first one when all are busy: then it waits).
    fn ring(&self) -> MutexGuard<'_, Option<IoUring>> {
        for ring in &self.rings {
            match ring.try_lock() {
                Ok(g) => return g,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        self.rings[0].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `frame` once to each socket of `fds`, without blocking, and puts one outcome per
    /// socket in `out`, in order: the bytes the socket took — maybe fewer than `frame.len()` —
    /// or the error; `WouldBlock` when the socket buffer was full or the socket was not tried
    /// (past [`BATCH`], or the ring failed), so nothing of the frame went to it.
    ///
    /// Every socket in `fds` must stay open until this returns. `Err` says the ring failed
    /// (now or earlier) and was set aside; `out` is still right for every socket.
    pub fn send_all(
        &self,
        fds: &[RawFd],
        frame: &[u8],
        out: &mut Vec<io::Result<usize>>,
    ) -> Result<(), UringError> {
        out.clear();
        let mut results: Vec<Option<i32>> = vec![None; fds.len()];
        let outcome = self.submit(fds, frame, &mut results);
        out.extend(results.into_iter().map(|r| match r {
            Some(n) if n >= 0 => Ok(n as usize),
            Some(e) => Err(io::Error::from_raw_os_error(-e)),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }));
        outcome
    }

    /// Submits up to [`BATCH`] sends and collects every completion into `results` (indexed
    /// like `fds`; `None`: not sent).
    fn submit(
        &self,
        fds: &[RawFd],
        frame: &[u8],
        results: &mut [Option<i32>],
    ) -> Result<(), UringError> {
        let n = fds.len().min(BATCH);
        if n == 0 {
            return Ok(());
        }
        let len = u32::try_from(frame.len()).map_err(|_| {
            UringError::Submit(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame over 4 GiB",
            ))
        })?;
        if !self.is_usable() {
            return Err(UringError::Poisoned);
        }
        let mut guard = self.ring();
        let ring = guard.as_mut().ok_or(UringError::Poisoned)?;
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        let mut pushed = 0usize;
        {
            let mut sq = ring.submission();
            for (i, &fd) in fds[..n].iter().enumerate() {
                let entry = opcode::Send::new(types::Fd(fd), frame.as_ptr(), len)
                    .flags(flags)
                    .build()
                    .user_data(i as u64);
                // SAFETY: the entry points at `frame` (borrowed for this call) and at the open
                // socket `fd` (the caller keeps it open until we return). We return only after
                // the kernel has posted a completion for every entry it took (the loop below),
                // and an entry it did not take is never submitted: a failed enter sets the
                // ring aside. So the kernel never reads `frame` or writes `fd` after this call.
                if unsafe { sq.push(&entry) }.is_err() {
                    // A full queue (it holds BATCH and each call drains what it submits):
                    // the rest stay unsent.
                    break;
                }
                pushed += 1;
            }
        }
        let mut completed = 0usize;
        let mut failure = None;
        while completed < pushed {
            match ring.submit_and_wait(pushed - completed) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    // This enter took no entry (the kernel reports an error only then); what
                    // earlier enters took has completed (MSG_DONTWAIT: at submission) and is
                    // collected below. The rest must never be sent: set the ring aside.
                    failure = Some(e);
                }
            }
            for cqe in ring.completion() {
                if let Some(r @ None) = results.get_mut(cqe.user_data() as usize) {
                    *r = Some(cqe.result());
                    completed += 1;
                }
            }
            if failure.is_some() {
                break;
            }
        }
        match failure {
            None => Ok(()),
            Some(e) => {
                *guard = None;
                self.usable.store(false, Ordering::Release);
                Err(UringError::Submit(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd as _;

    fn sender() -> UringSender {
        UringSender::probe(2).expect("io_uring works on the machines these tests run on")
    }

    /// A connected pair: (the side we send on, the side that reads).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        (a, b)
    }

    #[test]
    fn one_submission_reaches_every_socket_of_a_batch() {
        let u = sender();
        let pairs: Vec<_> = (0..BATCH + 10).map(|_| pair()).collect();
        let fds: Vec<RawFd> = pairs.iter().map(|(a, _)| a.as_raw_fd()).collect();
        let mut out = Vec::new();
        u.send_all(&fds, b"hello", &mut out).expect("sent");
        assert_eq!(out.len(), fds.len(), "one outcome per socket");
        for (i, ((_, b), r)) in pairs.iter().zip(&out).enumerate() {
            if i < BATCH {
                assert_eq!(r.as_ref().ok(), Some(&5), "socket {i}");
                let mut got = [0u8; 5];
                (&*b).read_exact(&mut got).expect("read");
                assert_eq!(&got, b"hello");
            } else {
                let kind = r.as_ref().err().map(io::Error::kind);
                assert_eq!(
                    kind,
                    Some(io::ErrorKind::WouldBlock),
                    "past BATCH: not tried"
                );
            }
        }
        assert!(u.is_usable());
    }

    #[test]
    fn a_full_socket_answers_would_block_at_once() {
        let u = sender();
        let (a, _reader_never_reads) = pair();
        let chunk = vec![7u8; 64 * 1024];
        let mut out = Vec::new();
        let mut full = false;
        for _ in 0..10_000 {
            u.send_all(&[a.as_raw_fd()], &chunk, &mut out)
                .expect("ring");
            match &out[0] {
                Ok(n) => assert!(*n > 0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    full = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(full, "the buffer filled and the send did not wait");
        assert!(u.is_usable(), "a full socket does not hurt the ring");
    }

    #[test]
    fn a_vanished_peer_is_an_error_not_a_signal() {
        let u = sender();
        let (a, b) = pair();
        drop(b);
        let mut out = Vec::new();
        let mut failed = false;
        for _ in 0..50 {
            u.send_all(&[a.as_raw_fd()], b"are you there", &mut out)
                .expect("ring");
            if let Err(e) = &out[0] {
                assert_ne!(e.kind(), io::ErrorKind::WouldBlock);
                failed = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            failed,
            "sending to a closed peer fails (EPIPE/ECONNRESET), no SIGPIPE"
        );
    }

    #[test]
    fn a_bad_descriptor_fails_alone() {
        let u = sender();
        let (a, b) = pair();
        let mut out = Vec::new();
        u.send_all(&[-1, a.as_raw_fd()], b"x", &mut out)
            .expect("ring");
        assert_eq!(
            out[0].as_ref().err().and_then(io::Error::raw_os_error),
            Some(libc::EBADF)
        );
        assert_eq!(out[1].as_ref().ok(), Some(&1));
        let mut got = [0u8; 1];
        (&b).read_exact(&mut got).expect("read");
        assert_eq!(&got, b"x");
        let mut none = Vec::new();
        u.send_all(&[], b"x", &mut none).expect("nothing to send");
        assert!(none.is_empty());
    }
}
