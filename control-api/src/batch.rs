//! `POST /@batch`: many pushes and publishes in one request, one result per item, in order.
//!
//! A body that is not a JSON array (or is over the limits) fails the whole batch with 400/413;
//! a bad item fails only that item, with the status the single call would have answered.

use base64::Engine as _;
use bytes::Bytes;
use gangway_broker::id::ConnectionId;
use gangway_broker::Broker;
use serde_json::{json, Value};

use crate::error::ApiError;

/// Runs a batch body against the broker: channel items in order, then every push — this
/// node's at once, each other node's together in one cluster message.
pub async fn run(broker: &Broker, body: &[u8]) -> Result<Value, ApiError> {
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
    let mut results: Vec<Value> = vec![Value::Null; items.len()];
    let mut pushes = Vec::new();
    let mut push_slots = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match plan(broker, item) {
            Err(e) => results[i] = error_json(&e),
            Ok(Plan::Push(cid, data)) => {
                push_slots.push(i);
                pushes.push((cid, data));
            }
            Ok(Plan::Publish {
                channel,
                data,
                exclude,
            }) => {
                results[i] = match broker.publish(&channel, &data, exclude.as_deref()).await {
                    Ok(fan) => {
                        let mut r = json!({"status": 200, "recipients": fan.recipients});
                        if fan.cluster_failed {
                            r["cluster"] = "unavailable".into();
                        }
                        r
                    }
                    Err(e) => error_json(&ApiError::from(e)),
                }
            }
        }
    }
    for (slot, outcome) in push_slots.into_iter().zip(broker.post_many(pushes).await) {
        results[slot] = match outcome {
            Ok(()) => json!({"status": 200}),
            Err(e) => error_json(&ApiError::from(e)),
        };
    }
    Ok(json!({ "results": results }))
}

fn error_json(e: &ApiError) -> Value {
    json!({"status": e.status.as_u16(), "error": e.error_type, "message": e.message})
}

enum Plan {
    Push(ConnectionId, Bytes),
    Publish {
        channel: String,
        data: Vec<u8>,
        exclude: Option<String>,
    },
}

fn plan(broker: &Broker, item: &Value) -> Result<Plan, ApiError> {
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
            let cid = ConnectionId::parse(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let max = broker.config().limits.max_message_bytes;
            if data.len() > max {
                return Err(ApiError::new(
                    413,
                    "PayloadTooLargeException",
                    format!("message is {} bytes; the limit is {max}", data.len()),
                ));
            }
            Ok(Plan::Push(cid, Bytes::from(data)))
        }
        (None, Some(channel)) => Ok(Plan::Publish {
            channel: channel.to_string(),
            data,
            exclude: text("exclude")?.map(str::to_string),
        }),
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
