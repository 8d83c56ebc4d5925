//! `?recover=<channel>:<offset>:<epoch>` values of an upgrade request's query string.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let query = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    if let Ok(found) = gangway_broker::internals::parse_recover(query, 8) {
        assert!(found.len() <= 8);
        for (channel, since) in &found {
            assert!(!channel.is_empty() && channel.len() <= 128);
            assert!(!since.epoch.is_empty() && since.epoch.len() <= 64);
        }
    }
});
