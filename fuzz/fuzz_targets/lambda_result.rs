//! A backend's answer read as Lambda's proxy result (`response_format = "lambda"`): any bytes
//! give an answer or an error, never a panic, and a decoded body is never larger than the
//! answer it came from.
#![no_main]

use bytes::Bytes;
use gangway_broker::internals::{decode_lambda_result, Answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let answer = Answer {
        status: 200,
        subprotocol: None,
        body: Bytes::copy_from_slice(data),
    };
    if let Ok(decoded) = decode_lambda_result(answer) {
        assert!(decoded.body.len() <= data.len());
    }
});
