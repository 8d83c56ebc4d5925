//! When a fan-out writes straight to the sockets instead of queueing for each connection's task.
//!
//! Queueing wins under load: a connection's task finds several frames waiting and sends them
//! with one system call. A sparse publish (say a notification to 10 000 clients every few
//! hundred milliseconds) has nothing to coalesce, and waking 10 000 tasks costs more than the
//! writes themselves; there the publishing thread writes each frame to each idle socket in one
//! loop, as a hand-written server would. The gate lets a fan-out write through only when it
//! is the only write-through fan-out running, it has at most
//! `limits.write_through_max_recipients` recipients (which bounds how long a publisher's thread
//! is busy: about 6 µs per recipient on loopback), and the node's fan-outs of the last second
//! or so, this one included, stay within [`MAX_RATE`] deliveries a second — about three
//! quarters of one core's worth of sends, so one thread can write them all through. Anything
//! busier queues and coalesces as before.
//!
//! The rate is a sliding-window estimate (the previous whole second weighted by how much of it
//! is still inside the last second, plus the current one): a dense stream of small fan-outs
//! never writes through, even across a short lull, and a steady sparse one always does.
//!
//! A large write-through is spread over the cores the node may run on ([`lanes`]): the
//! publishing thread takes one share of the recipients and short-lived threads the others, so
//! the last recipient hears of it after a fraction of the time one thread would take. Each
//! connection is in one share, and the fan-out ends only when every share is written, so each
//! connection still sees its frames in publish order.
//!
//! Order: a write-through writes to its recipients in the order of their sockets' descriptors,
//! not the (hashed) order the registry or a channel holds them in. The kernel hands out the
//! lowest free descriptor, so that is roughly the order the connections came in — the order
//! the kernel allocated each socket's file, socket and TCP state (and the peer's, on loopback)
//! in, and the order of the descriptor table itself. Walking them in sequence lets the caches
//! and prefetchers work where hashed order jumps at random through tens of megabytes of kernel
//! memory: on a 10 000-recipient broadcast this cut the node's CPU per delivery by 12-15 % and
//! its delivery latency by about as much (BENCHMARKS.md). The sorted list is kept until the
//! audience changes ([`crate::conn::ordered`]), so a steady audience sorts it once.
//!
//! How the writes reach the sockets is `[limits] send_path`: one `send` per socket, or batches
//! of sends through `io_uring` ([`crate::conn::uring`]), one kernel entry per batch.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::SendPath;
use crate::conn::uring::{UringError, UringSender};

/// Most deliveries a second the node's fan-outs may make for one to write through.
pub const MAX_RATE: u64 = 120_000;

/// Most threads one write-through fan-out is spread over.
pub const MAX_LANES: usize = 4;

/// Fewest recipients a lane of a write-through takes: starting a thread costs about as much as
/// ten sends, so below a few milliseconds of work another lane gains nothing worth its cost.
pub const MIN_PER_LANE: usize = 1024;

/// How many threads a write-through to `recipients` connections uses: one per core this
/// thread may run on now (a node pinned to one core uses one), at most [`MAX_LANES`], each
/// with at least [`MIN_PER_LANE`] recipients.
pub fn lanes(recipients: usize) -> usize {
    let by_size = recipients / MIN_PER_LANE;
    if by_size < 2 {
        return 1;
    }
    cores().min(MAX_LANES).min(by_size)
}

/// Cores this thread may run on (affinity and cgroup quota), at least one.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// The rate's window.
const WINDOW: Duration = Duration::from_secs(1);

/// Deliveries counted in the current and the previous window.
#[derive(Debug)]
struct Recent {
    start: Instant,
    current: u64,
    previous: u64,
}

