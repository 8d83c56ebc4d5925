//! Route selection: an expression (from a config file) and a client's message, split at the
//! first NUL byte of the input.
#![no_main]

use gangway_broker::internals::{select_route, SelectionExpression};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expression, message) = text.split_once('\0').unwrap_or(("$request.body.action", text));
    let Ok(expression) = SelectionExpression::parse(expression) else {
        return;
    };
    let _ = expression.evaluate(message);
    let _ = select_route(&expression, Some(message), |k| k == "$default" || k == "join");
});
