//! `gangway --probe URL`: one HTTP GET for a container `HEALTHCHECK`, so the runtime image
//! needs no curl or shell. Plain HTTP/1.0 over a `TcpStream`, written here rather than pulling
//! an HTTP client into the binary: the probe talks to this node's own control listener
//! (`/healthz` or `/readyz`), needs the status line only, and must work without TLS.

use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Longest status line read: `HTTP/1.1 503 Service Unavailable` and then some.
const MAX_HEAD: usize = 1024;

/// What `--probe` accepts: `http://host:port/path` (no TLS, no credentials in the URL).
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// `host:port` to connect to.
    pub authority: String,
    /// The path and query, starting with `/`.
    pub path: String,
}

/// Parses `url`; refuses anything but `http://host:port/path`.
pub fn target(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs can be probed")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || !authority.contains(':') {
        anyhow::bail!("the URL needs host:port and no user info");
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        anyhow::bail!("the path has spaces or control characters");
    }
    Ok(Target {
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

/// GETs `url` within `limit`; the answer's status code.
pub async fn get(url: &str, limit: Duration) -> anyhow::Result<u16> {
    let t = target(url)?;
    tokio::time::timeout(limit, exchange(&t))
        .await
        .context("no answer in time")?
}

async fn exchange(t: &Target) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(&t.authority)
        .await
        .with_context(|| format!("cannot connect to {}", t.authority))?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: gangway-probe\r\nConnection: close\r\n\r\n",
        t.path, t.authority
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    status(&head).context("not an HTTP answer")
}

/// The status code of an HTTP/1.x status line.
fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_with_a_port_is_probed() {
        assert_eq!(
            target("http://127.0.0.1:9090/readyz").expect("valid"),
            Target {
                authority: "127.0.0.1:9090".into(),
                path: "/readyz".into()
            }
        );
        for bad in [
            "https://127.0.0.1:9090/healthz",
            "http://127.0.0.1/healthz",
            "http://u:p@127.0.0.1:9090/",
            "http://127.0.0.1:9090/a b",
            "ftp://x",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status(b""), None);
    }
}
