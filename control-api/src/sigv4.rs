//! AWS Signature Version 4 verification, for requests the AWS SDKs and CLI sign with
//! `[[control.aws_credentials]]` (service `execute-api`, any region).
//!
//! The canonical request is rebuilt as the SDKs build it: for non-S3 services the already
//! percent-encoded path is encoded once more (`/prod/%40connections/abc%253D`), query pairs are
//! decoded, re-encoded and sorted, and signed headers are lower-cased with their values trimmed.
//! The request time (`X-Amz-Date`) must be within five minutes of the server's clock.

use chrono::{DateTime, NaiveDateTime, Utc};
use gangway_broker::config::AwsCredential;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Largest accepted difference between the request time and the server clock, seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The Authorization header or X-Amz-Date cannot be parsed.
    #[error("malformed SigV4 request: {0}")]
    Malformed(&'static str),
    /// The access key id is not configured.
    #[error("unknown access key id")]
    UnknownKey,
    /// The credential scope names another service.
    #[error("credential scope must be for service execute-api")]
    WrongService,
    /// The request time is too far from the server's clock.
    #[error("request time is more than 5 minutes from the server's clock")]
    ClockSkew,
    /// The signature does not match.
    #[error("signature does not match")]
    BadSignature,
}

/// The parts of an HTTP request that SigV4 covers.
pub struct SignedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Raw request path, as received (still percent-encoded).
    pub raw_path: &'a str,
    /// Raw query string, without `?`.
    pub raw_query: &'a str,
    /// Every header value with this lower-case name, in order.
    pub header: &'a dyn Fn(&str) -> Vec<String>,
    /// The request body.
    pub body: &'a [u8],
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigV4Error> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or(SigV4Error::Malformed("not AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or(SigV4Error::Malformed("no Credential"))?;
    let mut scope = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(SigV4Error::Malformed("bad credential scope"));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed_headers.ok_or(SigV4Error::Malformed("no SignedHeaders"))?,
        signature: signature.ok_or(SigV4Error::Malformed("no Signature"))?,
    })
}

/// Verifies `authorization` (the header value) for `req` against `credentials`.
pub fn verify(
    authorization: &str,
    req: &SignedRequest<'_>,
    credentials: &[AwsCredential],
    now: DateTime<Utc>,
) -> Result<(), SigV4Error> {
    let auth = parse_authorization(authorization)?;
    if auth.service != "execute-api" {
        return Err(SigV4Error::WrongService);
    }
    let secret = credentials
        .iter()
        .find(|c| c.access_key_id == auth.access_key_id)
        .map(|c| c.secret_access_key.as_str())
        .ok_or(SigV4Error::UnknownKey)?;
    let amz_date = (req.header)("x-amz-date")
        .into_iter()
        .next()
        .ok_or(SigV4Error::Malformed("no X-Amz-Date header"))?;
    let when = NaiveDateTime::parse_from_str(&amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| SigV4Error::Malformed("X-Amz-Date is not YYYYMMDDTHHMMSSZ"))?
        .and_utc();
    if (now - when).num_seconds().abs() > MAX_CLOCK_SKEW_SECS {
        return Err(SigV4Error::ClockSkew);
    }
    if !amz_date.starts_with(auth.date) {
        return Err(SigV4Error::Malformed(
            "credential date differs from X-Amz-Date",
        ));
    }

    let mut canonical_headers = String::new();
    for name in auth.signed_headers.split(';') {
        let values = (req.header)(name);
        if values.is_empty() {
            return Err(SigV4Error::Malformed("a signed header is missing"));
        }
        let joined: Vec<String> = values
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&joined.join(","));
        canonical_headers.push('\n');
    }
    let payload_hash = match (req.header)("x-amz-content-sha256").into_iter().next() {
        Some(h) => h,
        None => hex::encode(Sha256::digest(req.body)),
    };
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(req.raw_path, false),
        canonical_query(req.raw_query),
        canonical_headers,
        auth.signed_headers,
        payload_hash
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let Ok(expected) = hex::decode(auth.signature) else {
        return Err(SigV4Error::BadSignature);
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&k_signing) else {
        return Err(SigV4Error::BadSignature);
    };
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&expected)
        .map_err(|_| SigV4Error::BadSignature)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// AWS URI encoding: unreserved characters stay, everything else is `%XX` (upper-case);
/// `/` stays unless `encode_slash`.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn canonical_query(raw: &str) -> String {
    if raw.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&decode_component(k), true),
                uri_encode(&decode_component(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn decode_component(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Produced by botocore's SigV4Auth for service execute-api, region us-east-1.
    const BOTOCORE_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0b2ad596594088d7ec5fcefc6e8d2b1cff318af7a96b11f45dd27ae21d5c5958";

    fn creds() -> Vec<AwsCredential> {
        vec![AwsCredential {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }]
    }

    fn headers(name: &str) -> Vec<String> {
        match name {
            "host" => vec!["127.0.0.1:9090".into()],
            "x-amz-date" => vec!["20261126T073211Z".into()],
            _ => vec![],
        }
    }

    fn request<'a>(body: &'a [u8], header: &'a dyn Fn(&str) -> Vec<String>) -> SignedRequest<'a> {
        SignedRequest {
            method: "POST",
            raw_path: "/prod/@connections/L0SM9cOFvHcCIhw%3D%2B%2Fa%20b",
            raw_query: "x=1&a=b%20c",
            header,
            body,
        }
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, h, m, s)
            .single()
            .expect("time")
    }

    #[test]
    fn accepts_a_botocore_signature() {
        let body = br#"{"hello":"world"}"#;
        verify(
            BOTOCORE_AUTH,
            &request(body, &headers),
            &creds(),
            at(7, 32, 11),
        )
        .expect("valid");
    }

    #[test]
    fn rejects_tampering_unknown_keys_and_old_requests() {
        let body = br#"{"hello":"world"}"#;
        assert_eq!(
            verify(
                BOTOCORE_AUTH,
                &request(b"{}", &headers),
                &creds(),
                at(7, 32, 11)
            ),
            Err(SigV4Error::BadSignature)
        );
        let mut other = creds();
        other[0].secret_access_key = "wrong".into();
        assert_eq!(
            verify(
                BOTOCORE_AUTH,
                &request(body, &headers),
                &other,
                at(7, 32, 11)
            ),
            Err(SigV4Error::BadSignature)
        );
        other[0].access_key_id = "OTHER".into();
        assert_eq!(
            verify(
                BOTOCORE_AUTH,
                &request(body, &headers),
                &other,
                at(7, 32, 11)
            ),
            Err(SigV4Error::UnknownKey)
        );
        assert_eq!(
            verify(
                BOTOCORE_AUTH,
                &request(body, &headers),
                &creds(),
                at(7, 40, 0)
            ),
            Err(SigV4Error::ClockSkew)
        );
        assert!(matches!(
            verify(
                "AWS4-HMAC-SHA256 nonsense",
                &request(body, &headers),
                &creds(),
                at(7, 32, 11)
            ),
            Err(SigV4Error::Malformed(_))
        ));
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(
            uri_encode("/prod/@connections/abc%3D", false),
            "/prod/%40connections/abc%253D"
        );
        assert_eq!(canonical_query("x=1&a=b%20c&a=a"), "a=a&a=b%20c&x=1");
        assert_eq!(canonical_query(""), "");
    }
}
