//! `POST /@batch`: many pushes and publishes in one request, one result per item, in order.
//!
//! A body that is not a JSON array (or is over the limits) fails the whole batch with 400/413;
//! a bad item fails only that item, with the status the single call would have answered.
//!
//! Parsing is bounded: the array is read element by element as raw JSON text borrowed from the
//! body (no tree is built), and reading stops with 413 at the first element past
//! `max_batch_items`. Each item's fields are then read from its text; unknown fields are
//! skipped without being stored, and `data` is copied once, into the bytes that are sent. So a
//! batch costs its body plus its payloads, whatever shape an attacker gives it (BENCHMARKS.md
//! records the measured peak).

use std::cell::Cell;
use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use gangway_broker::Broker;
use gangway_broker::ConnectionId;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::error::ApiError;

/// One parsed batch item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// PostToConnection.
    Push {
        /// The connection.
        connection: ConnectionId,
        /// The bytes to send.
        data: Bytes,
    },
    /// Publish to a channel.
    Publish {
        /// The channel, as given (the broker validates it).
        channel: String,
        /// The bytes to send.
        data: Bytes,
        /// A connection not to deliver to, as given.
        exclude: Option<String>,
    },
}

/// Parses a batch body: the whole batch fails (400/413) when it is not a JSON array or has
/// more than `max_items` elements; otherwise each element becomes an item or that item's error.
pub fn parse(
    body: &[u8],
    max_items: usize,
    max_message_bytes: usize,
) -> Result<Vec<Result<Item, ApiError>>, ApiError> {
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let elements = ElementsSeed {
        max: max_items,
        too_many: &too_many,
    }
    .deserialize(&mut de)
    .and_then(|elements| de.end().map(|()| elements));
    let elements = match elements {
        Ok(e) => e,
        Err(_) if too_many.get() => {
            return Err(ApiError::new(
                413,
                "PayloadTooLargeException",
                format!("a batch holds at most {max_items} items"),
            ))
        }
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "a batch is a JSON array of items: {e}"
            )))
        }
    };
    Ok(elements
        .into_iter()
        .map(|raw| item(raw, max_message_bytes))
        .collect())
}

/// Runs a batch body against the broker: channel items in order, then every push — this
/// node's at once, each other node's together in one cluster message.
pub async fn run(broker: &Broker, body: &[u8]) -> Result<Value, ApiError> {
    let limits = &broker.config().limits;
    let items = parse(body, limits.max_batch_items, limits.max_message_bytes)?;
    let mut results: Vec<Value> = vec![Value::Null; items.len()];
    let mut pushes = Vec::new();
    let mut push_slots = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Err(e) => results[i] = error_json(&e),
            Ok(Item::Push { connection, data }) => {
                push_slots.push(i);
                pushes.push((connection, data));
            }
            Ok(Item::Publish {
                channel,
                data,
                exclude,
            }) => {
                results[i] = match broker.publish(&channel, &data, exclude.as_deref()).await {
                    Ok(published) => {
                        let mut r = super::published_json(&published);
                        r["status"] = 200.into();
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

/// Reads the top-level array as borrowed raw elements, stopping past `max`.
struct ElementsSeed<'c> {
    max: usize,
    too_many: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for ElementsSeed<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ElementsSeed<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max).min(1024));
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            if out.len() == self.max {
                self.too_many.set(true);
                return Err(de::Error::custom("too many items"));
            }
            out.push(element);
        }
        Ok(out)
    }
}

/// An item's fields, as raw JSON text; unknown fields are skipped without being stored.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "connectionId", borrow, default)]
    connection_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    channel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    exclude: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    base64: Option<&'a RawValue>,
}

fn item(raw: &RawValue, max_message_bytes: usize) -> Result<Item, ApiError> {
    let fields: Fields<'_> = serde_json::from_str(raw.get()).map_err(|e| {
        ApiError::bad_request(if raw.get().starts_with('{') {
            format!("malformed item: {e}")
        } else {
            "an item is a JSON object".to_string()
        })
    })?;
    let data = data_bytes(&fields, max_message_bytes)?;
    match (
        text(fields.connection_id, "connectionId")?,
        text(fields.channel, "channel")?,
    ) {
        (Some(id), None) => {
            let connection =
                ConnectionId::parse(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(Item::Push { connection, data })
        }
        (None, Some(channel)) => Ok(Item::Publish {
            channel,
            data,
            exclude: text(fields.exclude, "exclude")?,
        }),
        _ => Err(ApiError::bad_request(
            "an item has exactly one of connectionId and channel",
        )),
    }
}

