//! AWS Signature Version 4 verification, for requests the AWS SDKs and CLI sign with
//! `[[control.aws_credentials]]` (service `execute-api`, any region).
//!
//! Verification runs in two steps, so a request that merely *looks* signed costs nothing:
//! 1. [`precheck`], on the headers alone, before a byte of the body is read: the
//!    `Authorization` header parses, the scope is `<YYYYMMDD>/<region>/execute-api/aws4_request`,
//!    `host` and `x-amz-date` are among the signed headers (AWS requires both), the access key
//!    is configured, `X-Amz-Date` is within five minutes of the server's clock and on the
//!    scope's date.
//! 2. [`Precheck::verify`], once the body has arrived: the payload hash is always computed from
//!    the body received — an `x-amz-content-sha256` header, when sent (the JS SDK v3 sends it),
//!    must equal it, and `UNSIGNED-PAYLOAD` is refused — then the canonical request is rebuilt as
//!    the SDKs build it (for non-S3 services the already percent-encoded path is encoded once
//!    more, `/prod/%40connections/abc%253D`; query pairs are decoded, re-encoded and sorted;
//!    signed headers are lower-cased with their values trimmed) and the signature compared in
//!    constant time.
//!
//! An unknown access key and a wrong signature are the same error to the caller
//! ([`SigV4Error::client_message`]), so key ids cannot be enumerated.

use crate::config::AwsCredential;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Largest accepted difference between the request time and the server clock, seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The Authorization header, its scope or X-Amz-Date cannot be parsed, or a header SigV4
    /// needs is not signed.
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
    /// `x-amz-content-sha256` is not the hash of the body received, or is `UNSIGNED-PAYLOAD`.
    #[error("x-amz-content-sha256 does not match the body")]
    PayloadHash,
    /// The signature does not match.
    #[error("signature does not match")]
    BadSignature,
}

impl SigV4Error {
    /// What the caller is told. Unknown keys and wrong signatures read the same, so a caller
    /// cannot tell a configured key id from an unconfigured one.
    pub fn client_message(&self) -> String {
        match self {
            SigV4Error::UnknownKey | SigV4Error::BadSignature => {
                "The request signature does not match any configured credential".to_string()
            }
            other => other.to_string(),
        }
    }
}

/// The parts of an HTTP request that SigV4 covers, apart from the body.
pub struct SignedHead<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Raw request path, as received (still percent-encoded).
    pub raw_path: &'a str,
    /// Raw query string, without `?`.
    pub raw_query: &'a str,
    /// Every header value with this lower-case name, in order.
    pub header: &'a dyn Fn(&str) -> Vec<String>,
}

/// The parsed `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: Vec<u8>,
}

impl Authorization {
    /// Parses the header value. Requires a well-formed scope (an 8-digit date that is a real
    /// day, a non-empty region, `aws4_request`), lower-case signed headers that include `host`
    /// and `x-amz-date`, and a 64-digit hex signature.
    pub fn parse(value: &str) -> Result<Authorization, SigV4Error> {
        let rest = value
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or(SigV4Error::Malformed("not AWS4-HMAC-SHA256"))?;
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (name, v) = part
                .trim()
                .split_once('=')
                .ok_or(SigV4Error::Malformed("Authorization parts are name=value"))?;
            let slot = match name {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => return Err(SigV4Error::Malformed("unknown Authorization part")),
            };
            if slot.replace(v).is_some() {
                return Err(SigV4Error::Malformed("repeated Authorization part"));
            }
        }
        let credential = credential.ok_or(SigV4Error::Malformed("no Credential"))?;
        let mut scope = credential.split('/');
        let (Some(key), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
        ) else {
            return Err(SigV4Error::Malformed("bad credential scope"));
        };
        if key.is_empty() || region.is_empty() {
            return Err(SigV4Error::Malformed("bad credential scope"));
        }
        if date.len() != 8
            || !date.bytes().all(|b| b.is_ascii_digit())
            || NaiveDate::parse_from_str(date, "%Y%m%d").is_err()
        {
            return Err(SigV4Error::Malformed(
                "credential scope date is not YYYYMMDD",
            ));
        }
        if service != "execute-api" {
            return Err(SigV4Error::WrongService);
        }
        let signed_headers: Vec<String> = signed_headers
            .ok_or(SigV4Error::Malformed("no SignedHeaders"))?
            .split(';')
            .map(str::to_string)
            .collect();
        if signed_headers
            .iter()
            .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err(SigV4Error::Malformed(
                "SignedHeaders are lower-case names separated by ';'",
            ));
        }
        for required in ["host", "x-amz-date"] {
            if !signed_headers.iter().any(|h| h == required) {
                return Err(SigV4Error::Malformed(
                    "SignedHeaders must include host and x-amz-date",
                ));
            }
        }
        let signature = signature.ok_or(SigV4Error::Malformed("no Signature"))?;
        let signature = match hex::decode(signature) {
            Ok(s) if s.len() == 32 => s,
            _ => return Err(SigV4Error::Malformed("Signature is not 64 hex digits")),
        };
        Ok(Authorization {
            access_key_id: key.to_string(),
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            signed_headers,
            signature,
        })
    }
}

