//! `[authorizer]` (what decides a connection before `$connect` runs) and `[api]`'s API keys.
//! Keys and secrets are checked here, so `--check` names a bad one; the authorizer itself
//! (`crate::authorizer`) is built from what this reads.

use super::{ConfigProblem, Section};

/// `[authorizer]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizerConfig {
    /// `type = "jwt"`.
    Jwt(JwtConfig),
    /// `type = "request"`: AWS's REQUEST authorizer contract, over HTTP.
    Request(RequestConfig),
}

/// One identity source of a `request` authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// `route.request.header.NAME`.
    Header(String),
    /// `route.request.querystring.NAME`.
    Query(String),
}

/// `type = "request"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestConfig {
    /// `url`: where the authorizer event is POSTed (signed like every webhook).
    pub url: String,
    /// `identity_sources`: each must be present (else 401 without a call); their values key
    /// the cache.
    pub identity_sources: Vec<IdentitySource>,
    /// `ttl_secs`: how long a decision is cached (0: not cached; default 300).
    pub ttl_secs: u64,
    /// `timeout_ms` of one call (default 5 000).
    pub timeout_ms: u64,
}

/// Where a connection's token is read from (`token_source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `"header:NAME"` (a `Bearer ` prefix is stripped).
    Header(String),
    /// `"query:NAME"`.
    Query(String),
    /// `"cookie:NAME"`.
    Cookie(String),
    /// `"subprotocol"`: the `Sec-WebSocket-Protocol` entry that is a JWT.
    Subprotocol,
}

/// `type = "jwt"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// `token_source` (default `"header:Authorization"`).
    pub token_source: TokenSource,
    /// `algorithms`: the only algorithms accepted (names as in JWS: `HS256`, `RS256`, `ES256`,
    /// `EdDSA`, …).
    pub algorithms: Vec<String>,
    /// `secret`: the HMAC key for `HS*`.
    pub secret: Option<String>,
    /// `public_keys`: PEM public keys for the asymmetric algorithms (tried in order).
    pub public_keys: Vec<String>,
    /// `jwks_url`: a JSON Web Key Set fetched when a token names a `kid` not seen yet.
    pub jwks_url: Option<String>,
    /// `issuer`: required `iss`.
    pub issuer: Option<String>,
    /// `audience`: required `aud`.
    pub audience: Option<String>,
    /// `leeway_secs` for `exp` and `nbf` (default 30).
    pub leeway_secs: u64,
    /// `context_claims`: claims copied into `requestContext.authorizer`.
    pub context_claims: Vec<String>,
}

/// One `[[api.keys]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// `sha256`: hex of the SHA-256 of the key (keys are stored hashed).
    pub sha256: [u8; 32],
    /// `rate`: messages/s for connections using this key (0: the node's limit).
    pub rate: u32,
    /// `burst` (0: the rate).
    pub burst: u32,
}

