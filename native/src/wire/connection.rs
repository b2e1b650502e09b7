//! One HTTP/2 connection (RFC 9113, server side, cleartext with prior knowledge) serving unary
//! gRPC calls: the receive side. The stream lifecycle and answers are in `streams.rs`, the
//! timeouts and shutdown in `timers.rs`, the send side in `sending.rs`.
//!
//! The caller owns the socket and the clock: it hands over whatever bytes arrived (`feed`),
//! writes what comes back, answers the calls it is given (`respond`), and calls `tick` about
//! once a second with the time, so every limit and timeout of the pure-Python connection holds
//! here with the same outcome, frame for frame.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::OnceLock;

use super::error::{ErrorCode, H2Error, H2Result};
use super::flow::ReceiveWindow;
use super::frame::{self, FrameHeader, CONTINUATION, DATA, DEFAULT_MAX_FRAME, END_STREAM, GOAWAY,
                   HEADERS, HEADER_LEN, PADDED, PING, PREFACE, PRIORITY, PUSH_PROMISE, RST_STREAM,
                   SETTINGS, WINDOW_UPDATE};
use super::handler::{Call, CallHandler};
use super::hpack::{Decoder, DEFAULT_TABLE_SIZE};
use super::options::Options;
use super::request::{HeadCache, Router};
use super::sending::Sender;
use super::stream::Stream;

/// We never raise SETTINGS_MAX_FRAME_SIZE.
pub const MAX_RECV_FRAME: usize = DEFAULT_MAX_FRAME;
pub(super) const DRAIN_PING: &[u8] = b"drain\x00\x00\x00";
/// Stream ids we reset whose late frames are silently dropped.
const RESET_MEMORY: usize = 1024;

/// Which frames are acceptable now (a header block in progress allows CONTINUATION only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    AwaitSettings,
    Normal,
    InBlock,
}

/// What one `feed` produced besides bytes.
#[derive(Debug, Default, PartialEq)]
pub struct Feed {
    /// Complete calls the handler left for the caller, in the order they completed.
    pub calls: Vec<Call>,
    /// Streams whose calls the caller holds that are gone (reset by either side): stop work.
    pub cancelled: Vec<u32>,
    /// The connection is finished: write what is left, then close.
    pub close: bool,
}

/// An open header block (HEADERS without END_HEADERS, then CONTINUATIONs).
pub(super) struct Block {
    pub fragment: Vec<u8>,
    pub stream_id: u32,
    pub end_stream: bool,
    pub since: f64,
}

pub struct Connection {
    pub(super) opts: Options,
    pub(super) phase: Phase,
    preface_done: bool,
    buf: Vec<u8>,
    need: usize,
    pub(super) out: Vec<u8>,
    pub(super) sender: Sender,
    pub(super) decoder: Decoder,
    pub(super) heads: HeadCache,
    pub(super) streams: BTreeMap<u32, Stream>,
    pub(super) last_sid: u32,
    pub(super) reset_by_us: HashSet<u32>,
    reset_order: VecDeque<u32>,
    /// A stream whose HEADERS declared a dependency on itself.
    pub(super) bad_priority: u32,
    pub(super) block: Option<Block>,
    pub(super) inflow: ReceiveWindow,
    pub(super) since: f64,
    pub(super) idle_since: f64,
    pub(super) idle_mark: u32,
    pub(super) drain_deadline: Option<f64>,
    /// Set once the final GOAWAY is sent.
    pub(super) goaway_last: Option<u32>,
    pub(super) peer_goaway: bool,
    pub(super) closing: bool,
    /// Calls completed during this `feed`, offered to the handler at its end.
    pub(super) calls: Vec<Call>,
    pub(super) cancelled: Vec<u32>,
    pub(super) now: f64,
}

pub(super) fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(Router::new)
}

impl Connection {
    pub fn new(opts: Options, now: f64) -> Connection {
        Connection {
            phase: Phase::AwaitSettings,
            preface_done: false,
            buf: Vec::new(),
            need: PREFACE.len(),
            out: Vec::new(),
            sender: Sender::new(),
            decoder: Decoder::new(DEFAULT_TABLE_SIZE, opts.max_header_list_size),
            heads: HeadCache::default(),
            streams: BTreeMap::new(),
            last_sid: 0,
            reset_by_us: HashSet::new(),
            reset_order: VecDeque::new(),
            bad_priority: 0,
            block: None,
            inflow: ReceiveWindow::new(opts.connection_window, opts.max_buffered_bytes),
            since: now,
            idle_since: now,
            idle_mark: 0,
            drain_deadline: None,
            goaway_last: None,
            peer_goaway: false,
            closing: false,
            calls: Vec::new(),
            cancelled: Vec::new(),
            now,
            opts,
        }
    }

