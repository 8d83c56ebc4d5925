//! Server-to-client WebSocket data frames, encoded once, and the gateway's own error frames.
//!
//! A frame sent by a server is never masked, so its bytes are the same for every recipient: a
//! fan-out encodes the frame once and hands each recipient a clone of the same [`Bytes`] (a
//! reference count, no copy). The session writes these bytes straight to the socket.

use bytes::{BufMut, Bytes, BytesMut};

use crate::conn::id::request_id;

/// Text frame opcode.
pub const OPCODE_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const OPCODE_BINARY: u8 = 0x2;

/// Encodes one final (FIN) data frame.
pub fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut buf = BytesMut::with_capacity(header_len(len) + len);
    buf.put_u8(0x80 | (opcode & 0x0f));
    if len < 126 {
        buf.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        buf.put_u8(126);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// A text frame when `payload` is UTF-8, a binary frame otherwise.
pub fn text_or_binary(payload: &[u8]) -> Bytes {
    let opcode = if std::str::from_utf8(payload).is_ok() {
        OPCODE_TEXT
    } else {
        OPCODE_BINARY
    };
    encode(opcode, payload)
}

/// A text frame.
pub fn text(payload: &str) -> Bytes {
    encode(OPCODE_TEXT, payload.as_bytes())
}

fn header_len(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= u16::MAX as usize {
        4
    } else {
        10
    }
}

/// A gateway error frame in AWS's shape — `{"message": …, "connectionId": …, "requestId": …}`
/// (`Forbidden`, `Internal server error`, `Too many requests`) — with a fresh request id.
pub fn gateway_error(message: &str, connection_id: &str) -> Bytes {
    gateway_error_for(message, connection_id, &request_id())
}

/// A gateway error frame about the request `request_id` (the id the backend's event carried).
pub fn gateway_error_for(message: &str, connection_id: &str, request_id: &str) -> Bytes {
    text(
        &serde_json::json!({
            "message": message,
            "connectionId": connection_id,
            "requestId": request_id,
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_by_length() {
        assert_eq!(&text("hi")[..], &[0x81, 2, b'h', b'i']);
        let f = encode(OPCODE_BINARY, &[7u8; 126]);
        assert_eq!(&f[..4], &[0x82, 126, 0, 126]);
        assert_eq!(f.len(), 130);
        let f = encode(OPCODE_BINARY, &vec![0u8; 70_000]);
        assert_eq!(&f[..2], &[0x82, 127]);
        assert_eq!(
            u64::from_be_bytes(f[2..10].try_into().expect("8 bytes")),
            70_000
        );
    }

    #[test]
    fn utf8_decides_the_opcode() {
        assert_eq!(text_or_binary("é".as_bytes())[0], 0x81);
        assert_eq!(text_or_binary(&[0xff])[0], 0x82);
    }

    #[test]
    fn frames_parse_back_with_tungstenite() {
        use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
        let bytes = [
            text("hello").to_vec(),
            encode(OPCODE_BINARY, &[0u8; 300]).to_vec(),
        ]
        .concat();
        let mut ws = WebSocket::from_raw_socket(std::io::Cursor::new(bytes), Role::Client, None);
        assert_eq!(
            ws.read().expect("text").into_text().expect("utf8").as_str(),
            "hello"
        );
        assert_eq!(ws.read().expect("binary").len(), 300);
    }
}