/// A string field (absent or null: `None`).
fn text(raw: Option<&RawValue>, key: &str) -> Result<Option<String>, ApiError> {
    match raw {
        None => Ok(None),
        Some(r) => serde_json::from_str::<String>(r.get())
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{key} must be a string"))),
    }
}

/// `data`: a string's bytes (decoded from base64 with `"base64": true`), or any other JSON
/// value's text as written; 413 over `max` bytes (checked before a non-string is copied).
fn data_bytes(fields: &Fields<'_>, max: usize) -> Result<Bytes, ApiError> {
    let too_large = |size: usize| {
        ApiError::new(
            413,
            "PayloadTooLargeException",
            format!("message is {size} bytes; the limit is {max}"),
        )
    };
    let base64 = match fields.base64.map(RawValue::get) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::bad_request("base64 must be true or false")),
    };
    let Some(data) = fields.data else {
        return Err(ApiError::bad_request("an item needs data"));
    };
    let text = data.get();
    if !text.starts_with('"') {
        return if base64 {
            Err(ApiError::bad_request("base64 data must be a string"))
        } else if text.len() > max {
            Err(too_large(text.len()))
        } else {
            Ok(Bytes::copy_from_slice(text.as_bytes()))
        };
    }
    let s: String = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("data is not a valid string: {e}")))?;
    let data = if base64 {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| ApiError::bad_request(format!("data is not valid base64: {e}")))?
    } else {
        s.into_bytes()
    };
    if data.len() > max {
        return Err(too_large(data.len()));
    }
    Ok(Bytes::from(data))
}

/// `POST /@batch`: one result per item (see [`run`]).
pub async fn post(call: super::Call<'_>) -> Result<actix_web::HttpResponse, ApiError> {
    let results = run(call.broker, &call.body).await?;
    Ok(super::json_response(200, results.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> String {
        ConnectionId::generate(gangway_broker::NodeTag::of("t"))
            .expect("rng")
            .to_string()
    }

    #[test]
    fn items_and_their_errors() {
        let a = id();
        let body = format!(
            r#"[{{"connectionId":"{a}","data":"one"}},
                {{"channel":"c","data":{{"k": [1, 2]}},"exclude":"{a}","other":{{"deep":[1]}}}},
                {{"connectionId":"{a}","data":"/wA=","base64":true}},
                {{"connectionId":"{a}","data":1,"base64":true}},
                {{"connectionId":"{a}","data":"x","base64":"yes"}},
                {{"connectionId":"{a}","channel":"c","data":"both"}},
                {{"connectionId":"{a}","connectionId":"{a}","data":"dup"}},
                {{"connectionId":"{a}","data":null}},
                {{"connectionId":"{a}","data":"{}"}},
                7]"#,
            "x".repeat(21)
        );
        let items = parse(body.as_bytes(), 100, 20).expect("batch");
        let statuses: Vec<u16> = items
            .iter()
            .map(|r| r.as_ref().map_or_else(|e| e.status.as_u16(), |_| 200))
            .collect();
        assert_eq!(
            statuses,
            vec![200, 200, 200, 400, 400, 400, 400, 400, 413, 400]
        );
        assert_eq!(
            items[1].as_ref().expect("publish"),
            &Item::Publish {
                channel: "c".into(),
                data: Bytes::from_static(br#"{"k": [1, 2]}"#),
                exclude: Some(a.clone()),
            }
        );
        assert!(matches!(&items[2], Ok(Item::Push { data, .. }) if data[..] == [0xff, 0]));
    }

    #[test]
    fn whole_batch_failures() {
        for body in ["[{", r#"{"items":[]}"#, "", "[1] x", "[1,]"] {
            let e = parse(body.as_bytes(), 10, 10).expect_err(body);
            assert_eq!(e.status.as_u16(), 400, "{body}");
        }
        let e = parse(b"[1,2,3]", 2, 10).expect_err("too many");
        assert_eq!(e.status.as_u16(), 413);
        assert_eq!(parse(b"[1,2]", 2, 10).expect("fits").len(), 2);
    }

    #[test]
    fn parsing_stops_at_the_item_limit() {
        // A million elements are never collected: reading stops at the eleventh.
        let mut body = String::from("[");
        body.push_str(&"{\"\":0},".repeat(1_000_000));
        body.push_str("{}]");
        assert_eq!(
            parse(body.as_bytes(), 10, 10)
                .expect_err("too many")
                .status
                .as_u16(),
            413
        );
    }
}
