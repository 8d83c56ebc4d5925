//! A `jwt` authorizer's JSON Web Key Set (`jwks_url`): fetched when a token names a `kid` not
//! seen yet (so rotated keys are picked up), at most once per [`REFRESH_EVERY`] (a flood of
//! made-up `kid`s cannot turn the node into a load generator), within [`FETCH_TIMEOUT`] and
//! [`MAX_JWKS_BYTES`]; the last good set is kept when the URL is down, slow or answers garbage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::DecodingKey;

/// Least time between two fetches.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// How long one fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key set read.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one set.
pub const MAX_KEYS: usize = 100;

/// The keys by `kid`.
type Keys = HashMap<String, Arc<DecodingKey>>;

/// See the module documentation.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: ArcSwap<Keys>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .field("keys", &self.keys.load().len())
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// A key set at `url`, not fetched yet.
    pub fn new(url: &str) -> Jwks {
        Jwks {
            url: url.to_string(),
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(FETCH_TIMEOUT)
                .build()
                .unwrap_or_default(),
            keys: ArcSwap::from_pointee(HashMap::new()),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// The key named `kid`, fetching the set again if it is unknown (rate-limited).
    pub async fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        if let Some(k) = self.keys.load().get(kid) {
            return Some(Arc::clone(k));
        }
        {
            let mut last = self.last_fetch.lock().await;
            // Another token may have fetched while this one waited for the lock.
            if let Some(k) = self.keys.load().get(kid) {
                return Some(Arc::clone(k));
            }
            if last.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
                return None;
            }
            *last = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => self.keys.store(Arc::new(keys)),
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed: keeping the last good key set")
                }
            }
        }
        self.keys.load().get(kid).cloned()
    }

    async fn fetch(&self) -> Result<Keys, String> {
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in set.keys.iter().take(MAX_KEYS) {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
            else {
                continue;
            };
            keys.insert(kid, Arc::new(key));
        }
        if keys.is_empty() {
            return Err("no usable key with a kid".into());
        }
        Ok(keys)
    }
}
