//! What decides a connection before `$connect` runs: API keys (`[api] api_key_required`) and an
//! authorizer (`[authorizer]`; today `jwt`). A refusal never reaches a backend: 401 when the
//! credential is missing or invalid, 403 when it is valid but not allowed (AWS's statuses). An
//! admitted connection carries the authorizer's result — `principalId` and the chosen claims —
//! as `requestContext.authorizer` on `$connect` and every later event.
//!
//! A new authorizer type is a file here with a `check` over the upgrade request's headers and
//! query, and an arm in [`Gate::check`].

pub mod api_key;
pub mod jwt;
mod ring_verify;

use crate::config::authorizer::{ApiKey, AuthorizerConfig};

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
    jwt: Option<jwt::Jwt>,
}

impl Gate {
    /// The gate of a configuration: `None` when nothing is checked.
    pub fn new(
        authorizer: Option<&AuthorizerConfig>,
        api_key_required: bool,
        keys: &[ApiKey],
    ) -> Option<Gate> {
        let keys = api_key_required.then(|| api_key::Keys::new(keys));
        let jwt = authorizer.map(|a| match a {
            AuthorizerConfig::Jwt(c) => jwt::Jwt::new(c),
        });
        (keys.is_some() || jwt.is_some()).then_some(Gate { keys, jwt })
    }

    /// Checks an upgrade request's `headers` (client case) and decoded `query`.
    pub fn check(
        &self,
        headers: &[(String, String)],
        query: &[(String, String)],
    ) -> Result<Admitted, Refused> {
        let mut admitted = Admitted::default();
        if let Some(keys) = &self.keys {
            admitted.key_rate = keys.check(headers)?;
        }
        if let Some(jwt) = &self.jwt {
            admitted.context = Some(jwt.check(headers, query)?);
        }
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