/// A request whose headers passed [`precheck`]: its body may now be read and verified.
#[derive(Debug)]
pub struct Precheck {
    auth: Authorization,
    amz_date: String,
    secret: String,
}

impl Precheck {
    /// The access key id the request claims (proven only once [`verify`] accepts the body).
    pub fn access_key_id(&self) -> &str {
        &self.auth.access_key_id
    }
}

/// Checks everything that does not need the body. See the module documentation.
pub fn precheck(
    authorization: &str,
    head: &SignedHead<'_>,
    credentials: &[AwsCredential],
    now: DateTime<Utc>,
) -> Result<Precheck, SigV4Error> {
    let auth = Authorization::parse(authorization)?;
    let amz_date = match (head.header)("x-amz-date").as_slice() {
        [one] => one.clone(),
        [] => return Err(SigV4Error::Malformed("no X-Amz-Date header")),
        _ => return Err(SigV4Error::Malformed("more than one X-Amz-Date header")),
    };
    let when = NaiveDateTime::parse_from_str(&amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| SigV4Error::Malformed("X-Amz-Date is not YYYYMMDDTHHMMSSZ"))?
        .and_utc();
    if amz_date.get(..8) != Some(auth.date.as_str()) {
        return Err(SigV4Error::Malformed(
            "credential scope date differs from X-Amz-Date",
        ));
    }
    if (now - when).num_seconds().abs() > MAX_CLOCK_SKEW_SECS {
        return Err(SigV4Error::ClockSkew);
    }
    let secret = credentials
        .iter()
        .find(|c| constant_time_eq(c.access_key_id.as_bytes(), auth.access_key_id.as_bytes()))
        .map(|c| c.secret_access_key.clone())
        .ok_or(SigV4Error::UnknownKey)?;
    for name in &auth.signed_headers {
        if (head.header)(name).is_empty() {
            return Err(SigV4Error::Malformed("a signed header is missing"));
        }
    }
    Ok(Precheck {
        auth,
        amz_date,
        secret,
    })
}

impl Precheck {
    /// Verifies the signature over the request with `body`, the body as received.
    pub fn verify(&self, head: &SignedHead<'_>, body: &[u8]) -> Result<(), SigV4Error> {
        let payload_hash = hex::encode(Sha256::digest(body));
        match (head.header)("x-amz-content-sha256").as_slice() {
            [] => {}
            [sent] if sent.eq_ignore_ascii_case(&payload_hash) => {}
            _ => return Err(SigV4Error::PayloadHash),
        }
        let canonical = canonical_request(head, &self.auth.signed_headers, &payload_hash);
        let scope = format!(
            "{}/{}/{}/aws4_request",
            self.auth.date, self.auth.region, self.auth.service
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            self.amz_date,
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let k_signing = signing_key(
            &self.secret,
            &self.auth.date,
            &self.auth.region,
            &self.auth.service,
        );
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&k_signing) else {
            return Err(SigV4Error::BadSignature);
        };
        mac.update(string_to_sign.as_bytes());
        mac.verify_slice(&self.auth.signature)
            .map_err(|_| SigV4Error::BadSignature)
    }
}

