//! AWS's `@connections` API: PostToConnection, GetConnection and DeleteConnection (plus
//! Gangway's `?code=&reason=` on delete).

use actix_web::HttpResponse;
use chrono::{TimeZone, Utc};

use super::{json_response, Call};
use crate::error::ApiError;

/// `POST /@connections/{id}`: 200 with an empty body.
pub async fn post(call: Call<'_>, id: &str) -> Result<HttpResponse, ApiError> {
    call.broker.post_to_connection(id, call.body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET /@connections/{id}`: `connectedAt`, `identity`, `lastActiveAt`, as AWS answers.
pub async fn get(call: Call<'_>, id: &str) -> Result<HttpResponse, ApiError> {
    let info = call.broker.get_connection(id).await?;
    let mut identity = serde_json::json!({ "sourceIp": info.source_ip });
    if let Some(ua) = info.user_agent {
        identity["userAgent"] = serde_json::Value::String(ua);
    }
    let body = serde_json::json!({
        "connectedAt": rfc3339(info.connected_at_ms),
        "identity": identity,
        "lastActiveAt": rfc3339(info.last_active_at_ms),
    });
    Ok(json_response(200, body.to_string()))
}

/// `DELETE /@connections/{id}[?code=&reason=]`: 204 once the close is queued.
pub async fn delete(call: Call<'_>, id: &str) -> Result<HttpResponse, ApiError> {
    let code = match call.query_param("code") {
        None => None,
        Some(v) => Some(
            v.parse::<u16>()
                .map_err(|_| ApiError::bad_request(format!("code must be a number, not {v:?}")))?,
        ),
    };
    let reason = call.query_param("reason");
    call.broker
        .delete_connection(id, code, reason.as_deref())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// RFC 3339 with milliseconds, as AWS writes GetConnection times.
fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
