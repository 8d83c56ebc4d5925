//! Bearer tokens (`Authorization: Bearer <token>`) checked against `[control] tokens`, in
//! constant time per token.

use super::sigv4::constant_time_eq;
use crate::error::ApiError;

/// Accepts `token` when it is one of `tokens`; 403 otherwise.
pub fn check(token: &str, tokens: &[String]) -> Result<(), ApiError> {
    let token = token.trim().as_bytes();
    if tokens.iter().any(|t| constant_time_eq(t.as_bytes(), token)) {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_token_passes() {
        let tokens = vec!["token-one-1234".to_string()];
        assert!(check("token-one-1234", &tokens).is_ok());
        assert!(check(" token-one-1234 ", &tokens).is_ok());
        assert_eq!(
            check("token-one-123", &tokens)
                .err()
                .map(|e| e.status.as_u16()),
            Some(403)
        );
        assert!(check("", &tokens).is_err());
        assert!(check("token-one-1234", &[]).is_err());
    }
}