/// Signs a request this node sends itself (a peer check): `host` and `x-amz-date` are signed,
/// the region is `us-east-1`, the service `execute-api`. `host` is the exact `Host` header the
/// request carries (`host:port`). Returns the `Authorization` and `X-Amz-Date` values.
pub fn sign(
    credential: &AwsCredential,
    method: &str,
    host: &str,
    raw_path: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> (String, String) {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = amz_date.get(..8).unwrap_or_default().to_string();
    let (region, service) = ("us-east-1", "execute-api");
    let lookup = |name: &str| match name {
        "host" => vec![host.to_string()],
        "x-amz-date" => vec![amz_date.clone()],
        _ => Vec::new(),
    };
    let head = SignedHead {
        method,
        raw_path,
        raw_query: "",
        header: &lookup,
    };
    let signed = ["host".to_string(), "x-amz-date".to_string()];
    let payload_hash = hex::encode(Sha256::digest(body));
    let canonical = canonical_request(&head, &signed, &payload_hash);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(&credential.secret_access_key, &date, region, service);
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host;x-amz-date, Signature={signature}",
        credential.access_key_id
    );
    (authorization, amz_date)
}

/// The key a secret derives for one day, region and service.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The canonical request: method, path, query, signed headers, and the body's hash.
pub fn canonical_request(
    head: &SignedHead<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let joined: Vec<String> = (head.header)(name)
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&joined.join(","));
        canonical_headers.push('\n');
    }
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        head.method,
        uri_encode(head.raw_path, false),
        canonical_query(head.raw_query),
        canonical_headers,
        signed_headers.join(";"),
        payload_hash
    )
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

