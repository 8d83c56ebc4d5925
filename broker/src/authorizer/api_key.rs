//! API keys (`x-api-key`), as AWS checks them on `$connect` when `api_key_required` is set:
//! compared by SHA-256 (only hashes are configured), in constant time; a missing or unknown key
//! is 403.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::{header, Refused};
use crate::config::authorizer::ApiKey;

/// The configured keys.
#[derive(Debug)]
pub struct Keys(Vec<ApiKey>);

impl Keys {
    /// The keys of `[[api.keys]]`.
    pub fn new(keys: &[ApiKey]) -> Keys {
        Keys(keys.to_vec())
    }

    /// Checks `x-api-key`; the key's own message rate and burst when it has one.
    pub fn check(&self, headers: &[(String, String)]) -> Result<Option<(u32, u32)>, Refused> {
        let forbidden = Refused {
            status: 403,
            reason: "api_key",
        };
        let given = header(headers, "x-api-key").ok_or(forbidden.clone())?;
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        // Every key is compared, so the time taken does not say which one came close.
        let mut found = None;
        for k in &self.0 {
            if bool::from(k.sha256.ct_eq(&digest)) {
                found = Some(k);
            }
        }
        let key = found.ok_or(forbidden)?;
        Ok((key.rate > 0).then_some((key.rate, key.burst)))
    }
}
