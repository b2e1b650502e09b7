//! The whole connection state machine on untrusted bytes: whatever arrives, in whatever
//! chunks, it must neither panic nor hold more than its limits allow, and what it writes must
//! be whole frames. Calls are answered (each kind of answer in turn) and every timeout is run.
//! Half the inputs go through the native engine as the connection's handler (the fast
//! transport's native path: calls decided inside `feed`, or held for Redis and answered later).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use viva_native::engine::{Engine, EngineOptions, Jitter};
use viva_native::rls::{Code, RateLimitResponse};
use viva_native::rules::{DomainSpec, LimitSpec, NodeSpec, RuleSetBuilder};
use viva_native::service::Service;
use viva_native::wire::frame::{self, FrameHeader};
use viva_native::wire::grpc::Status;
use viva_native::wire::proto::ServingStatus;
use viva_native::wire::{Answer, CallHandler, Connection, DeferAll, Options};

const HELD_BOUND: usize = 9 + 16384 + 16384 + 65535 + 256 * 1024;

fn options() -> Options {
    Options { max_concurrent_streams: 8, max_message_size: 2048, max_header_list_size: 2048,
              max_header_block_size: 8192, max_buffered_bytes: 16384, connection_window: 65535,
              stream_window: 8192, ..Options::default() }
}

fn answer(i: usize) -> Answer {
    match i % 3 {
        0 => Answer::RateLimit(RateLimitResponse { overall_code: Code::Ok, statuses: vec![],
                                                   response_headers_to_add: vec![] }),
        1 => Answer::Health(ServingStatus::Serving),
        _ => Answer::error(Status::Unavailable, "store down"),
    }
}

/// Domain "d": key "k" at 3 per minute.
fn engine() -> Engine {
    let mut b = RuleSetBuilder::new();
    let limit = b.add_limit(LimitSpec {
        requests_per_unit: 3, unit: 2, stats_key: "d.k".into(), name: String::new(),
        unlimited: false, shadow_mode: false, quota_mode: false, detailed_metric: false,
        replaces: vec![], algorithm: "fixed_window".into(), window_ms: 0, burst: 0,
        count_rejected: true, calendar: false,
    }).unwrap();
    let leaf = b.add_node(NodeSpec { key: "k".into(), limit: Some(limit), ..NodeSpec::default() });
    let root = b.add_node(NodeSpec { key: "d".into(), children: vec![("k".into(), leaf)],
                                     ..NodeSpec::default() });
    b.add_domain(DomainSpec { name: "d".into(), root, time_zone: "UTC".into(),
                              ..DomainSpec::default() });
    let mut engine = Engine::new(EngineOptions::default(), Jitter::Fixed { values: vec![0], next: 0 });
    engine.set_rules(Arc::new(b.build().unwrap()));
    engine
}

fn assert_whole_frames(out: &[u8]) {
    let mut pos = 0;
    while pos < out.len() {
        assert!(out.len() - pos >= 9, "partial frame header");
        pos += 9 + FrameHeader::parse(&out[pos..]).length;
        assert!(pos <= out.len(), "partial frame");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let mut input = Vec::new();
    if control & 0x80 != 0 {
        input.extend_from_slice(frame::PREFACE);
        input.extend(frame::settings(&[]));
    }
    input.extend_from_slice(rest);
    let chunk = usize::from(control & 0x3F) + 1;
    let mut conn = Connection::new(options(), 0.0);
    let mut now = 0.0;
    let mut answered = 0;
    // With the engine: on its memory store, or holding calls as for Redis.
    let mut engine = engine();
    let mut service = (control & 1 == 1).then(|| Service::new(control & 2 == 2, vec![String::new()]));
    for piece in input.chunks(chunk * 16) {
        now += 0.25;
        let feed = match service.as_mut() {
            None => conn.feed(piece, now, 0, &mut DeferAll),
            Some(service) => {
                let mut handler = service.handler(&mut engine);
                let handler: &mut dyn CallHandler = &mut handler;
                conn.feed(piece, now, 0, handler)
            }
        };
        assert_whole_frames(&conn.take_output());
        assert!(conn.held_bytes() <= HELD_BOUND);
        for call in feed.calls {
            conn.respond(call.stream_id, &answer(answered), now);
            answered += 1;
        }
        if let Some(service) = service.as_mut() {
            for held in std::mem::take(&mut service.held) {
                let result = engine.decide(&held.engine_request());
                let answer = service.finish(&held, &result);
                conn.respond(held.stream_id, &answer, now);
            }
        }
        assert_whole_frames(&conn.take_output());
    }
    if control & 0x40 != 0 {
        conn.drain(now);
    }
    conn.tick(now + 3600.0, false);
    assert_whole_frames(&conn.take_output());
    assert!(conn.held_bytes() <= HELD_BOUND);
});