/// Compares without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// AWS URI encoding: unreserved characters stay, everything else is `%XX` (upper-case);
/// `/` stays unless `encode_slash`.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
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
    const BODY: &[u8] = br#"{"hello":"world"}"#;

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

    fn head(header: &dyn Fn(&str) -> Vec<String>) -> SignedHead<'_> {
        SignedHead {
            method: "POST",
            raw_path: "/prod/@connections/L0SM9cOFvHcCIhw%3D%2B%2Fa%20b",
            raw_query: "x=1&a=b%20c",
            header,
        }
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, h, m, s)
            .single()
            .expect("time")
    }

    fn check(
        auth: &str,
        header: &dyn Fn(&str) -> Vec<String>,
        creds: &[AwsCredential],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), SigV4Error> {
        let h = head(header);
        precheck(auth, &h, creds, now)?.verify(&h, body)
    }

    #[test]
    fn what_this_node_signs_its_peers_verify() {
        let now = at(7, 32, 11);
        let (auth, date) = sign(&creds()[0], "GET", "127.0.0.1:9090", "/@node", b"", now);
        let sent = |name: &str| match name {
            "host" => vec!["127.0.0.1:9090".to_string()],
            "x-amz-date" => vec![date.clone()],
            _ => vec![],
        };
        let head = SignedHead {
            method: "GET",
            raw_path: "/@node",
            raw_query: "",
            header: &sent,
        };
        precheck(&auth, &head, &creds(), now)
            .expect("precheck")
            .verify(&head, b"")
            .expect("a peer accepts it");
        // Another secret under the same key id, another host: refused.
        let other = vec![AwsCredential {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "another-secret".into(),
        }];
        assert_eq!(
            precheck(&auth, &head, &other, now).and_then(|p| p.verify(&head, b"")),
            Err(SigV4Error::BadSignature)
        );
        let moved = |name: &str| match name {
            "host" => vec!["10.0.0.9:9090".to_string()],
            other => sent(other),
        };
        let head = SignedHead {
            header: &moved,
            ..head
        };
        assert_eq!(
            precheck(&auth, &head, &creds(), now).and_then(|p| p.verify(&head, b"")),
            Err(SigV4Error::BadSignature)
        );
    }

    #[test]
    fn accepts_a_botocore_signature() {
        check(BOTOCORE_AUTH, &headers, &creds(), BODY, at(7, 32, 11)).expect("valid");
    }

    #[test]
    fn the_body_received_is_what_is_verified() {
        assert_eq!(
            check(BOTOCORE_AUTH, &headers, &creds(), b"{}", at(7, 32, 11)),
            Err(SigV4Error::BadSignature)
        );
        // The original body's hash in x-amz-content-sha256 does not cover another body.
        let original = hex::encode(Sha256::digest(BODY));
        let replay = |name: &str| match name {
            "x-amz-content-sha256" => vec![original.clone()],
            other => headers(other),
        };
        assert_eq!(
            check(BOTOCORE_AUTH, &replay, &creds(), b"evil", at(7, 32, 11)),
            Err(SigV4Error::PayloadHash)
        );
        // ... and with the right body it is accepted (the header is optional but must agree).
        check(BOTOCORE_AUTH, &replay, &creds(), BODY, at(7, 32, 11)).expect("matching hash");
        let unsigned = |name: &str| match name {
            "x-amz-content-sha256" => vec!["UNSIGNED-PAYLOAD".to_string()],
            other => headers(other),
        };
        assert_eq!(
            check(BOTOCORE_AUTH, &unsigned, &creds(), BODY, at(7, 32, 11)),
            Err(SigV4Error::PayloadHash)
        );
    }

    #[test]
    fn rejects_wrong_secrets_unknown_keys_and_old_requests_alike() {
        let mut other = creds();
        other[0].secret_access_key = "wrong".into();
        let bad = check(BOTOCORE_AUTH, &headers, &other, BODY, at(7, 32, 11)).expect_err("bad");
        assert_eq!(bad, SigV4Error::BadSignature);
        other[0].access_key_id = "OTHER".into();
        let unknown =
            check(BOTOCORE_AUTH, &headers, &other, BODY, at(7, 32, 11)).expect_err("unknown");
        assert_eq!(unknown, SigV4Error::UnknownKey);
        assert_eq!(bad.client_message(), unknown.client_message());
        assert_eq!(
            check(BOTOCORE_AUTH, &headers, &creds(), BODY, at(7, 40, 0)),
            Err(SigV4Error::ClockSkew)
        );
    }

    #[test]
    fn scope_and_signed_headers_are_strict() {
        let sig = "Signature=0b2ad596594088d7ec5fcefc6e8d2b1cff318af7a96b11f45dd27ae21d5c5958";
        let cases = [
            "AWS4-HMAC-SHA256 nonsense".to_string(),
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE//us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, {sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2026112/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, {sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261399/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, {sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126//execute-api/aws4_request, SignedHeaders=host;x-amz-date, {sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/execute-api/aws4_request, SignedHeaders=x-amz-date, {sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/execute-api/aws4_request, SignedHeaders=host, {sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/execute-api/aws4_request, SignedHeaders=Host;x-amz-date, {sig}"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=00".to_string(),
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/execute-api/aws4_request, Credential=X/20261126/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, {sig}"),
            // A date that differs from X-Amz-Date's day.
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, {sig}"),
        ];
        for auth in &cases {
            assert!(
                matches!(
                    check(auth, &headers, &creds(), BODY, at(7, 32, 11)),
                    Err(SigV4Error::Malformed(_))
                ),
                "{auth}"
            );
        }
        let s3 = format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, {sig}");
        assert_eq!(
            check(&s3, &headers, &creds(), BODY, at(7, 32, 11)),
            Err(SigV4Error::WrongService)
        );
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
