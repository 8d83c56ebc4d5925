//! `POST /@batch` bodies: the bounded, streaming batch parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = gangway_control_api::routes::batch::parse(data, 100, 1024) {
        assert!(items.len() <= 100);
    }
});
