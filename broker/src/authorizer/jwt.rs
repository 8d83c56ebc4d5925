//! The `jwt` authorizer: a signed token from a header, query parameter, cookie or
//! `Sec-WebSocket-Protocol` entry, verified with the configured keys (the `jsonwebtoken`
//! crate): only the configured algorithms (never `none`, never HMAC over a public key — the
//! algorithm picks the key family), `exp` and `nbf` with leeway, required `iss` and `aud`.
//! `sub` becomes `principalId`; `context_claims` are copied into the context.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{header, Refused};
use crate::config::authorizer::{decoding_keys, JwtConfig, KeyFamily, TokenSource};

/// A configured `jwt` authorizer.
pub struct Jwt {
    config: JwtConfig,
    algorithms: Vec<Algorithm>,
    hmac: Option<DecodingKey>,
    public: Vec<(KeyFamily, DecodingKey)>,
    jwks: Option<super::jwks::Jwks>,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("algorithms", &self.algorithms)
            .field("public_keys", &self.public.len())
            .finish_non_exhaustive()
    }
}

fn unauthorized(reason: &'static str) -> Refused {
    Refused {
        status: 401,
        reason,
    }
}

impl Jwt {
    /// Builds it from a validated configuration.
    pub fn new(config: &JwtConfig) -> Jwt {
        super::ring_verify::install();
        Jwt {
            algorithms: config
                .algorithms
                .iter()
                .filter_map(|a| a.parse::<Algorithm>().ok())
                .collect(),
            hmac: config
                .secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            public: config
                .public_keys
                .iter()
                .flat_map(|pem| decoding_keys(pem))
                .collect(),
            jwks: config.jwks_url.as_deref().map(super::jwks::Jwks::new),
            config: config.clone(),
        }
    }

    /// Verifies the request's token; the context (`principalId` and the chosen claims).
    pub async fn check(
        &self,
        headers: &[(String, String)],
        query: &[(String, String)],
    ) -> Result<serde_json::Map<String, serde_json::Value>, Refused> {
        let token = self
            .token(headers, query)
            .ok_or(unauthorized("token_missing"))?;
        let head =
            jsonwebtoken::decode_header(&token).map_err(|_| unauthorized("token_malformed"))?;
        if !self.algorithms.contains(&head.alg) {
            return Err(unauthorized("token_algorithm"));
        }
        let mut validation = Validation::new(head.alg);
        validation.algorithms = vec![head.alg];
        validation.leeway = self.config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(iss) = &self.config.issuer {
            validation.set_issuer(&[iss]);
        }
        match &self.config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let family = family(head.alg);
        // A token that names its key and a key set to look it up in: that key only.
        let from_set = match (&self.jwks, &head.kid, family) {
            (Some(jwks), Some(kid), Some(_)) => Some(
                jwks.key(kid)
                    .await
                    .ok_or(unauthorized("token_unknown_key"))?,
            ),
            _ => None,
        };
        let keys: Vec<&DecodingKey> = match (&from_set, family) {
            (Some(k), _) => vec![k.as_ref()],
            (None, None) => self.hmac.iter().collect(),
            (None, Some(f)) => self
                .public
                .iter()
                .filter(|(k, _)| *k == f)
                .map(|(_, key)| key)
                .collect(),
        };
        let mut last = unauthorized("token_invalid");
        for key in keys {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                &token,
                key,
                &validation,
            ) {
                Ok(data) => return Ok(self.context(data.claims)),
                Err(e) => {
                    last = unauthorized(match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token_expired",
                        jsonwebtoken::errors::ErrorKind::ImmatureSignature => "token_not_yet_valid",
                        jsonwebtoken::errors::ErrorKind::InvalidIssuer => "token_issuer",
                        jsonwebtoken::errors::ErrorKind::InvalidAudience => "token_audience",
                        _ => "token_invalid",
                    });
                }
            }
        }
        Err(last)
    }

    fn context(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        let principal = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or("")
            .to_string();
        out.insert("principalId".into(), principal.into());
        for name in &self.config.context_claims {
            if let Some(v) = claims.get(name) {
                out.insert(name.clone(), v.clone());
            }
        }
        out
    }

    fn token(&self, headers: &[(String, String)], query: &[(String, String)]) -> Option<String> {
        let t = match &self.config.token_source {
            TokenSource::Header(name) => {
                let v = header(headers, name)?.trim();
                v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string()
            }
            TokenSource::Query(name) => query.iter().find(|(k, _)| k == name)?.1.clone(),
            TokenSource::Cookie(name) => header(headers, "cookie")?
                .split(';')
                .filter_map(|c| c.trim().split_once('='))
                .find(|(k, _)| k == name)?
                .1
                .to_string(),
            TokenSource::Subprotocol => header(headers, "sec-websocket-protocol")?
                .split(',')
                .map(str::trim)
                .find(|p| p.matches('.').count() == 2)?
                .to_string(),
        };
        (!t.is_empty()).then_some(t)
    }
}

/// The key family an algorithm needs; `None` for HMAC.
fn family(alg: Algorithm) -> Option<KeyFamily> {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => None,
        Algorithm::ES256 | Algorithm::ES384 => Some(KeyFamily::Ec),
        Algorithm::EdDSA => Some(KeyFamily::Ed),
        _ => Some(KeyFamily::Rsa),
    }
}
