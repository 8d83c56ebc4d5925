//! The frame meter: any bytes from a client, in any split, never panic it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let mut meter = gangway_broker::internals::FrameMeter::new(8);
    for chunk in bytes.chunks(usize::from(split).max(1)) {
        if meter.observe(chunk).is_err() {
            break;
        }
    }
});
