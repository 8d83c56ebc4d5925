//! What decides a connection before `$connect` runs: API keys (`[api] api_key_required`) and an
//! authorizer (`[authorizer]`; today `jwt`). A refusal never reaches a backend: 401 when the
//! credential is missing or invalid, 403 when it is valid but not allowed (AWS's statuses). An
//! admitted connection carries the authorizer's result — `principalId` and the chosen claims —
//! as `requestContext.authorizer` on `$connect` and every later event.
//!
//! A new authorizer type is a file here with a `check` over the upgrade request's headers and
//! query, and an arm in [`Gate::check`].

pub mod api_key;
pub mod jwks;
pub mod jwt;
pub mod request;
mod ring_verify;

use crate::config::authorizer::AuthorizerConfig;
use crate::config::Config;
use crate::integration::event::EventSource;

/// An admitted connection's identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admitted {
    /// `requestContext.authorizer` (`principalId` and context), when an authorizer ran.
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
    /// The API key's message rate and burst, when it has its own.
    pub key_rate: Option<(u32, u32)>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// 401 (no or bad credential) or 403 (not allowed).
    pub status: u16,
    /// A short metric label.
    pub reason: &'static str,
}

/// The node's checks before `$connect`.
#[derive(Debug)]
pub struct Gate {
    keys: Option<api_key::Keys>,
    authorizer: Option<Authorizer>,
}

/// The configured authorizer.
#[derive(Debug)]
enum Authorizer {
    Jwt(Box<jwt::Jwt>),
    Request(request::RequestAuthorizer),
}

impl Gate {
    /// The gate of a configuration: `None` when nothing is checked.
    pub fn new(config: &Config) -> Option<Gate> {
        let keys = config
            .api_keys
            .required
            .then(|| api_key::Keys::new(&config.api_keys.keys));
        let authorizer = config.authorizer.as_ref().map(|a| match a {
            AuthorizerConfig::Jwt(c) => Authorizer::Jwt(Box::new(jwt::Jwt::new(c))),
            AuthorizerConfig::Request(c) => Authorizer::Request(request::RequestAuthorizer::new(
                c,
                crate::integration::webhook_key(config),
            )),
        });
        (keys.is_some() || authorizer.is_some()).then_some(Gate { keys, authorizer })
    }

    /// Checks an upgrade request's `headers` (client case) and decoded `query`, for the
    /// connection `source` describes.
    pub async fn check(
        &self,
        headers: &[(String, String)],
        query: &[(String, String)],
        source: &EventSource<'_>,
    ) -> Result<Admitted, Refused> {
        let mut admitted = Admitted::default();
        if let Some(keys) = &self.keys {
            admitted.key_rate = keys.check(headers)?;
        }
        admitted.context = match &self.authorizer {
            None => None,
            Some(Authorizer::Jwt(j)) => Some(j.check(headers, query).await?),
            Some(Authorizer::Request(r)) => Some(r.check(headers, query, source).await?),
        };
        Ok(admitted)
    }
}

/// The first header named `name` (case-insensitive).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