    /// Bytes to write now (everything produced since the last call).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Streams whose calls the caller holds that are gone since the last `feed` or this call.
    pub fn take_cancelled(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.cancelled)
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Bytes this connection holds for its peer: unparsed input, unsent output, request bodies
    /// and blocked responses (what the limits in Options bound).
    pub fn held_bytes(&self) -> usize {
        let pending: usize = self.streams.values()
            .filter_map(|s| s.pending.as_ref().map(|p| p.remaining())).sum();
        let block = self.block.as_ref().map_or(0, |b| b.fragment.len());
        self.buf.len() + self.out.len() + self.inflow.buffered.max(0) as usize + pending + block
    }

    /// Everything that arrived: whole frames are handled, a partial one is kept for the next
    /// call. `now` is the caller's monotonic clock in seconds (timeouts), `wall_ms` the wall
    /// clock for the handler.
    pub fn feed(&mut self, data: &[u8], now: f64, wall_ms: u64, handler: &mut dyn CallHandler)
                -> Feed {
        self.now = now;
        if self.closing {
            return Feed { close: true, ..Feed::default() };
        }
        if self.buf.is_empty() {
            self.receive(data);
        } else {
            self.buf.extend_from_slice(data);
            if self.buf.len() >= self.need {
                let buf = std::mem::take(&mut self.buf);
                self.receive(&buf);
            }
        }
        self.offer_calls(handler, wall_ms);
        self.finish_feed()
    }

    fn receive(&mut self, data: &[u8]) {
        match self.parse(data) {
            Ok(pos) if pos < data.len() => self.keep(data, pos),
            Ok(_) => {}
            Err(H2Error::Connection { code, message }) => self.fail(code, &message),
            Err(H2Error::Stream { code, message, .. }) => self.fail(code, &message),
        }
    }

    fn parse(&mut self, data: &[u8]) -> H2Result<usize> {
        let mut pos = 0;
        if !self.preface_done {
            pos = self.preface_check(data)?;
        }
        if self.preface_done {
            pos = self.frames(data, pos)?;
        }
        Ok(pos)
    }

    fn preface_check(&mut self, data: &[u8]) -> H2Result<usize> {
        let n = data.len().min(PREFACE.len());
        if data[..n] != PREFACE[..n] {
            return Err(H2Error::protocol("invalid connection preface"));
        }
        if data.len() < PREFACE.len() {
            return Ok(0);
        }
        self.preface_done = true;
        Ok(PREFACE.len())
    }

    /// Hold an incomplete frame; note how many bytes must arrive before parsing again.
    fn keep(&mut self, data: &[u8], pos: usize) {
        self.buf.extend_from_slice(&data[pos..]);
        self.need = if !self.preface_done {
            PREFACE.len()
        } else if data.len() - pos >= HEADER_LEN {
            HEADER_LEN + FrameHeader::parse(&data[pos..]).length
        } else {
            HEADER_LEN
        };
    }

    /// Handle every complete frame from `pos`; the offset of the first incomplete one.
    fn frames(&mut self, data: &[u8], mut pos: usize) -> H2Result<usize> {
        while data.len() - pos >= HEADER_LEN && !self.closing {
            let header = FrameHeader::parse(&data[pos..]);
            if header.length > MAX_RECV_FRAME {
                return Err(H2Error::connection(ErrorCode::FrameSizeError, format!(
                    "frame of {} bytes exceeds {MAX_RECV_FRAME}", header.length)));
            }
            let start = pos + HEADER_LEN;
            let stop = start + header.length;
            if stop > data.len() {
                break;
            }
            pos = stop;
            match self.frame(header, &data[start..stop]) {
                Err(H2Error::Stream { stream_id, code, .. }) => self.reset(stream_id, code),
                other => other?,
            }
        }
        Ok(pos)
    }

    fn frame(&mut self, h: FrameHeader, payload: &[u8]) -> H2Result<()> {
        let (flags, sid) = (h.flags, h.stream_id);
        match (self.phase, h.ftype) {
            (Phase::AwaitSettings, SETTINGS) => self.on_first_settings(flags, sid, payload),
            (Phase::AwaitSettings, _) => Err(H2Error::protocol("the first frame must be SETTINGS")),
            (Phase::InBlock, CONTINUATION) => self.on_continuation(flags, sid, payload),
            (Phase::InBlock, _) => Err(H2Error::protocol("frame inside a header block")),
            (Phase::Normal, DATA) => self.on_data(flags, sid, payload),
            (Phase::Normal, HEADERS) => self.on_headers(flags, sid, payload),
            (Phase::Normal, PRIORITY) => self.on_priority(sid, payload),
            (Phase::Normal, RST_STREAM) => self.on_rst_stream(sid, payload),
            (Phase::Normal, SETTINGS) => self.on_settings(flags, sid, payload),
            (Phase::Normal, PUSH_PROMISE) => Err(H2Error::protocol("clients cannot push")),
            (Phase::Normal, PING) => self.on_ping(flags, sid, payload),
            (Phase::Normal, GOAWAY) => self.on_goaway(sid, payload),
            (Phase::Normal, WINDOW_UPDATE) => self.on_window_update(sid, payload),
            (Phase::Normal, CONTINUATION) => {
                Err(H2Error::protocol("CONTINUATION without a header block"))
            }
            (Phase::Normal, _) => Ok(()), // RFC 9113 5.5: unknown frame types are ignored
        }
    }

