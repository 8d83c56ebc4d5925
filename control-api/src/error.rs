//! Control-API errors: one JSON shape, `{"message": …}`, with AWS's `x-amzn-ErrorType` header so
//! the AWS SDKs raise their modeled exceptions (GoneException, PayloadTooLargeException, …).

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use gangway_broker::ConnectionError;

/// An error answer of the control API.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `x-amzn-ErrorType`, e.g. `GoneException`.
    pub error_type: &'static str,
    /// Human-readable message (the JSON body's `message`).
    pub message: String,
}

impl ApiError {
    /// An error with this status, type and message.
    pub fn new(status: u16, error_type: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error_type,
            message: message.into(),
        }
    }

    /// 400 BadRequestException.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequestException", message)
    }

    /// 403 ForbiddenException with AWS's body.
    pub fn forbidden() -> Self {
        Self::new(403, "ForbiddenException", "Forbidden")
    }

    /// 404 for paths the API does not have.
    pub fn not_found() -> Self {
        Self::new(404, "NotFoundException", "Not Found")
    }

    /// The HTTP response (the request id header is added by the caller).
    pub fn to_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            builder.insert_header(("Retry-After", "1"));
        }
        builder
            .insert_header(("x-amzn-ErrorType", self.error_type))
            .content_type("application/json")
            .body(serde_json::json!({ "message": self.message }).to_string())
    }
}

/// The one table from the broker's errors to HTTP statuses and AWS error types.
impl From<ConnectionError> for ApiError {
    fn from(e: ConnectionError) -> Self {
        match &e {
            ConnectionError::BadId(_) => ApiError::bad_request(e.to_string()),
            ConnectionError::Gone => ApiError::new(410, "GoneException", "Connection is gone"),
            ConnectionError::PayloadTooLarge { .. } => {
                ApiError::new(413, "PayloadTooLargeException", e.to_string())
            }
            ConnectionError::LimitExceeded => ApiError::new(
                429,
                "LimitExceededException",
                "The WebSocket client side buffer is full",
            ),
            ConnectionError::InvalidClose(_)
            | ConnectionError::InvalidChannel(_)
            | ConnectionError::TooManyChannels { .. } => ApiError::bad_request(e.to_string()),
            ConnectionError::Unavailable(m) => {
                ApiError::new(503, "ServiceUnavailableException", m.clone())
            }
        }
    }
}
