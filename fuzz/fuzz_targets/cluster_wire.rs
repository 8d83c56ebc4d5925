//! The cluster wire format: whatever arrives from Redis decodes or fails, never panics, and
//! what decodes encodes to bytes that decode to the same message.
#![no_main]

use gangway_broker::internals::Msg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Msg::decode(data) {
        let again = Msg::decode(&msg.encode()).expect("an encoding decodes");
        assert_eq!(again, msg);
    }
});
