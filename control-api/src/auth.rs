//! Control-API credentials: bearer tokens from `[control] tokens`.
//!
//! With no credentials configured every request passes (the server then refuses to bind the
//! control listener anywhere but loopback — see the config validation).

use actix_web::HttpRequest;
use gangway_broker::config::ControlConfig;

use crate::error::ApiError;

/// Checks the request's credentials against the configuration.
pub fn check(req: &HttpRequest, control: &ControlConfig) -> Result<(), ApiError> {
    if !control.requires_auth() {
        return Ok(());
    }
    let Some(header) = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ApiError::new(
            401,
            "UnauthorizedException",
            "Missing credentials: send Authorization: Bearer <token>",
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
