//! Channels: subscribe and unsubscribe a connection, publish to a channel, count its
//! subscribers (on every node).

use actix_web::HttpResponse;

use base64::Engine as _;
use serde_json::json;

use super::{json_response, published_json, Call};
use crate::error::ApiError;

/// `PUT /@connections/{id}/channels/{channel}`: 204 once the subscription is live.
pub async fn subscribe(call: Call<'_>, id: &str, channel: &str) -> Result<HttpResponse, ApiError> {
    call.broker.subscribe(id, channel).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /@connections/{id}/channels/{channel}`.
pub async fn unsubscribe(
    call: Call<'_>,
    id: &str,
    channel: &str,
) -> Result<HttpResponse, ApiError> {
    call.broker.unsubscribe(id, channel).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /@channels/{channel}[?exclude=id]`: `{"recipients": N}` (this node's), plus
/// `offset` and `epoch` on a channel with history.
pub async fn publish(call: Call<'_>, channel: &str) -> Result<HttpResponse, ApiError> {
    let exclude = call.query_param("exclude");
    let published = call
        .broker
        .publish(channel, &call.body, exclude.as_deref())
        .await?;
    Ok(json_response(200, published_json(&published).to_string()))
}

/// Default and largest `limit` of a history page.
const HISTORY_PAGE: (usize, usize) = (100, 1_000);

/// `GET /@channels/{channel}/history?since=&limit=`: `{"epoch", "offset", "oldest", "items":
/// [{"offset", "publishedAt", "data"[, "binary"]}], "next"}` — `next` is the `since` of the
/// following page, absent on the last. `data` is the message as text, or base64 with
/// `"binary": true` when it is not UTF-8.
pub async fn history(call: Call<'_>, channel: &str) -> Result<HttpResponse, ApiError> {
    let since = match call.query_param("since") {
        None => 0,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ApiError::bad_request(format!("since {s:?} is not an offset")))?,
    };
    let (default, max) = HISTORY_PAGE;
    let limit = match call.query_param("limit") {
        None => default,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n) && s.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit {s:?} is not a number from 1 to {max}"))
            })?,
    };
    let page = call.broker.history(channel, since, limit).await?;
    if since > page.offset {
        return Err(ApiError::bad_request(format!(
            "since {since} is beyond the channel's newest offset {} (epoch {})",
            page.offset, page.epoch
        )));
    }
    let items: Vec<serde_json::Value> = page
        .items
        .iter()
        .map(|item| {
            let mut v = json!({
                "offset": item.offset,
                "publishedAt": chrono::DateTime::from_timestamp_millis(item.published_ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            });
            match std::str::from_utf8(&item.data) {
                Ok(text) => v["data"] = text.into(),
                Err(_) => {
                    v["data"] = base64::engine::general_purpose::STANDARD
                        .encode(&item.data)
                        .into();
                    v["binary"] = true.into();
                }
            }
            v
        })
        .collect();
    let mut body = json!({
        "epoch": page.epoch,
        "offset": page.offset,
        "oldest": page.oldest,
        "items": items,
    });
    if page.more {
        if let Some(last) = page.items.last() {
            body["next"] = last.offset.into();
        }
    }
    Ok(json_response(200, body.to_string()))
}

/// `DELETE /@channels/{channel}/history`: `{"deleted": N}`.
pub async fn clear_history(call: Call<'_>, channel: &str) -> Result<HttpResponse, ApiError> {
    let n = call.broker.clear_history(channel).await?;
    Ok(json_response(200, json!({ "deleted": n }).to_string()))
}

/// `GET /@channels/{channel}`: `{"subscribers": N}` over every node.
pub async fn count(call: Call<'_>, channel: &str) -> Result<HttpResponse, ApiError> {
    let n = call.broker.subscriber_count(channel).await?;
    Ok(json_response(200, format!(r#"{{"subscribers":{n}}}"#)))
}

/// `GET /@channels/{channel}/presence[?limit=&cursor=]`: `{"items": [{"connectionId",
/// "connectedAt", "principalId"?}], "nextCursor"?}` — the channel's subscribers on every node.
pub async fn presence(call: Call<'_>, channel: &str) -> Result<HttpResponse, ApiError> {
    let (after, limit) = super::connections::page_query(&call)?;
    let page = call.broker.presence(channel, after, limit).await?;
    let items: Vec<serde_json::Value> = page
        .items
        .iter()
        .map(|l| {
            let mut v = json!({
                "connectionId": l.id.to_string(),
                "connectedAt": super::connections::rfc3339(l.info.connected_at_ms),
            });
            if let Some(p) = l.principal() {
                v["principalId"] = p.into();
            }
            v
        })
        .collect();
    let mut body = json!({ "items": items });
    if let Some(next) = page.next {
        body["nextCursor"] = next.into();
    }
    Ok(json_response(200, body.to_string()))
}

/// `GET /@channels/{channel}/presence-stats`: `{"connections", "principals"}` over every node.
pub async fn presence_stats(call: Call<'_>, channel: &str) -> Result<HttpResponse, ApiError> {
    let stats = call.broker.presence_stats(channel).await?;
    Ok(json_response(
        200,
        json!({"connections": stats.connections, "principals": stats.principals}).to_string(),
    ))
}