impl Recent {
    /// Moves the windows forward to `now`; returns the deliveries of the last `WINDOW`.
    fn estimate(&mut self, now: Instant) -> u64 {
        let mut elapsed = now.saturating_duration_since(self.start);
        if elapsed >= WINDOW {
            let whole = (elapsed.as_nanos() / WINDOW.as_nanos()) as u32;
            self.previous = if whole == 1 { self.current } else { 0 };
            self.current = 0;
            self.start += WINDOW * whole;
            elapsed = now.saturating_duration_since(self.start);
        }
        let left = 1.0 - elapsed.as_secs_f64() / WINDOW.as_secs_f64();
        self.current + (self.previous as f64 * left) as u64
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct WriteThrough {
    max_recipients: usize,
    /// Batched sends, when the send path is `io_uring`.
    uring: Option<UringSender>,
    active: AtomicBool,
    recent: Mutex<Recent>,
}

impl WriteThrough {
    /// A gate allowing write-through to at most `max_recipients` (0 turns it off), sending
    /// through `uring` when given.
    pub fn new(max_recipients: usize, uring: Option<UringSender>) -> Self {
        WriteThrough {
            max_recipients,
            uring,
            active: AtomicBool::new(false),
            recent: Mutex::new(Recent {
                start: Instant::now(),
                current: 0,
                previous: 0,
            }),
        }
    }

    /// Decides for a fan-out about to reach `recipients` connections. When it returns true,
    /// the caller writes through and must call [`WriteThrough::end`] with `true`.
    pub fn begin(&self, recipients: usize) -> bool {
        if recipients == 0 || recipients > self.max_recipients {
            return false;
        }
        let recent = match self.recent.lock() {
            Ok(mut r) => r.estimate(Instant::now()),
            Err(_) => return false,
        };
        if recent.saturating_add(recipients as u64) > MAX_RATE {
            return false;
        }
        self.active
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Records the end of any fan-out that reached `recipients` connections
    /// (`wrote_through`: it was allowed by `begin`).
    pub fn end(&self, recipients: usize, wrote_through: bool) {
        if let Ok(mut r) = self.recent.lock() {
            r.estimate(Instant::now());
            r.current = r.current.saturating_add(recipients as u64);
        }
        if wrote_through {
            self.active.store(false, Ordering::Release);
        }
    }

    /// The `io_uring` sender, while the send path is `io_uring` and the ring works.
    pub fn uring(&self) -> Option<&UringSender> {
        self.uring.as_ref().filter(|u| u.is_usable())
    }

    /// The send path in use: `"uring"` or `"sendmsg"`.
    pub fn path_name(&self) -> &'static str {
        if self.uring().is_some() {
            "uring"
        } else {
            "sendmsg"
        }
    }
}

/// The sender `send_path` asks for: `io_uring` when probed working (`auto` falls back to
/// `sendmsg` with a log line, `uring` refuses to start without it), with a ring for each lane
/// a fan-out may use on this machine.
pub fn sender_for(path: SendPath) -> Result<Option<UringSender>, UringError> {
    let rings = cores().min(MAX_LANES);
    match path {
        SendPath::Sendmsg => Ok(None),
        SendPath::Uring => UringSender::probe(rings).map(Some),
        SendPath::Auto => match UringSender::probe(rings) {
            Ok(u) => Ok(Some(u)),
            Err(e) => {
                tracing::info!(error = %e, "send_path = \"auto\": write-through fan-outs use sendmsg");
                Ok(None)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time() {
        let g = WriteThrough::new(100, None);
        assert!(g.begin(10), "first fan-out on a quiet node writes through");
        assert!(!g.begin(10), "a second one while the first runs queues");
        g.end(10, true);
        assert!(g.begin(10), "once it ended, the next may");
        g.end(10, true);
    }

    #[test]
    fn a_busy_node_queues_until_its_rate_falls() {
        let g = WriteThrough::new(1_000_000, None);
        assert!(g.begin(MAX_RATE as usize), "up to the rate, alone");
        g.end(MAX_RATE as usize, true);
        assert!(!g.begin(1), "the rate is used up: queue");
        g.end(1, false);
        // Queued fan-outs count too: a dense stream never writes through.
        let g = WriteThrough::new(1_000_000, None);
        for _ in 0..100 {
            g.end(2_000, false);
        }
        assert!(!g.begin(1_000));
    }

    #[test]
    fn the_window_slides() {
        let start = Instant::now();
        let mut r = Recent {
            start,
            current: 1_000,
            previous: 0,
        };
        assert_eq!(r.estimate(start), 1_000);
        // Half a window later, half of the previous window still counts.
        assert_eq!(r.estimate(start + WINDOW + WINDOW / 2), 500);
        // Two windows later, nothing.
        assert_eq!(r.estimate(start + WINDOW * 4), 0);
    }

    #[test]
    fn lanes_grow_with_recipients_up_to_the_cores() {
        assert_eq!(lanes(0), 1);
        assert_eq!(lanes(2 * MIN_PER_LANE - 1), 1, "too few for two lanes");
        let most = cores().min(MAX_LANES);
        assert_eq!(lanes(2 * MIN_PER_LANE), most.min(2));
        assert_eq!(lanes(1_000_000), most);
    }

    #[test]
    fn bounded_by_recipients_and_off_at_zero() {
        let g = WriteThrough::new(100, None);
        assert!(!g.begin(101));
        assert!(!g.begin(0));
        assert!(!WriteThrough::new(0, None).begin(1));
    }
}
