//! When a fan-out writes straight to the sockets instead of queueing for each connection's task.
//!
//! Queueing wins under load: a connection's task finds several frames waiting and sends them
//! with one system call. A sparse publish (say a notification to 10 000 clients every few
//! hundred milliseconds) has nothing to coalesce, and waking 10 000 tasks costs more than the
//! writes themselves; there the publishing thread writes each frame to each idle socket in one
//! loop, as a hand-written server would. The gate lets a fan-out write through only when it
//! is the only write-through fan-out running, it has at most
//! `limits.write_through_max_recipients` recipients (which bounds how long a publisher's thread
//! is busy: about 6 µs per recipient on loopback), and no fan-out of any kind ended within
//! [`QUIET`] or [`QUIET_PER_RECIPIENT`] × its recipients, whichever is longer — so fan-outs
//! write through only while they would keep the node busy less than about half the time.
//! Anything busier queues and coalesces as before.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long since the last fan-out ended before the next may write through, at least.
pub const QUIET: Duration = Duration::from_millis(5);

/// How long since the last fan-out ended before the next may write through, per recipient.
pub const QUIET_PER_RECIPIENT: Duration = Duration::from_micros(10);

/// See the module documentation.
#[derive(Debug)]
pub struct WriteThrough {
    max_recipients: usize,
    epoch: Instant,
    active: AtomicBool,
    /// When the last fan-out ended, microseconds since `epoch` (0: never).
    last_end_us: AtomicU64,
}

impl WriteThrough {
    /// A gate allowing write-through to at most `max_recipients` (0 turns it off).
    pub fn new(max_recipients: usize) -> Self {
        WriteThrough {
            max_recipients,
            epoch: Instant::now(),
            active: AtomicBool::new(false),
            last_end_us: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        // +1 so that 0 stays "never".
        u64::try_from(self.epoch.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Decides for a fan-out about to reach `recipients` connections. When it returns true,
    /// the caller writes through and must call [`WriteThrough::end`] with `true`.
    pub fn begin(&self, recipients: usize) -> bool {
        if recipients == 0 || recipients > self.max_recipients {
            return false;
        }
        let quiet = QUIET
            .max(QUIET_PER_RECIPIENT.saturating_mul(u32::try_from(recipients).unwrap_or(u32::MAX)));
        let last = self.last_end_us.load(Ordering::Relaxed);
        if last != 0
            && self.now_us().saturating_sub(last)
                < u64::try_from(quiet.as_micros()).unwrap_or(u64::MAX)
        {
            return false;
        }
        self.active
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Records the end of any fan-out (`wrote_through`: it was allowed by `begin`).
    pub fn end(&self, wrote_through: bool) {
        self.last_end_us.store(self.now_us(), Ordering::Relaxed);
        if wrote_through {
            self.active.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time_and_only_after_a_quiet_spell() {
        let g = WriteThrough::new(100);
        assert!(g.begin(10), "first fan-out on a quiet node writes through");
        assert!(!g.begin(10), "a second one while the first runs queues");
        g.end(true);
        assert!(!g.begin(10), "right after a fan-out ended: queue");
        std::thread::sleep(QUIET + Duration::from_millis(2));
        assert!(g.begin(10));
        g.end(true);
    }

    #[test]
    fn larger_fan_outs_need_longer_quiet_spells() {
        let g = WriteThrough::new(10_000);
        g.end(false);
        std::thread::sleep(QUIET + Duration::from_millis(2));
        assert!(!g.begin(1_000), "1 000 recipients need 10 ms of quiet");
        assert!(g.begin(100), "100 recipients need only QUIET");
        g.end(true);
    }

    #[test]
    fn bounded_by_recipients_and_off_at_zero() {
        let g = WriteThrough::new(100);
        assert!(!g.begin(101));
        assert!(!g.begin(0));
        assert!(!WriteThrough::new(0).begin(1));
    }

    #[test]
    fn queued_fan_outs_also_count_as_activity() {
        let g = WriteThrough::new(100);
        g.end(false);
        assert!(!g.begin(10));
    }
}
