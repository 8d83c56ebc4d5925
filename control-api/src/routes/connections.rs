//! AWS's `@connections` API: PostToConnection, GetConnection and DeleteConnection (plus
//! Gangway's `?code=&reason=` on delete), and Gangway's listing of open connections.

use actix_web::HttpResponse;
use chrono::{TimeZone, Utc};
use gangway_broker::{ConnectionId, ConnectionInfo};

use super::{json_response, Call};
use crate::error::ApiError;

/// Connections per page of `GET /@connections` unless `limit` says otherwise.
const DEFAULT_PAGE: u32 = 100;
/// Most connections per page.
const MAX_PAGE: u32 = 1000;

/// `GET /@connections[?limit=&cursor=]`: a page of open connections (every node's in cluster
/// mode), each with GetConnection's fields, its id and its channels; `nextCursor` unless last.
pub async fn list(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    let (after, limit) = page_query(&call)?;
    let page = call.broker.list_connections(after, limit).await?;
    let items: Vec<serde_json::Value> = page
        .items
        .into_iter()
        .map(|l| {
            let mut v = describe(l.info);
            v["connectionId"] = serde_json::Value::String(l.id.to_string());
            v["channels"] = serde_json::json!(l.channels);
            v
        })
        .collect();
    let mut body = serde_json::json!({ "items": items });
    if let Some(next) = page.next {
        body["nextCursor"] = serde_json::Value::String(next);
    }
    Ok(json_response(200, body.to_string()))
}

/// A listing's `cursor` and `limit` (1 to 1000, default 100).
pub fn page_query(call: &Call<'_>) -> Result<(Option<ConnectionId>, u32), ApiError> {
    let limit = match call.query_param("limit") {
        None => DEFAULT_PAGE,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be 1 to {MAX_PAGE}, not {v:?}"))
            })?,
    };
    let after = match call.query_param("cursor") {
        None => None,
        Some(c) => Some(ConnectionId::parse(&c).map_err(|_| {
            ApiError::bad_request("Invalid cursor: pass the nextCursor of the previous page")
        })?),
    };
    Ok((after, limit))
}

/// `POST /@connections/{id}`: 200 with an empty body.
pub async fn post(call: Call<'_>, id: &str) -> Result<HttpResponse, ApiError> {
    call.broker.post_to_connection(id, call.body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET /@connections/{id}`: `connectedAt`, `identity`, `lastActiveAt`, as AWS answers.
pub async fn get(call: Call<'_>, id: &str) -> Result<HttpResponse, ApiError> {
    let info = call.broker.get_connection(id).await?;
    Ok(json_response(200, describe(info).to_string()))
}

/// GetConnection's answer for `info`.
fn describe(info: ConnectionInfo) -> serde_json::Value {
    let mut identity = serde_json::json!({ "sourceIp": info.source_ip });
    if let Some(ua) = info.user_agent {
        identity["userAgent"] = serde_json::Value::String(ua);
    }
    let mut v = serde_json::json!({
        "connectedAt": rfc3339(info.connected_at_ms),
        "identity": identity,
        "lastActiveAt": rfc3339(info.last_active_at_ms),
    });
    // Gangway's addition: what the authorizer (and $connect) said about the connection.
    if let Some(a) = info.authorizer {
        v["authorizer"] = a;
    }
    v
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
/// Unix milliseconds as AWS writes times: `2024-01-01T00:00:00.000Z`.
pub fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
