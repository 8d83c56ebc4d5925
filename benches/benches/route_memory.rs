//! Heap used to route one large message: the streaming pass against the tree parse it replaced.
//! Run: `cargo bench -p gangway-benches --bench route_memory` (prints peak heap bytes; dhat
//! counts every allocation of this process).

use gangway_benches::{large_message, tree_select};
use gangway_broker::internals::{select_route, SelectionExpression};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Peak heap bytes above what was live before `f` ran.
fn peak_during(f: impl FnOnce()) -> u64 {
    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get().curr_bytes as u64;
    f();
    let stats = dhat::HeapStats::get();
    stats.max_bytes as u64 - before
}

fn main() {
    let message = large_message(128 * 1024);
    let expression = SelectionExpression::parse("$request.body.action").expect("expression");
    let streaming = peak_during(|| {
        let route = select_route(&expression, Some(&message), |k| k == "sendmessage");
        assert_eq!(
            route,
            gangway_broker::internals::RouteChoice::Route("sendmessage".into())
        );
    });
    let tree = peak_during(|| {
        assert_eq!(
            tree_select(&message, &["action"]).as_deref(),
            Some("sendmessage")
        );
    });
    println!(
        "{{\"message_bytes\": {}, \"streaming_peak_heap_bytes\": {streaming}, \"tree_parse_peak_heap_bytes\": {tree}}}",
        message.len()
    );
}
