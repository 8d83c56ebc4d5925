//! Who may call the control API, and how often: the `[control]` section in force, replaced
//! whole by a reload (new tokens and AWS credentials apply to the next request), and a token
//! bucket per credential (`rate_per_credential`, `burst_per_credential`). Shared by the server
//! and by the peer-check client, which signs its own calls with the same credentials.
//!
//! Invariants: a request is charged to a credential only once the credential is proven (a
//! bearer token matched, a SigV4 signature verified over the body), so nobody can spend
//! another caller's budget; the buckets are keyed by configured credentials (and the one local
//! caller), so their number is bounded by the configuration. A reload keeps the buckets unless
//! the rate or burst changed.

use std::num::NonZeroU32;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::ControlConfig;

/// A credential's bucket key: `local`, `bearer:<sha-256 prefix of the token>` or
/// `sigv4:<access key id>`.
pub type CredentialKey = String;

/// See the module documentation.
#[derive(Debug)]
pub struct Access {
    control: ArcSwap<ControlConfig>,
    buckets: ArcSwapOption<DefaultKeyedRateLimiter<CredentialKey>>,
}

impl Access {
    /// Access as `control` says.
    pub fn new(control: ControlConfig) -> Arc<Access> {
        Arc::new(Access {
            buckets: ArcSwapOption::new(buckets(&control).map(Arc::new)),
            control: ArcSwap::from_pointee(control),
        })
    }

    /// The section in force now.
    pub fn current(&self) -> Arc<ControlConfig> {
        self.control.load_full()
    }

    /// Replaces it (a reload).
    pub fn replace(&self, control: ControlConfig) {
        let old = self.control.load();
        if (old.rate_per_credential, old.burst_per_credential)
            != (control.rate_per_credential, control.burst_per_credential)
        {
            self.buckets.store(buckets(&control).map(Arc::new));
        }
        self.control.store(Arc::new(control));
    }

    /// Charges one request to `credential`; false when its bucket is empty.
    pub fn admit(&self, credential: &CredentialKey) -> bool {
        match self.buckets.load().as_ref() {
            None => true,
            Some(b) => b.check_key(credential).is_ok(),
        }
    }
}

fn buckets(control: &ControlConfig) -> Option<DefaultKeyedRateLimiter<CredentialKey>> {
    let rate = NonZeroU32::new(control.rate_per_credential)?;
    let burst = NonZeroU32::new(control.burst_per_credential).unwrap_or(rate);
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_credential_has_its_own_bucket() {
        let mut control = ControlConfig {
            rate_per_credential: 1,
            burst_per_credential: 2,
            ..ControlConfig::default()
        };
        let access = Access::new(control.clone());
        let (a, b) = ("bearer:aa".to_string(), "bearer:bb".to_string());
        assert!(access.admit(&a) && access.admit(&a));
        assert!(!access.admit(&a));
        assert!(access.admit(&b));
        // A reload with the same rate keeps the spent bucket; another rate starts afresh.
        access.replace(control.clone());
        assert!(!access.admit(&a));
        control.burst_per_credential = 3;
        access.replace(control);
        assert!(access.admit(&a));
        // No rate: no limit.
        let open = Access::new(ControlConfig::default());
        assert!((0..100).all(|_| open.admit(&a)));
    }
}
