//! Control-API credentials: bearer tokens from `[control] tokens`, and AWS SigV4 signatures
//! checked against `[[control.aws_credentials]]` (see [`sigv4`]; bearer tokens: [`bearer`]).
//!
//! With no credentials configured, the control listener may only bind to loopback (see the
//! config validation), and every request must look like it came from a local program, not a
//! web page: a request with an `Origin` header, a `Sec-Fetch-Site` other than `none`, or a
//! `Host` that is not a loopback name or address is refused (a page in a local browser could
//! otherwise POST a "simple" request, or reach the API by DNS rebinding).
//!
//! A request whose credentials cannot be verified is refused, never let through. Everything a
//! SigV4 signature says about the request except the body is checked before the body is read.

use crate::config::ControlConfig;
use actix_web::HttpRequest;

use crate::error::ApiError;
pub mod bearer;
pub mod sigv4;

use sigv4::{Precheck, SignedHead};

/// Who a request was found to be, before its body is read.
#[derive(Debug)]
pub enum Caller {
    /// No credentials are configured: a local program on the loopback listener.
    Local,
    /// A configured bearer token.
    Bearer,
    /// A SigV4 signature whose headers passed [`sigv4::precheck`]: the body must still be
    /// verified with [`verify_body`].
    SigV4(Precheck),
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn all_headers(req: &HttpRequest) -> impl Fn(&str) -> Vec<String> + '_ {
    |name: &str| {
        req.headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
}

/// Checks the request's credentials (or, without any configured, that it is local), using its
/// headers only.
pub fn authenticate(req: &HttpRequest, control: &ControlConfig) -> Result<Caller, ApiError> {
    if !control.requires_auth() {
        return check_local(req).map(|()| Caller::Local);
    }
    let Some(authorization) = header(req, "authorization") else {
        return Err(ApiError::new(
            401,
            "UnauthorizedException",
            "Missing credentials: send Authorization: Bearer <token>, or sign the request with SigV4",
        ));
    };
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        return bearer::check(token, &control.tokens).map(|()| Caller::Bearer);
    }
    if authorization.starts_with("AWS4-HMAC-SHA256") {
        let lookup = all_headers(req);
        let head = signed_head(req, &lookup);
        return sigv4::precheck(
            authorization,
            &head,
            &control.aws_credentials,
            chrono::Utc::now(),
        )
        .map(Caller::SigV4)
        .map_err(refused);
    }
    Err(ApiError::forbidden())
}

/// The bucket key of a request whose bearer token was accepted: a SHA-256 prefix of the token
/// (the token itself is never kept as a key).
pub fn bearer_key(req: &HttpRequest) -> String {
    use sha2::Digest as _;
    let token = header(req, "authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    let digest = sha2::Sha256::digest(token.as_bytes());
    format!("bearer:{}", hex::encode(&digest[..8]))
}

/// Verifies a SigV4 signature over the body as received.
pub fn verify_body(req: &HttpRequest, pre: &Precheck, body: &[u8]) -> Result<(), ApiError> {
    let lookup = all_headers(req);
    pre.verify(&signed_head(req, &lookup), body)
        .map_err(refused)
}

fn signed_head<'a>(
    req: &'a HttpRequest,
    lookup: &'a dyn Fn(&str) -> Vec<String>,
) -> SignedHead<'a> {
    SignedHead {
        method: req.method().as_str(),
        raw_path: req.uri().path(),
        raw_query: req.uri().query().unwrap_or(""),
        header: lookup,
    }
}

fn refused(e: sigv4::SigV4Error) -> ApiError {
    // The log says why; the caller learns no more than it needs (no key enumeration).
    tracing::info!(error = %e, "SigV4 request refused");
    ApiError::new(403, "ForbiddenException", e.client_message())
}

/// Without credentials, only local programs may call: no browser (`Origin`, `Sec-Fetch-Site`)
/// and a loopback `Host`.
pub fn check_local(req: &HttpRequest) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        Err(ApiError::new(
            403,
            "ForbiddenException",
            format!(
                "{why}: this control API has no credentials configured, so it answers only \
                 local programs (configure [control] tokens to call it from elsewhere)"
            ),
        ))
    };
    if req.headers().contains_key("origin") {
        return refuse("requests from web pages (with an Origin header) are refused");
    }
    if header(req, "sec-fetch-site").is_some_and(|s| s != "none") {
        return refuse("requests from web pages (Sec-Fetch-Site) are refused");
    }
    match header(req, "host") {
        Some(host) if is_loopback_host(host) => Ok(()),
        _ => refuse("the Host header must name a loopback address"),
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) if tail.is_empty() || is_port(tail) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_port(tail: &str) -> bool {
    tail.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "LOCALHOST:9090",
            "127.0.0.1",
            "127.0.0.1:9090",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:9090",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9090",
            "localhost.evil.example",
            "10.0.0.1:9090",
            "[::2]:9090",
            "127.0.0.1:",
            "127.0.0.1:x",
            "[::1]x",
            "",
            "127.0.0.1.evil.example",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
