//! The WebSocket upgrade request parser: any bytes a client sends before the 101.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((request, used))) = gangway_broker::internals::parse_request(data, "prod") {
        assert!(used <= data.len());
        assert!(!request.key.is_empty());
        let _ = request.header("host");
    }
});