    // -- DATA -----------------------------------------------------------------------------------

    fn on_data(&mut self, flags: u8, sid: u32, payload: &[u8]) -> H2Result<()> {
        if sid == 0 {
            return Err(H2Error::protocol("DATA on stream 0"));
        }
        let size = payload.len();
        self.inflow.consume(size)?;
        let open = self.streams.get(&sid).map(|s| !s.remote_closed);
        if open != Some(true) {
            // Discarded: the connection window is given back.
            self.inflow.credit(&mut self.out, size as i64);
            return self.data_without_stream(sid, open.is_some());
        }
        let payload = if flags & PADDED != 0 { frame::unpad(payload)? } else { payload };
        let stream = self.streams.get_mut(&sid).expect("the stream is open");
        stream.recv_window -= size as i64;
        stream.received += payload.len() as u64;
        let over_length = stream.head.content_length.is_some_and(|n| stream.received > n);
        if stream.recv_window < 0 || over_length {
            let code = if stream.recv_window < 0 { ErrorCode::FlowControlError }
                       else { ErrorCode::ProtocolError };
            self.inflow.credit(&mut self.out, size as i64);
            return Err(H2Error::stream(sid, code, "stream window or length exceeded"));
        }
        if flags & END_STREAM != 0 && stream.body.is_none() {
            stream.remote_closed = true;
            self.inflow.credit(&mut self.out, size as i64);
            return self.complete(sid, payload);
        }
        self.accumulate(sid, payload, size, flags & END_STREAM != 0)
    }

    fn data_without_stream(&mut self, sid: u32, exists: bool) -> H2Result<()> {
        if exists {
            return Err(H2Error::stream(sid, ErrorCode::StreamClosed, "DATA after END_STREAM"));
        }
        if sid > self.last_sid {
            return Err(H2Error::protocol(format!("DATA on idle stream {sid}")));
        }
        if !self.reset_by_us.contains(&sid) {
            // A stream we did not reset: its DATA is an error (else it was in flight when we
            // reset the stream, and is dropped).
            return Err(H2Error::stream(sid, ErrorCode::StreamClosed, "DATA on a closed stream"));
        }
        Ok(())
    }

    /// A request spanning several DATA frames: buffer it within the message size limit.
    fn accumulate(&mut self, sid: u32, payload: &[u8], size: usize, end: bool) -> H2Result<()> {
        let max_message = self.opts.max_message_size;
        let stream = self.streams.get_mut(&sid).expect("the stream is open");
        if stream.head.method.is_none() {
            // Answered without reading the body: count only.
            self.inflow.credit(&mut self.out, size as i64);
        } else {
            let body = stream.body.get_or_insert_with(Vec::new);
            body.extend_from_slice(payload);
            let oversize = body.len() > max_message + 5
                || (body.len() >= 5 && frame::u32_at(body, 1) as usize > max_message);
            self.inflow.keep(&mut self.out, payload.len(), size);
            if oversize {
                let message = format!("request message larger than {max_message} bytes");
                self.answer_error(sid, super::grpc::Status::ResourceExhausted, &message);
                return Ok(());
            }
        }
        if end {
            let body = self.take_body(sid);
            if let Some(stream) = self.streams.get_mut(&sid) {
                stream.remote_closed = true;
            }
            return self.complete(sid, &body);
        }
        let window = self.opts.stream_window;
        let stream = self.streams.get_mut(&sid).expect("the stream is open");
        if stream.recv_window <= window / 2 {
            let increment = window - stream.recv_window;
            stream.recv_window += increment;
            frame::window_update(&mut self.out, sid, increment as u32);
        }
        Ok(())
    }

    // -- bookkeeping shared with streams.rs ------------------------------------------------------

    pub(super) fn remember_reset(&mut self, sid: u32) {
        if self.reset_by_us.insert(sid) {
            self.reset_order.push_back(sid);
            if self.reset_order.len() > RESET_MEMORY {
                if let Some(oldest) = self.reset_order.pop_front() {
                    self.reset_by_us.remove(&oldest);
                }
            }
        }
    }

    fn finish_feed(&mut self) -> Feed {
        let mut calls = std::mem::take(&mut self.calls);
        if self.closing {
            calls.clear(); // the caller stops every call of a closing connection
        }
        Feed { calls, cancelled: std::mem::take(&mut self.cancelled), close: self.closing }
    }
}
