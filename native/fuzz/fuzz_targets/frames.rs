//! The whole connection state machine on untrusted bytes: whatever arrives, in whatever
//! chunks, it must neither panic nor hold more than its limits allow, and what it writes must
//! be whole frames. Calls are answered (each kind of answer in turn) and every timeout is run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use viva_native::rls::{Code, RateLimitResponse};
use viva_native::wire::frame::{self, FrameHeader};
use viva_native::wire::grpc::Status;
use viva_native::wire::proto::ServingStatus;
use viva_native::wire::{Answer, Connection, DeferAll, Options};

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
    for piece in input.chunks(chunk * 16) {
        now += 0.25;
        let feed = conn.feed(piece, now, 0, &mut DeferAll);
        assert_whole_frames(&conn.take_output());
        assert!(conn.held_bytes() <= HELD_BOUND);
        for call in feed.calls {
            conn.respond(call.stream_id, &answer(answered), now);
            answered += 1;
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
