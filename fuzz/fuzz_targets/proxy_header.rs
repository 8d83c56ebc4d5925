//! What a trusted proxy sends before the upgrade (PROXY protocol v1/v2), and the
//! `X-Forwarded-For` hops any client can write: parsed without panicking, and a header's length
//! never past the input.
#![no_main]

use gangway_broker::config::edge::EdgeConfig;
use gangway_broker::internals::{client_address, parse_proxy_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = parse_proxy_header(data) {
        assert!(used <= data.len());
    }
    let mut problems = Vec::new();
    let edge = EdgeConfig::parse(
        "fuzz",
        &["127.0.0.0/8".to_string(), "10.0.0.0/8".to_string()],
        false,
        &mut problems,
    );
    let xff = String::from_utf8_lossy(data).into_owned();
    let headers = vec![("X-Forwarded-For".to_string(), xff)];
    let _ = client_address("127.0.0.1".parse().expect("ip"), &headers, &edge);
});
