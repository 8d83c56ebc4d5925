//! The control API's request path parser, and the route table behind it.
#![no_main]

use gangway_control_api::path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let target = path::parse(raw, "prod");
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
        let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
        let _ = gangway_control_api::routes::resolve(&target, &method);
    }
});
