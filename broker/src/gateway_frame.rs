//! Messages the gateway itself sends to a client, in AWS's shapes:
//! `{"message": "Forbidden", "connectionId": …, "requestId": …}` and friends.

use bytes::Bytes;

use crate::id::request_id;

/// A gateway error frame with `message`, the connection id and a fresh request id.
pub fn error(message: &str, connection_id: &str) -> Bytes {
    error_for_request(message, connection_id, &request_id())
}

/// A gateway error frame about the request `request_id` (the id the backend event carried).
pub fn error_for_request(message: &str, connection_id: &str, request_id: &str) -> Bytes {
    crate::frame::text(
        &serde_json::json!({
            "message": message,
            "connectionId": connection_id,
            "requestId": request_id,
        })
        .to_string(),
    )
}
