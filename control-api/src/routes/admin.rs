//! `POST /@admin/reload`: what SIGHUP does, for operators who reach the control API rather
//! than the process.

use actix_web::HttpResponse;

use super::{json_response, Call};
use crate::error::ApiError;

/// Reloads through the node's [`crate::reload::Reload`]: 200 with what applied and what needs
/// a restart; 422 with the problems when the new configuration is refused (the running one
/// stays); 404 when the node has nothing to reload from.
pub async fn reload(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    let Some(reload) = call.reload else {
        return Err(ApiError::new(
            404,
            "NotFoundException",
            "this node has no configuration to reload",
        ));
    };
    match reload.reload().await {
        Ok(outcome) => Ok(json_response(
            200,
            serde_json::json!({
                "applied": outcome.applied,
                "needRestart": outcome.need_restart,
            })
            .to_string(),
        )),
        Err(problems) => Err(ApiError::new(
            422,
            "UnprocessableEntityException",
            format!("the new configuration was refused; the running one stays: {problems}"),
        )),
    }
}
