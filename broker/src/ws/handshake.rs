//! The HTTP side of the WebSocket upgrade, done by hand (httparse) so that the `$connect`
//! integration can run — asynchronously — before the 101 response is written.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Largest upgrade request accepted (request line plus headers).
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Most headers accepted in an upgrade request.
const MAX_HEADERS: usize = 64;

/// A parsed, valid upgrade request.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    /// Request path without the query.
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Headers in the client's case and order.
    pub headers: Vec<(String, String)>,
    /// `Sec-WebSocket-Key`.
    pub key: String,
}

impl UpgradeRequest {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why an upgrade request was refused; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed or closed.
    #[error("i/o error during handshake: {0}")]
    Io(#[from] std::io::Error),
    /// The client did not send a complete request in time.
    #[error("handshake timed out")]
    Timeout,
    /// The request is over [`MAX_REQUEST_BYTES`] or has too many headers.
    #[error("request header too large")]
    TooLarge,
    /// The request is not HTTP or not a valid WebSocket upgrade.
    #[error("bad request: {0}")]
    Malformed(String),
    /// A path other than `/` or `/{stage}`.
    #[error("no WebSocket endpoint at {0}")]
    NotFound(String),
    /// Not a GET.
    #[error("method {0} not allowed")]
    MethodNotAllowed(String),
    /// A WebSocket version other than 13.
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
}

impl HandshakeError {
    /// HTTP status for the refusal, or `None` when no response can be sent.
    pub fn status(&self) -> Option<u16> {
        match self {
            HandshakeError::Io(_) => None,
            HandshakeError::Timeout => Some(408),
            HandshakeError::TooLarge => Some(431),
            HandshakeError::Malformed(_) => Some(400),
            HandshakeError::NotFound(_) => Some(404),
            HandshakeError::MethodNotAllowed(_) => Some(405),
            HandshakeError::UnsupportedVersion => Some(426),
        }
    }

    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Io(_) => "io",
            HandshakeError::Timeout => "timeout",
            HandshakeError::TooLarge => "too_large",
            HandshakeError::Malformed(_) => "malformed",
            HandshakeError::NotFound(_) => "not_found",
            HandshakeError::MethodNotAllowed(_) => "method",
            HandshakeError::UnsupportedVersion => "version",
        }
    }
}

/// Reads and validates an upgrade request, within `timeout`, after `initial` bytes already
/// read from the stream (what followed a PROXY header; usually none). Returns it with any bytes
/// read past its end.
pub async fn read_request_after<S: AsyncRead + Unpin>(
    stream: &mut S,
    stage: &str,
    timeout: Duration,
    initial: Vec<u8>,
) -> Result<(UpgradeRequest, Vec<u8>), HandshakeError> {
    tokio::time::timeout(timeout, read_request_from(stream, stage, initial))
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

async fn read_request_from<S: AsyncRead + Unpin>(
    stream: &mut S,
    stage: &str,
    mut buf: Vec<u8>,
) -> Result<(UpgradeRequest, Vec<u8>), HandshakeError> {
    if !buf.is_empty() {
        if let Some((request, used)) = parse_request(&buf, stage)? {
            let rest = buf.split_off(used);
            return Ok((request, rest));
        }
    }
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((request, used)) = parse_request(&buf, stage)? {
            let rest = buf.split_off(used);
            return Ok((request, rest));
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(HandshakeError::TooLarge);
        }
    }
}

/// Parses `buf`; `Ok(None)` means "incomplete, read more".
pub fn parse_request(
    buf: &[u8],
    stage: &str,
) -> Result<Option<(UpgradeRequest, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge),
        Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
    };
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let trimmed = path.trim_end_matches('/');
    if !(trimmed.is_empty() || trimmed == format!("/{stage}")) {
        return Err(HandshakeError::NotFound(path.chars().take(200).collect()));
    }
    if method != "GET" {
        return Err(HandshakeError::MethodNotAllowed(
            method.chars().take(20).collect(),
        ));
    }
    let mut pairs = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HandshakeError::Malformed(format!("header {} is not UTF-8", h.name)))?;
        pairs.push((h.name.to_string(), value.trim().to_string()));
    }
    let request = UpgradeRequest {
        path: path.to_string(),
        query: form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        headers: pairs,
        key: String::new(),
    };
    let has_token = |name: &str, token: &str| {
        request.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case(name)
                && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    if !has_token("upgrade", "websocket") {
        return Err(HandshakeError::Malformed(
            "expected a WebSocket upgrade (Upgrade: websocket)".into(),
        ));
    }
    if !has_token("connection", "upgrade") {
        return Err(HandshakeError::Malformed(
            "expected Connection: Upgrade".into(),
        ));
    }
    if request.header("sec-websocket-version") != Some("13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = match request.header("sec-websocket-key") {
        Some(k) if is_valid_key(k) => k.to_string(),
        _ => {
            return Err(HandshakeError::Malformed(
                "missing or invalid Sec-WebSocket-Key".into(),
            ))
        }
    };
    Ok(Some((UpgradeRequest { key, ..request }, used)))
}

fn is_valid_key(key: &str) -> bool {
    use base64::Engine as _;
    matches!(base64::engine::general_purpose::STANDARD.decode(key), Ok(raw) if raw.len() == 16)
}

/// Writes the 101 response that completes the upgrade.
pub async fn accept<S: AsyncWrite + Unpin>(
    stream: &mut S,
    key: &str,
    subprotocol: Option<&str>,
) -> std::io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(p) = subprotocol {
        response.push_str("Sec-WebSocket-Protocol: ");
        response.push_str(p);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}

/// Writes a refusal with `status` and a small JSON body, then shuts the write side.
pub async fn reject<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    message: &str,
) -> std::io::Result<()> {
    let body = serde_json::json!({ "message": message }).to_string();
    let extra = if status == 426 {
        "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n{body}",
        reason_phrase(status),
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Standard reason phrase for the statuses Gangway sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        s if (200..300).contains(&s) => "OK",
        s if (400..500).contains(&s) => "Client Error",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /prod?token=a%20b&x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nUser-Agent: ua\r\n\r\nEXTRA";

    #[test]
    fn parses_a_valid_upgrade() {
        let (req, used) = parse_request(GOOD.as_bytes(), "prod")
            .expect("ok")
            .expect("complete");
        assert_eq!(&GOOD[used..], "EXTRA");
        assert_eq!(req.path, "/prod");
        assert_eq!(req.query[0], ("token".to_string(), "a b".to_string()));
        assert_eq!(req.header("user-agent"), Some("ua"));
        assert_eq!(req.key, "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn partial_needs_more() {
        assert!(parse_request(b"GET / HTTP/1.1\r\nHost:", "prod")
            .expect("ok")
            .is_none());
    }

    #[test]
    fn refusals_have_statuses() {
        let cases = [
            (GOOD.replace("/prod", "/other"), 404),
            (GOOD.replace("GET", "POST"), 405),
            (GOOD.replace("Version: 13", "Version: 8"), 426),
            (GOOD.replace("Upgrade: websocket", "Upgrade: h2c"), 400),
            (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"), 400),
            ("NOT HTTP\r\n\r\n".to_string(), 400),
        ];
        for (req, status) in cases {
            let err = parse_request(req.as_bytes(), "prod").expect_err(&req);
            assert_eq!(err.status(), Some(status), "{req}");
        }
        assert!(parse_request(GOOD.replace("/prod", "/").as_bytes(), "prod").is_ok());
    }
}
