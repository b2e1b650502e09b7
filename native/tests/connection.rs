//! The connection state machine through its public API: what a client sends, what the server
//! writes back, what comes out as calls, and the CallHandler seam.

use viva_native::rls::{Code, CurrentLimit, DescriptorStatus, RateLimitResponse, Unit};
use viva_native::wire::error::ErrorCode;
use viva_native::wire::frame::{self, FrameHeader};
use viva_native::wire::grpc::Status;
use viva_native::wire::hpack::{encode_block, Decoder};
use viva_native::wire::request::RATE_LIMIT_PATH;
use viva_native::wire::{Answer, Call, CallHandler, Connection, DeferAll, Handled, Options, Payload,
                        TickAction};

const NOW: f64 = 100.0;
const WALL_MS: u64 = 1_700_000_000_000;

fn request_block(path: &[u8], extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut headers: Vec<(&[u8], &[u8])> = vec![(b":method", b"POST"), (b":scheme", b"http"),
                                                (b":path", path), (b":authority", b"x"),
                                                (b"content-type", b"application/grpc"),
                                                (b"te", b"trailers")];
    headers.extend_from_slice(extra);
    encode_block(&headers)
}

/// A RateLimitRequest for domain "d" with one descriptor {k: v}, gRPC-framed.
fn grpc_body() -> Vec<u8> {
    let message = b"\x0a\x01d\x12\x08\x0a\x06\x0a\x01k\x12\x01v";
    let mut body = vec![0, 0, 0, 0, message.len() as u8];
    body.extend_from_slice(message);
    body
}

fn client_preface(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut out = frame::PREFACE.to_vec();
    out.extend(frame::settings(settings));
    out
}

fn call(sid: u32, extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::headers(&mut out, sid, &request_block(RATE_LIMIT_PATH, extra), false, 16384);
    frame::write_frame(&mut out, frame::DATA, frame::END_STREAM, sid, &grpc_body());
    out
}

