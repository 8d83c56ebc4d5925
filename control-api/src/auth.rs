//! Control-API credentials: bearer tokens from `[control] tokens`, and AWS SigV4 signatures
//! checked against `[[control.aws_credentials]]` (see [`crate::sigv4`]).
//!
//! With no credentials configured every request passes (the server then refuses to bind the
//! control listener anywhere but loopback — see the config validation). A request whose
//! credentials cannot be verified is refused, never let through.

use actix_web::HttpRequest;
use gangway_broker::config::ControlConfig;

use crate::error::ApiError;
use crate::sigv4::{self, SignedRequest};

/// True when the request is SigV4-signed: its body must be read before [`check`].
pub fn is_sigv4(req: &HttpRequest) -> bool {
    authorization(req).is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256"))
}

fn authorization(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Checks the request's credentials against the configuration. `body` is the request body
/// (needed for SigV4; empty for bearer tokens).
pub fn check(req: &HttpRequest, control: &ControlConfig, body: &[u8]) -> Result<(), ApiError> {
    if !control.requires_auth() {
        return Ok(());
    }
    let Some(header) = authorization(req) else {
        return Err(ApiError::new(
            401,
            "UnauthorizedException",
            "Missing credentials: send Authorization: Bearer <token>, or sign the request with SigV4",
        ));
    };
    if let Some(token) = header.strip_prefix("Bearer ") {
        let token = token.trim().as_bytes();
        if control
            .tokens
            .iter()
            .any(|t| constant_time_eq(t.as_bytes(), token))
        {
            return Ok(());
        }
        return Err(ApiError::forbidden());
    }
    if header.starts_with("AWS4-HMAC-SHA256") {
        let lookup = |name: &str| -> Vec<String> {
            req.headers()
                .get_all(name)
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect()
        };
        let signed = SignedRequest {
            method: req.method().as_str(),
            raw_path: req.uri().path(),
            raw_query: req.uri().query().unwrap_or(""),
            header: &lookup,
            body,
        };
        return match sigv4::verify(
            header,
            &signed,
            &control.aws_credentials,
            chrono::Utc::now(),
        ) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::info!(error = %e, "SigV4 request refused");
                Err(ApiError::new(403, "ForbiddenException", e.to_string()))
            }
        };
    }
    Err(ApiError::forbidden())
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
