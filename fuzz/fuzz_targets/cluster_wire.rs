//! The cluster wire format: whatever arrives from Redis decodes or fails, never panics, and
//! what decodes encodes back to the same bytes.
#![no_main]

use gangway_broker::cluster::wire::Msg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Msg::decode(data) {
        assert_eq!(msg.encode(), data);
    }
});