#[derive(Debug)]
struct Frame {
    ftype: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frames(out: &[u8]) -> Vec<Frame> {
    let mut found = Vec::new();
    let mut pos = 0;
    while pos < out.len() {
        let h = FrameHeader::parse(&out[pos..]);
        found.push(Frame { ftype: h.ftype, flags: h.flags, stream: h.stream_id,
                           payload: out[pos + 9..pos + 9 + h.length].to_vec() });
        pos += 9 + h.length;
    }
    found
}

fn goaway_code(frames: &[Frame]) -> Option<u32> {
    frames.iter().find(|f| f.ftype == frame::GOAWAY)
        .map(|f| u32::from_be_bytes(f.payload[4..8].try_into().unwrap()))
}

fn response() -> RateLimitResponse {
    RateLimitResponse {
        overall_code: Code::Ok,
        statuses: vec![DescriptorStatus {
            code: Code::Ok,
            current_limit: Some(CurrentLimit { name: String::new(), requests_per_unit: 3,
                                               unit: Unit::Minute }),
            limit_remaining: 2,
            reset_ms: 30_000,
        }],
        response_headers_to_add: vec![],
    }
}

fn connection() -> Connection {
    Connection::new(Options::default(), NOW)
}

#[test]
fn a_call_comes_out_decoded_and_its_answer_goes_back_as_frames() {
    let mut conn = connection();
    let mut input = client_preface(&[]);
    input.extend(call(1, &[]));
    let feed = conn.feed(&input, NOW, WALL_MS, &mut DeferAll);
    assert!(!feed.close);
    assert_eq!(feed.calls.len(), 1);
    let Payload::RateLimit(request) = &feed.calls[0].payload else { panic!("{feed:?}") };
    assert_eq!(request.domain, "d");
    assert_eq!(request.descriptors[0].entries, vec![("k".into(), "v".into())]);
    let out = frames(&conn.take_output());
    assert_eq!(out[0].ftype, frame::SETTINGS); // the ACK of the client's SETTINGS
    assert_eq!(out[0].flags, frame::ACK);

    conn.respond(1, &Answer::RateLimit(response()), NOW);
    let out = frames(&conn.take_output());
    let kinds: Vec<(u8, u32)> = out.iter().map(|f| (f.ftype, f.stream)).collect();
    assert_eq!(kinds, vec![(frame::HEADERS, 1), (frame::DATA, 1), (frame::HEADERS, 1)]);
    let mut decoder = Decoder::new(4096, 16384);
    let (trailers, _) = decoder.decode(&out[2].payload).unwrap();
    assert_eq!(trailers, vec![(b"grpc-status".to_vec(), b"0".to_vec())]);
    assert_eq!(conn.open_streams(), 0);
}

struct Inline {
    seen: Vec<String>,
}

impl CallHandler for Inline {
    fn offer(&mut self, call: Call, now_ms: u64) -> Handled {
        assert_eq!(now_ms, WALL_MS);
        let Payload::RateLimit(request) = &call.payload else { return Handled::Left(call) };
        self.seen.push(request.domain.clone());
        match self.seen.len() {
            1 => Handled::Answer(Answer::RateLimit(response())),
            2 => Handled::Answer(Answer::error(Status::InvalidArgument, "bad descriptor")),
            3 => Handled::Held,
            _ => Handled::Left(call),
        }
    }
}

#[test]
fn a_handler_answers_inside_feed_and_leaves_the_rest_pending() {
    let mut conn = connection();
    let mut input = client_preface(&[]);
    for sid in [1, 3, 5, 7] {
        input.extend(call(sid, &[]));
    }
    let mut handler = Inline { seen: Vec::new() };
    let feed = conn.feed(&input, NOW, WALL_MS, &mut handler);
    assert_eq!(handler.seen.len(), 4);
    assert_eq!(feed.calls.iter().map(|c| c.stream_id).collect::<Vec<_>>(), vec![7]);
    let out = frames(&conn.take_output());
    let ended: Vec<u32> = out.iter()
        .filter(|f| f.ftype == frame::HEADERS && f.flags & frame::END_STREAM != 0)
        .map(|f| f.stream).collect();
    assert_eq!(ended, vec![1, 3]);
    let error = out.iter().find(|f| f.stream == 3).unwrap();
    let (fields, _) = Decoder::new(4096, 16384).decode(&error.payload).unwrap();
    assert!(fields.contains(&(b"grpc-status".to_vec(), b"3".to_vec())), "{fields:?}");
    assert_eq!(conn.open_streams(), 2);
    // The held call is answered later, like the one left to the caller.
    conn.respond(5, &Answer::RateLimit(response()), NOW);
    conn.respond(7, &Answer::RateLimit(response()), NOW);
    let out = frames(&conn.take_output());
    assert_eq!(out.iter().filter(|f| f.ftype == frame::DATA).map(|f| f.stream).collect::<Vec<_>>(),
               vec![5, 7]);
    assert_eq!(conn.open_streams(), 0);
}

struct HoldAll;

impl CallHandler for HoldAll {
    fn offer(&mut self, _: Call, _: u64) -> Handled {
        Handled::Held
    }
}

#[test]
fn a_held_call_past_its_deadline_gets_deadline_exceeded() {
    let mut conn = connection();
    let mut input = client_preface(&[]);
    input.extend(call(1, &[(b"grpc-timeout", b"50m")]));
    input.extend(call(3, &[(b"grpc-timeout", b"50m")]));
    conn.feed(&input, NOW, WALL_MS, &mut HoldAll);
    conn.take_output();
    // At the answer: the deadline has passed.
    conn.respond(1, &Answer::RateLimit(response()), NOW + 0.06);
    // At a tick: the connection keeps the held call's deadline.
    assert_eq!(conn.tick(NOW + 0.06, false), TickAction::Continue);
    let out = frames(&conn.take_output());
    let mut decoder = Decoder::new(4096, 16384);
    for (sid, f) in [1, 3].into_iter().zip(&out) {
        assert_eq!((f.stream, f.flags & frame::END_STREAM), (sid, frame::END_STREAM));
        let (fields, _) = decoder.decode(&f.payload).unwrap();
        assert!(fields.contains(&(b"grpc-status".to_vec(), b"4".to_vec())), "{fields:?}");
    }
    assert_eq!(out.len(), 2);
}

#[test]
fn a_reset_later_in_the_same_read_drops_the_call() {
    let mut conn = connection();
    let mut input = client_preface(&[]);
    input.extend(call(1, &[]));
    frame::rst_stream(&mut input, 1, ErrorCode::Cancel);
    let mut handler = Inline { seen: Vec::new() };
    let feed = conn.feed(&input, NOW, WALL_MS, &mut handler);
    assert!(feed.calls.is_empty() && handler.seen.is_empty());
    assert_eq!(conn.open_streams(), 0);
}

#[test]
fn responses_wait_for_the_peers_window() {
    let mut conn = connection();
    let mut input = client_preface(&[(frame::INITIAL_WINDOW_SIZE, 0)]);
    input.extend(call(1, &[]));
    conn.feed(&input, NOW, WALL_MS, &mut DeferAll);
    conn.take_output();
    conn.respond(1, &Answer::RateLimit(response()), NOW);
    let out = frames(&conn.take_output());
    assert_eq!(out.iter().map(|f| f.ftype).collect::<Vec<_>>(), vec![frame::HEADERS]);
    let mut update = Vec::new();
    frame::window_update(&mut update, 1, 1000);
    conn.feed(&update, NOW, WALL_MS, &mut DeferAll);
    let out = frames(&conn.take_output());
    assert_eq!(out.iter().map(|f| f.ftype).collect::<Vec<_>>(), vec![frame::DATA, frame::HEADERS]);
    assert_eq!(conn.open_streams(), 0);
}

#[test]
fn protocol_errors_end_the_connection_with_their_code() {
    let cases: [(&[u8], u32); 4] = [
        (b"GET / HTTP/1.1\r\n\r\n", ErrorCode::ProtocolError as u32),
        (b"\x00\x40\x01\x00\x00\x00\x00\x00\x00", ErrorCode::FrameSizeError as u32),
        (b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x80", ErrorCode::CompressionError as u32),
        (b"\x00\x00\x03\x06\x00\x00\x00\x00\x00abc", ErrorCode::FrameSizeError as u32),
    ];
    for (frames_in, code) in cases {
        let mut conn = connection();
        let mut input = if frames_in.starts_with(b"GET") { Vec::new() } else { client_preface(&[]) };
        input.extend_from_slice(frames_in);
        let feed = conn.feed(&input, NOW, WALL_MS, &mut DeferAll);
        assert!(feed.close);
        assert_eq!(goaway_code(&frames(&conn.take_output())), Some(code), "{frames_in:?}");
    }
}

#[test]
fn limits_hold() {
    let options = Options { max_concurrent_streams: 1, max_message_size: 8, ..Options::default() };
    let mut conn = Connection::new(options, NOW);
    let mut input = client_preface(&[]);
    input.extend(call(1, &[])); // its message is 15 bytes: over the 8 allowed
    frame::headers(&mut input, 3, &request_block(RATE_LIMIT_PATH, &[]), false, 16384);
    frame::headers(&mut input, 5, &request_block(RATE_LIMIT_PATH, &[]), false, 16384);
    let feed = conn.feed(&input, NOW, WALL_MS, &mut DeferAll);
    assert!(feed.calls.is_empty());
    let out = frames(&conn.take_output());
    let reset: Vec<(u32, Vec<u8>)> = out.iter().filter(|f| f.ftype == frame::RST_STREAM)
        .map(|f| (f.stream, f.payload.clone())).collect();
    assert_eq!(reset, vec![(5, (ErrorCode::RefusedStream as u32).to_be_bytes().to_vec())]);
    let (fields, _) = Decoder::new(4096, 16384).decode(&out[1].payload).unwrap();
    assert!(fields.contains(&(b"grpc-status".to_vec(), b"8".to_vec())), "{fields:?}");
}

#[test]
fn timeouts_are_decided_by_tick() {
    let options = Options { request_timeout: 5.0, idle_timeout: 60.0, ..Options::default() };
    let mut conn = Connection::new(options.clone(), NOW);
    assert_eq!(conn.tick(NOW + 11.0, false), TickAction::Close); // no preface in time

    let mut conn = Connection::new(options, NOW);
    let mut input = client_preface(&[]);
    frame::headers(&mut input, 1, &request_block(RATE_LIMIT_PATH, &[(b"grpc-timeout", b"2S")]),
                   false, 16384);
    frame::headers(&mut input, 3, &request_block(RATE_LIMIT_PATH, &[]), false, 16384);
    conn.feed(&input, NOW, WALL_MS, &mut DeferAll);
    conn.take_output();
    assert_eq!(conn.tick(NOW + 3.0, false), TickAction::Continue);
    let out = frames(&conn.take_output());
    assert_eq!(out[0].stream, 1); // DEADLINE_EXCEEDED, then RST_STREAM(NO_ERROR)
    assert_eq!(conn.tick(NOW + 6.0, false), TickAction::Continue);
    let out = frames(&conn.take_output());
    assert_eq!((out[0].ftype, out[0].stream), (frame::RST_STREAM, 3)); // request timeout
    assert_eq!(conn.tick(NOW + 7.0, false), TickAction::Continue);
    assert_eq!(conn.tick(NOW + 68.0, false), TickAction::Close); // idle
    assert_eq!(goaway_code(&frames(&conn.take_output())), Some(0));
    assert_eq!(conn.tick(NOW + 69.0, true), TickAction::Continue); // closed already
}

#[test]
fn graceful_drain() {
    let mut conn = connection();
    let mut input = client_preface(&[]);
    input.extend(call(1, &[]));
    conn.feed(&input, NOW, WALL_MS, &mut DeferAll);
    conn.take_output();
    conn.drain(NOW);
    let out = frames(&conn.take_output());
    assert_eq!(out.iter().map(|f| f.ftype).collect::<Vec<_>>(), vec![frame::GOAWAY, frame::PING]);
    let mut ack = Vec::new();
    frame::ping(&mut ack, frame::ACK, &out[1].payload);
    input = ack;
    input.extend(call(3, &[])); // after the final GOAWAY: not processed
    let feed = conn.feed(&input, NOW, WALL_MS, &mut DeferAll);
    assert!(feed.calls.is_empty() && !feed.close);
    let out = frames(&conn.take_output());
    assert_eq!(out[0].payload[..4], 1u32.to_be_bytes()); // the final GOAWAY names stream 1
    conn.respond(1, &Answer::RateLimit(response()), NOW);
    assert!(conn.is_closing());
}
