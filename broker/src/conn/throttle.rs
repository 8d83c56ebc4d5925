//! Token buckets (GCRA, from the `governor` crate): a rate and a burst. Used for a connection's
//! inbound frames, a route's node-wide messages, and new connections per source address.
//!
//! Invariants: a bucket never queues anything — a check says yes or no at once; the per-address
//! buckets are bounded: buckets back at full capacity are dropped every [`SWEEP_EVERY`], and past
//! [`MAX_ADDRESSES`] live ones a new address is refused (a flood of addresses cannot grow memory
//! without bound).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How often the per-address buckets are swept of idle ones.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Most addresses tracked at once.
pub const MAX_ADDRESSES: usize = 100_000;

/// The quota for `rate` per second with `burst` (0: the rate); `None` when `rate` is 0 (off).
pub fn quota(rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// One bucket.
#[derive(Debug)]
pub struct Bucket(DefaultDirectRateLimiter);

impl Bucket {
    /// A bucket for `rate`/s with `burst`; `None` when the rate is 0.
    pub fn new(rate: u32, burst: u32) -> Option<Bucket> {
        quota(rate, burst).map(|q| Bucket(RateLimiter::direct(q)))
    }

    /// Takes `n` tokens if there are that many (`n` over the burst: never).
    pub fn take(&self, n: u32) -> bool {
        match NonZeroU32::new(n) {
            None => true,
            Some(n) => matches!(self.0.check_n(n), Ok(Ok(()))),
        }
    }
}

/// One bucket per source address.
#[derive(Debug)]
pub struct PerAddress {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
    last_sweep_ms: AtomicU64,
    started: std::time::Instant,
}

impl PerAddress {
    /// Buckets of `rate`/s (burst: the rate) per address; `None` when the rate is 0.
    pub fn new(rate: u32) -> Option<PerAddress> {
        quota(rate, 0).map(|q| PerAddress {
            buckets: RateLimiter::keyed(q),
            last_sweep_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
        })
    }

    /// Takes a token for `ip`.
    pub fn take(&self, ip: IpAddr) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SWEEP_EVERY.as_millis() as u64
            && self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.buckets.retain_recent();
        }
        if self.buckets.len() >= MAX_ADDRESSES {
            self.buckets.retain_recent();
            if self.buckets.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        self.buckets.check_key(&ip).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_the_burst_then_the_rate() {
        let b = Bucket::new(3, 0).expect("on");
        assert!(b.take(1) && b.take(1) && b.take(1));
        assert!(!b.take(1), "the burst (the rate) is spent");
        let b = Bucket::new(4, 0).expect("on");
        assert!(b.take(3));
        assert!(!b.take(3), "three more frames than the one token left");
        assert!(!b.take(5), "more than the burst: never");
        assert!(Bucket::new(0, 10).is_none(), "rate 0 is off");
        let b = Bucket::new(1, 5).expect("on");
        assert!((0..5).all(|_| b.take(1)) && !b.take(1));
    }

    #[test]
    fn addresses_have_buckets_of_their_own() {
        let p = PerAddress::new(2).expect("on");
        let (a, b): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().expect("ip"),
            "192.0.2.2".parse().expect("ip"),
        );
        assert!(p.take(a) && p.take(a) && !p.take(a));
        assert!(p.take(b), "another address is not limited by the first");
    }
}
