//! `POST /@batch`: many pushes and publishes in one request, one result per item, in order.
//!
//! A body that is not a JSON array (or is over the limits) fails the whole batch with 400/413;
//! a bad item fails only that item, with the status the single call would have answered.

use base64::Engine as _;
use gangway_broker::Broker;
use serde_json::{json, Value};

use crate::error::ApiError;

/// Runs a batch body against the broker.
pub fn run(broker: &Broker, body: &[u8]) -> Result<Value, ApiError> {
    let items: Vec<Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => return Err(ApiError::bad_request("a batch is a JSON array of items")),
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "batch is not valid JSON: {e}"
            )))
        }
    };
    let max = broker.config().limits.max_batch_items;
    if items.len() > max {
        return Err(ApiError::new(
            413,
            "PayloadTooLargeException",
            format!(
                "a batch holds at most {max} items; this one has {}",
                items.len()
            ),
        ));
    }
    let results: Vec<Value> = items.iter().map(|item| run_item(broker, item)).collect();
    Ok(json!({ "results": results }))
}

fn run_item(broker: &Broker, item: &Value) -> Value {
    match item_result(broker, item) {
        Ok(v) => v,
        Err(e) => json!({"status": e.status.as_u16(), "error": e.error_type, "message": e.message}),
    }
}

fn item_result(broker: &Broker, item: &Value) -> Result<Value, ApiError> {
    let Some(obj) = item.as_object() else {
        return Err(ApiError::bad_request("an item is a JSON object"));
    };
    let data = data_bytes(obj)?;
    let text = |key: &str| -> Result<Option<&str>, ApiError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
        }
    };
    match (text("connectionId")?, text("channel")?) {
        (Some(id), None) => {
            broker.post_to_connection(id, data.into())?;
            Ok(json!({"status": 200}))
        }
        (None, Some(channel)) => {
            let fan = broker.publish(channel, &data, text("exclude")?)?;
            Ok(json!({"status": 200, "recipients": fan.recipients}))
        }
        _ => Err(ApiError::bad_request(
            "an item has exactly one of connectionId and channel",
        )),
    }
}

fn data_bytes(obj: &serde_json::Map<String, Value>) -> Result<Vec<u8>, ApiError> {
    let base64 = match obj.get("base64") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("base64 must be true or false")),
    };
    match obj.get("data") {
        None => Err(ApiError::bad_request("an item needs data")),
        Some(Value::String(s)) if base64 => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| ApiError::bad_request(format!("data is not valid base64: {e}"))),
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(_) if base64 => Err(ApiError::bad_request("base64 data must be a string")),
        Some(other) => Ok(other.to_string().into_bytes()),
    }
}
