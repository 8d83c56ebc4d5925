//! Hot-path benchmarks. Run: `cargo bench -p gangway-benches`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gangway_benches::{large_message, subscribed, tree_select, CHAT_BODY};
use gangway_broker::config::SlowConsumerPolicy;
use gangway_broker::internals::frame;
use gangway_broker::internals::{build_event, EventKind, EventSource, MessageBody};
use gangway_broker::internals::{select_route, SelectionExpression};
use gangway_broker::internals::{ConnOp, Msg};
use gangway_broker::{ConnectionId, NodeTag};

fn route_selection(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_selection");
    let simple = SelectionExpression::parse("$request.body.action").expect("expr");
    let mixed = SelectionExpression::parse(
        "${request.body.room}/${request.body.action}-${request.body.data.mentions[0]}",
    )
    .expect("expr");
    let routes = ["sendmessage", "join", "$default"];
    let has = |k: &str| routes.contains(&k);
    g.bench_function("action_key", |b| {
        b.iter(|| select_route(&simple, Some(black_box(CHAT_BODY)), has))
    });
    g.bench_function("three_variables", |b| {
        b.iter(|| select_route(&mixed, Some(black_box(CHAT_BODY)), has))
    });
    g.bench_function("non_json_to_default", |b| {
        b.iter(|| select_route(&simple, Some(black_box("plain text, not json")), has))
    });
    // A 128 KiB message of small objects: the streaming pass against the tree parse it
    // replaced, in the same run.
    let large = large_message(128 * 1024);
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.bench_function("large_128k_streaming", |b| {
        b.iter(|| select_route(&simple, Some(black_box(&large)), has))
    });
    g.bench_function("large_128k_tree_parse_reference", |b| {
        b.iter(|| tree_select(black_box(&large), &["action"]))
    });
    g.finish();
}

fn event_serialisation(c: &mut Criterion) {
    let authorizer = serde_json::json!({"principalId": "user-1", "tier": "gold"});
    let source = EventSource {
        stage: "prod",
        api_id: "gangway",
        domain_name: "ws.example.com",
        connection_id: "AVpvRk1vGeeYed9gPVVeYgSb",
        connected_at_ms: 1_705_751_697_419,
        source_ip: "192.0.2.1",
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)"),
        authorizer: Some(&authorizer),
    };
    let now = chrono::Utc::now();
    c.bench_function("event/message", |b| {
        b.iter(|| {
            build_event(
                &source,
                &EventKind::Message {
                    route_key: "sendmessage",
                    message_id: "R1knPc2ntjMCFIA",
                    body: MessageBody::Text(CHAT_BODY),
                },
                "R1knPH17NjMFftw",
                now,
            )
        })
    });
}

fn frame_encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_encode");
    for size in [100usize, 4096, 65536] {
        let payload = vec![b'x'; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, p| {
            b.iter(|| frame::text_or_binary(black_box(p)))
        });
    }
    g.finish();
}

fn fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("fan_out");
    for n in [1usize, 100, 10_000] {
        let (channels, conns) = subscribed(n, "room");
        let frame = frame::text_or_binary(&[b'x'; 100]);
        let mut drained = Vec::new();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                // Encode once, queue the same bytes for every subscriber.
                channels.for_each_subscriber("room", |c| {
                    let _ = c
                        .outbox
                        .push(frame.clone(), 1 << 20, SlowConsumerPolicy::Drop);
                });
                // Keep the queues bounded between iterations (a session would write them).
                for c in &conns {
                    c.outbox.drain(&mut drained);
                    drained.clear();
                }
            })
        });
    }
    g.finish();
}

fn cluster_wire(c: &mut Criterion) {
    let tag = NodeTag::of("a");
    let conn = ConnectionId::generate(NodeTag::of("b")).expect("rng");
    let publish = Msg::Publish {
        origin: tag,
        channel: "news".into(),
        exclude: None,
        payload: Bytes::from(vec![b'x'; 100]),
    };
    let request = Msg::Request {
        req_id: 7,
        reply_to: tag,
        conn,
        op: ConnOp::Post(Bytes::from(vec![b'x'; 100])),
    };
    let encoded = Bytes::from(publish.encode());
    let mut g = c.benchmark_group("cluster_wire");
    g.bench_function("encode_publish", |b| {
        b.iter(|| black_box(&publish).encode())
    });
    g.bench_function("decode_publish", |b| {
        b.iter(|| Msg::decode(black_box(&encoded)))
    });
    g.bench_function("encode_request", |b| {
        b.iter(|| black_box(&request).encode())
    });
    g.finish();
}

criterion_group!(
    benches,
    route_selection,
    event_serialisation,
    frame_encoding,
    fan_out,
    cluster_wire
);
criterion_main!(benches);
