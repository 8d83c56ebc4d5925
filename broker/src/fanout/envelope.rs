//! The JSON envelope of channels with `envelope = "json"`, and the recovery notices every
//! recovering client gets (whatever its channel's envelope: a client that asked to recover
//! reads JSON).
//!
//! A message: `{"channel":"c","offset":7,"epoch":"e","data":…}` — `offset` and `epoch` only
//! when the channel keeps history; `data` is the published JSON value as it was sent, a JSON
//! string when the payload is other UTF-8 text, and base64 with `"binary":true` when it is
//! not text. A notice: `{"type":"recovery","channel":"c","recovered":false,"epoch":"e",
//! "offset":12}` (the channel's epoch and newest offset now: where the client stands after it
//! reloads).

use base64::Engine as _;
use serde::de::IgnoredAny;

use super::history::Position;

/// The envelope of one message, as JSON text.
pub fn message(channel: &str, at: Option<Position<'_>>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + channel.len() + 64);
    out.extend_from_slice(b"{\"channel\":");
    push_json_string(&mut out, channel);
    if let Some(p) = at {
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(p.offset.to_string().as_bytes());
        out.extend_from_slice(b",\"epoch\":");
        push_json_string(&mut out, p.epoch);
    }
    out.extend_from_slice(b",\"data\":");
    match std::str::from_utf8(data) {
        Ok(text) if serde_json::from_slice::<IgnoredAny>(data).is_ok() => {
            // Valid JSON embeds as it is (already escaped); trimming keeps the text compact.
            out.extend_from_slice(text.trim().as_bytes())
        }
        Ok(text) => push_json_string(&mut out, text),
        Err(_) => {
            push_json_string(
                &mut out,
                &base64::engine::general_purpose::STANDARD.encode(data),
            );
            out.extend_from_slice(b",\"binary\":true");
        }
    }
    out.push(b'}');
    out
}

/// A join or leave message: `{"type": "join"|"leave", "channel", "connectionId",
/// "principalId"?}`.
pub fn join_leave(
    channel: &str,
    kind: &str,
    connection_id: &str,
    principal: Option<&str>,
) -> Vec<u8> {
    let mut v = serde_json::json!({
        "type": kind,
        "channel": channel,
        "connectionId": connection_id,
    });
    if let Some(p) = principal {
        v["principalId"] = p.into();
    }
    v.to_string().into_bytes()
}

/// The notice a recovering client gets when the gap cannot be filled: `now` is the channel's
/// epoch and newest offset.
pub fn not_recovered(channel: &str, now: Position<'_>) -> Vec<u8> {
    serde_json::json!({
        "type": "recovery",
        "channel": channel,
        "recovered": false,
        "epoch": now.epoch,
        "offset": now.offset,
    })
    .to_string()
    .into_bytes()
}

/// The notice for a `recover` naming a channel the client is not subscribed to (nothing of
/// the channel is told).
pub fn not_subscribed(channel: &str) -> Vec<u8> {
    serde_json::json!({
        "type": "recovery",
        "channel": channel,
        "recovered": false,
        "reason": "not subscribed",
    })
    .to_string()
    .into_bytes()
}

/// The notice for a `recover` naming a channel that keeps no history.
pub fn no_history(channel: &str) -> Vec<u8> {
    serde_json::json!({
        "type": "recovery",
        "channel": channel,
        "recovered": false,
        "reason": "no history",
    })
    .to_string()
    .into_bytes()
}

/// The notice for a recovery the cluster could not answer (Redis unreachable).
pub fn unavailable(channel: &str) -> Vec<u8> {
    serde_json::json!({
        "type": "recovery",
        "channel": channel,
        "recovered": false,
        "reason": "unavailable",
    })
    .to_string()
    .into_bytes()
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).expect("valid JSON")
    }

    #[test]
    fn json_text_and_binary_payloads() {
        let at = Some(Position {
            offset: 7,
            epoch: "e1",
        });
        assert_eq!(
            parse(&message("c", at, br#" {"a":[1,2]} "#)),
            serde_json::json!({"channel":"c","offset":7,"epoch":"e1","data":{"a":[1,2]}})
        );
        assert_eq!(
            parse(&message("c", at, b"hello \"you\"")),
            serde_json::json!({"channel":"c","offset":7,"epoch":"e1","data":"hello \"you\""})
        );
        assert_eq!(
            parse(&message("c", None, &[0xff, 0x00])),
            serde_json::json!({"channel":"c","data":"/wA=","binary":true})
        );
        // Not quite JSON: carried as a string, never spliced in.
        assert_eq!(
            parse(&message("c", None, br#"{"a":1}, "x":2}"#))["data"],
            serde_json::json!(r#"{"a":1}, "x":2}"#)
        );
    }
}