/// The algorithms `algorithms` may name.
pub const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Reads `[authorizer]`, recording every problem.
pub fn read(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> Option<AuthorizerConfig> {
    table.get("authorizer")?;
    let mut r = Section::new(table, "authorizer", problems);
    let kind = r.string("type");
    let source = r.string("token_source");
    let algorithms = r.string_list("algorithms");
    let secret = r.string("secret");
    let public_keys = r.string_list("public_keys");
    let jwks_url = r.string("jwks_url");
    let issuer = r.string("issuer");
    let audience = r.string("audience");
    let leeway_secs = r.uint("leeway_secs", 30, 0, 3_600);
    let context_claims = r.string_list("context_claims");
    let url = r.string("url");
    let identity_sources = r.string_list("identity_sources");
    let ttl_secs = r.uint("ttl_secs", 300, 0, 86_400);
    let timeout_ms = r.uint("timeout_ms", 5_000, 1, 30_000);
    r.finish();
    let mut problem = |key: &str, message: String| {
        problems.push(ConfigProblem {
            key: format!("authorizer.{key}"),
            message,
        })
    };
    match kind.as_deref() {
        Some("jwt") => {}
        Some("request") => {
            let url = match url {
                Some(u)
                    if reqwest::Url::parse(&u)
                        .is_ok_and(|p| matches!(p.scheme(), "http" | "https")) =>
                {
                    u
                }
                other => {
                    problem("url", format!("an http(s) URL is needed, not {other:?}"));
                    String::new()
                }
            };
            let mut sources = Vec::new();
            for (i, s) in identity_sources.iter().enumerate() {
                if let Some(h) = s
                    .strip_prefix("route.request.header.")
                    .filter(|h| !h.is_empty())
                {
                    sources.push(IdentitySource::Header(h.to_string()));
                } else if let Some(q) = s
                    .strip_prefix("route.request.querystring.")
                    .filter(|q| !q.is_empty())
                {
                    sources.push(IdentitySource::Query(q.to_string()));
                } else {
                    problem(
                        &format!("identity_sources[{i}]"),
                        format!(
                            "{s:?}: route.request.header.NAME or route.request.querystring.NAME"
                        ),
                    );
                }
            }
            if ttl_secs > 0 && sources.is_empty() {
                problem(
                    "ttl_secs",
                    "caching needs identity_sources (their values key the cache); set ttl_secs = 0"
                        .into(),
                );
            }
            return Some(AuthorizerConfig::Request(RequestConfig {
                url,
                identity_sources: sources,
                ttl_secs,
                timeout_ms,
            }));
        }
        other => {
            problem(
                "type",
                format!("must be \"jwt\" or \"request\", not {other:?}"),
            );
            return None;
        }
    }
    if let Some(u) = &jwks_url {
        if !reqwest::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https")) {
            problem("jwks_url", format!("not an http(s) URL: {u:?}"));
        }
    }
    let token_source = match source
        .as_deref()
        .map(|s| s.split_once(':').unwrap_or((s, "")))
    {
        None => TokenSource::Header("Authorization".into()),
        Some(("header", n)) if !n.is_empty() => TokenSource::Header(n.into()),
        Some(("query", n)) if !n.is_empty() => TokenSource::Query(n.into()),
        Some(("cookie", n)) if !n.is_empty() => TokenSource::Cookie(n.into()),
        Some(("subprotocol", "")) => TokenSource::Subprotocol,
        Some(_) => {
            problem(
                "token_source",
                "must be \"header:NAME\", \"query:NAME\", \"cookie:NAME\" or \"subprotocol\""
                    .into(),
            );
            TokenSource::Subprotocol
        }
    };
    if algorithms.is_empty() {
        problem("algorithms", "name at least one (e.g. [\"ES256\"])".into());
    }
    for (i, a) in algorithms.iter().enumerate() {
        if !ALGORITHMS.contains(&a.as_str()) {
            problem(
                &format!("algorithms[{i}]"),
                format!("unknown algorithm {a:?} (known: {})", ALGORITHMS.join(", ")),
            );
        }
    }
    let hmac = algorithms.iter().any(|a| a.starts_with("HS"));
    let asymmetric = algorithms.iter().any(|a| !a.starts_with("HS"));
    if hmac && secret.as_ref().is_none_or(|s| s.len() < 32) {
        problem(
            "secret",
            "HS* algorithms need a secret of at least 32 characters".into(),
        );
    }
    if asymmetric && public_keys.is_empty() && jwks_url.is_none() {
        problem(
            "public_keys",
            "the asymmetric algorithms need PEM public keys or a jwks_url".into(),
        );
    }
    if hmac && asymmetric {
        // An HMAC key next to public keys invites the classic confusion (a token signed with
        // HMAC over a public key); keep the two apart.
        problem(
            "algorithms",
            "do not mix HS* with asymmetric algorithms in one authorizer".into(),
        );
    }
    for (i, pem) in public_keys.iter().enumerate() {
        if decoding_keys(pem).is_empty() {
            problem(
                &format!("public_keys[{i}]"),
                "not a PEM RSA, EC or Ed25519 public key".into(),
            );
        }
    }
    Some(AuthorizerConfig::Jwt(JwtConfig {
        token_source,
        algorithms,
        secret,
        public_keys,
        jwks_url,
        issuer,
        audience,
        leeway_secs,
        context_claims,
    }))
}

/// Reads `[[api.keys]]` from the `[api]` table, recording every problem.
pub fn read_keys(api: Option<&toml::Value>, problems: &mut Vec<ConfigProblem>) -> Vec<ApiKey> {
    let Some(keys) = api.and_then(|a| a.get("keys")) else {
        return Vec::new();
    };
    let Some(items) = keys.as_array() else {
        problems.push(ConfigProblem {
            key: "api.keys".into(),
            message: "expected [[api.keys]] tables".into(),
        });
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("api.keys[{i}]");
        let Some(t) = item.as_table() else {
            problems.push(ConfigProblem {
                key: prefix,
                message: "must be a table".into(),
            });
            continue;
        };
        let mut r = Section::from_table(t, prefix.clone(), problems);
        let sha = r.string("sha256");
        let rate = r.uint("rate", 0, 0, 1 << 20) as u32;
        let burst = r.uint("burst", 0, 0, 1 << 20) as u32;
        r.finish();
        let digest = sha
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        match digest {
            Some(sha256) => out.push(ApiKey {
                sha256,
                rate,
                burst,
            }),
            None => problems.push(ConfigProblem {
                key: format!("{prefix}.sha256"),
                message: "64 hex digits: the SHA-256 of the key (e.g. printf %s KEY | sha256sum)"
                    .into(),
            }),
        }
    }
    out
}

/// The verification keys a PEM public key gives, one per family it could be (RSA also serves
/// the PS* algorithms); empty when it is none of them.
pub fn decoding_keys(pem: &str) -> Vec<(KeyFamily, jsonwebtoken::DecodingKey)> {
    let b = pem.as_bytes();
    let mut out = Vec::new();
    if let Ok(k) = jsonwebtoken::DecodingKey::from_rsa_pem(b) {
        out.push((KeyFamily::Rsa, k));
    }
    if let Ok(k) = jsonwebtoken::DecodingKey::from_ec_pem(b) {
        out.push((KeyFamily::Ec, k));
    }
    if let Ok(k) = jsonwebtoken::DecodingKey::from_ed_pem(b) {
        out.push((KeyFamily::Ed, k));
    }
    out
}

/// Which algorithms a public key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// RS*, PS*.
    Rsa,
    /// ES*.
    Ec,
    /// EdDSA.
    Ed,
}
