//! `POST /@broadcast[?exclude=id]`: one message to every connection of every node.

use actix_web::HttpResponse;

use super::{fan_out_body, json_response, Call};
use crate::error::ApiError;

/// Broadcasts the body; `{"recipients": N}` (this node's).
pub async fn broadcast(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    let exclude = call.query_param("exclude");
    let fan = call
        .broker
        .broadcast(&call.body, exclude.as_deref())
        .await?;
    Ok(json_response(200, fan_out_body(&fan)))
}
