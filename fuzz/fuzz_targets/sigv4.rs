//! SigV4: the Authorization header, the pre-body checks and the canonical request, over
//! arbitrary header values, paths and queries (fields split at NUL bytes).
#![no_main]

use gangway_control_api::config::AwsCredential;
use gangway_control_api::auth::sigv4::{self, SignedHead};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.split('\0');
    let authorization = fields.next().unwrap_or("");
    let amz_date = fields.next().unwrap_or("").to_string();
    let path = fields.next().unwrap_or("/");
    let query = fields.next().unwrap_or("");
    let content_hash = fields.next().map(str::to_string);
    let body = fields.next().unwrap_or("").as_bytes();
    let header = move |name: &str| -> Vec<String> {
        match name {
            "host" => vec!["127.0.0.1:9090".to_string()],
            "x-amz-date" => vec![amz_date.clone()],
            "x-amz-content-sha256" => content_hash.clone().into_iter().collect(),
            _ => Vec::new(),
        }
    };
    let head = SignedHead {
        method: "POST",
        raw_path: path,
        raw_query: query,
        header: &header,
    };
    let credentials = [AwsCredential {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "secret".into(),
    }];
    if let Ok(auth) = sigv4::Authorization::parse(authorization) {
        let _ = auth;
    }
    let _ = sigv4::canonical_request(&head, &["host".into(), "x-amz-date".into()], "e3b0");
    if let Ok(pre) = sigv4::precheck(authorization, &head, &credentials, chrono::Utc::now()) {
        let _ = pre.verify(&head, body);
    }
});
