//! The peer check's client: asks another node's control API (`GET /@node`) whether it reaches
//! Redis, with this node's own control credentials — the first bearer token, else the first
//! SigV4 key pair, else none (a credential-less control API only listens on loopback, so its
//! peers are local too), read from the [`Access`] in force at each call, so a reload that
//! rotates them is followed at once. Bounded in time and size; an error status, a redirect, an oversized or
//! unparsable answer all count as no answer.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use gangway_broker::peer::{PeerAnswer, PeerWitness};

use std::sync::Arc;

use crate::access::Access;
use crate::auth::sigv4;
use crate::config::{AwsCredential, ControlConfig};
use crate::routes::node::redis;

/// Largest answer read from a peer.
const MAX_ANSWER_BYTES: usize = 4096;

/// How this node proves itself to its peers.
#[derive(Clone)]
enum Credential {
    None,
    Bearer(String),
    SigV4(AwsCredential),
}

impl Credential {
    fn of(control: &ControlConfig) -> Credential {
        if let Some(t) = control.tokens.first() {
            Credential::Bearer(t.clone())
        } else if let Some(c) = control.aws_credentials.first() {
            Credential::SigV4(c.clone())
        } else {
            Credential::None
        }
    }
}

/// Asks peers over HTTP. See the module documentation.
pub struct HttpWitness {
    client: reqwest::Client,
    access: Arc<Access>,
}

impl std::fmt::Debug for HttpWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match Credential::of(&self.access.current()) {
            Credential::None => "none",
            Credential::Bearer(_) => "bearer",
            Credential::SigV4(_) => "sigv4",
        };
        f.debug_struct("HttpWitness")
            .field("credential", &kind)
            .finish_non_exhaustive()
    }
}

impl HttpWitness {
    /// A witness using the credentials of the `[control]` section in force.
    ///
    /// # Errors
    /// Fails when the HTTP client cannot be built.
    pub fn new(access: Arc<Access>) -> Result<HttpWitness, reqwest::Error> {
        // rustls needs a process-wide crypto provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1)
            .build()?;
        Ok(HttpWitness { client, access })
    }

    async fn request(&self, control_url: &str) -> Option<PeerAnswer> {
        let authority = control_url
            .strip_prefix("http://")
            .or_else(|| control_url.strip_prefix("https://"))?;
        let path = "/@node";
        let mut request = self
            .client
            .get(format!("{control_url}{path}"))
            .header("host", authority);
        match Credential::of(&self.access.current()) {
            Credential::None => {}
            Credential::Bearer(token) => request = request.bearer_auth(token),
            Credential::SigV4(c) => {
                let (authorization, date) =
                    sigv4::sign(&c, "GET", authority, path, b"", chrono::Utc::now());
                request = request
                    .header("authorization", authorization)
                    .header("x-amz-date", date);
            }
        }
        let mut response = request.send().await.ok()?;
        if response.status() != reqwest::StatusCode::OK {
            return None;
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.ok()? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return None;
            }
            body.extend_from_slice(&chunk);
        }
        answer(&body)
    }
}

/// Reads a peer's `GET /@node` answer: whether it reaches Redis and for how long it has, if it
/// says so clearly.
pub fn answer(body: &[u8]) -> Option<PeerAnswer> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let reaches_redis = match value.get("redis")?.as_str()? {
        redis::UP => true,
        redis::DOWN => false,
        _ => return None,
    };
    let healthy_ms = value.get("healthyMs")?.as_u64()?;
    Some(PeerAnswer {
        reaches_redis,
        healthy_for: Duration::from_millis(healthy_ms),
    })
}

impl PeerWitness for HttpWitness {
    fn ask<'a>(
        &'a self,
        control_url: &'a str,
        limit: Duration,
    ) -> BoxFuture<'a, Option<PeerAnswer>> {
        async move {
            tokio::time::timeout(limit, self.request(control_url))
                .await
                .ok()
                .flatten()
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_clear_answer_counts() {
        let up = answer(br#"{"nodeId":"a","redis":"up","healthyMs":1500}"#).expect("clear");
        assert!(up.reaches_redis);
        assert_eq!(up.healthy_for, Duration::from_millis(1500));
        let down = answer(br#"{"redis":"down","fenced":true,"healthyMs":0}"#).expect("clear");
        assert!(!down.reaches_redis);
        assert_eq!(answer(br#"{"redis":"up"}"#), None);
        assert_eq!(answer(br#"{"redis":"up","healthyMs":-1}"#), None);
        assert_eq!(answer(br#"{"redis":"none","healthyMs":0}"#), None);
        assert_eq!(answer(br#"{"redis":true}"#), None);
        assert_eq!(answer(b"up"), None);
        assert_eq!(answer(b""), None);
    }
}
