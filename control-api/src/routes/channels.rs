//! Channels: subscribe and unsubscribe a connection, publish to a channel, count its
//! subscribers (on every node).

use actix_web::HttpResponse;

use super::{fan_out_body, json_response, Call};
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

/// `POST /@channels/{channel}[?exclude=id]`: `{"recipients": N}` (this node's).
pub async fn publish(call: Call<'_>, channel: &str) -> Result<HttpResponse, ApiError> {
    let exclude = call.query_param("exclude");
    let fan = call
        .broker
        .publish(channel, &call.body, exclude.as_deref())
        .await?;
    Ok(json_response(200, fan_out_body(&fan)))
}

/// `GET /@channels/{channel}`: `{"subscribers": N}` over every node.
pub async fn count(call: Call<'_>, channel: &str) -> Result<HttpResponse, ApiError> {
    let n = call.broker.subscriber_count(channel).await?;
    Ok(json_response(200, format!(r#"{{"subscribers":{n}}}"#)))
}
