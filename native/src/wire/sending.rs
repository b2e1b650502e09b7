//! The send side of one connection: responses as frames, within what the peer allows.
//!
//! Every frame goes to one output buffer that the caller takes once per read, so a batch of N
//! answers costs one write. A successful call is answered with its frames written in one go;
//! only when the peer's flow-control windows, its frame size or an owed HPACK table size
//! update stand in the way does the general path queue DATA on the stream until WINDOW_UPDATEs
//! arrive. Methods that can finish a stream return true when they did: the connection then
//! ends it.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::{ErrorCode, H2Error, H2Result};
use super::frame::{self, DATA, DEFAULT_MAX_FRAME, DEFAULT_WINDOW, END_HEADERS, END_STREAM,
                   HEADERS, LARGEST_MAX_FRAME, MAX_WINDOW};
use super::grpc::{trailers_only, Status, RESPONSE_HEADERS, TRAILERS_OK};
use super::hpack::DEFAULT_TABLE_SIZE;
use super::stream::{Pending, Stream};

const ERROR_BLOCKS: usize = 64; // trailers-only blocks kept per connection, by (status, message)
const TABLE_SIZE_ZERO: u8 = 0x20; // an HPACK dynamic table size update to 0

pub struct Sender {
    /// The connection send window.
    pub window: i64,
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE.
    pub stream_window: i64,
    /// The peer's SETTINGS_MAX_FRAME_SIZE.
    pub max_frame: usize,
    /// Streams waiting for window, in the order they got blocked.
    pub blocked: Vec<u32>,
    /// The peer decoder's table we may assume.
    encoder_table: u64,
    /// A size update owed at the start of our next header block.
    table_update: bool,
    error_blocks: HashMap<(Status, String), Arc<[u8]>>,
}

impl Default for Sender {
    fn default() -> Sender {
        Sender::new()
    }
}

impl Sender {
    pub fn new() -> Sender {
        Sender { window: DEFAULT_WINDOW, stream_window: DEFAULT_WINDOW,
                 max_frame: DEFAULT_MAX_FRAME, blocked: Vec::new(),
                 encoder_table: DEFAULT_TABLE_SIZE as u64, table_update: false,
                 error_blocks: HashMap::new() }
    }

    // -- answers ------------------------------------------------------------------------------

    /// HEADERS, DATA and trailers of a successful call; true when the stream is finished.
    pub fn respond(&mut self, out: &mut Vec<u8>, stream: &mut Stream, message: &[u8], now: f64)
                   -> bool {
        let size = message.len() + 5;
        let fits = |window: i64| i64::try_from(size).is_ok_and(|s| s <= window);
        if fits(self.window) && fits(stream.send_window) && size <= self.max_frame
            && !self.table_update {
            let sid = stream.id;
            frame::write_frame(out, HEADERS, END_HEADERS, sid, RESPONSE_HEADERS);
            frame::write_header(out, DATA, 0, sid, size);
            out.push(0);
            out.extend_from_slice(&(message.len() as u32).to_be_bytes());
            out.extend_from_slice(message);
            frame::write_frame(out, HEADERS, END_HEADERS | END_STREAM, sid, TRAILERS_OK);
            self.window -= size as i64;
            return true;
        }
        let mut body = Vec::with_capacity(size);
        body.push(0);
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        self.send(out, stream, RESPONSE_HEADERS, body, Some(Arc::from(TRAILERS_OK)), now)
    }

    /// End a call with a status and no message (the Trailers-Only form).
    pub fn error(&mut self, out: &mut Vec<u8>, stream: &Stream, status: Status, message: &str)
                 -> bool {
        let key = (status, message.to_owned());
        let block = match self.error_blocks.get(&key) {
            Some(block) => Arc::clone(block),
            None => {
                if self.error_blocks.len() >= ERROR_BLOCKS {
                    self.error_blocks.clear();
                }
                let block: Arc<[u8]> = trailers_only(status, message).into();
                self.error_blocks.insert(key, Arc::clone(&block));
                block
            }
        };
        self.headers_only(out, stream, &block)
    }

    pub fn headers_only(&mut self, out: &mut Vec<u8>, stream: &Stream, block: &[u8]) -> bool {
        self.write_headers(out, stream.id, block, true);
        true
    }

    /// The general path: HEADERS now, DATA as the windows allow, then `trailers` (or
    /// END_STREAM on the last DATA frame when None).
    pub fn send(&mut self, out: &mut Vec<u8>, stream: &mut Stream, block: &[u8], body: Vec<u8>,
                trailers: Option<Arc<[u8]>>, now: f64) -> bool {
        self.write_headers(out, stream.id, block, false);
        stream.pending = Some(Pending { data: body, sent: 0, trailers });
        self.push(out, stream, now)
    }

    /// Send what the windows allow of a stream's pending DATA; true when all is out.
    pub fn push(&mut self, out: &mut Vec<u8>, stream: &mut Stream, now: f64) -> bool {
        let sid = stream.id;
        let Some(pending) = stream.pending.as_mut() else { return false };
        loop {
            let remaining = pending.remaining();
            if remaining == 0 && pending.trailers.is_some() {
                break;
            }
            let n = (remaining as i64).min(self.window).min(stream.send_window)
                .min(self.max_frame as i64);
            if n <= 0 && remaining > 0 {
                if !self.blocked.contains(&sid) {
                    self.blocked.push(sid);
                    stream.since = now;
                }
                return false;
            }
            let n = n.max(0) as usize;
            let end = n == remaining && pending.trailers.is_none();
            frame::write_header(out, DATA, if end { END_STREAM } else { 0 }, sid, n);
            out.extend_from_slice(&pending.data[pending.sent..pending.sent + n]);
            pending.sent += n;
            self.window -= n as i64;
            stream.send_window -= n as i64;
            if end {
                break;
            }
        }
        self.blocked.retain(|&b| b != sid);
        if let Some(trailers) = pending.trailers.clone() {
            self.write_headers(out, sid, &trailers, true);
        }
        true
    }

    pub fn write_headers(&mut self, out: &mut Vec<u8>, sid: u32, block: &[u8], end_stream: bool) {
        if self.table_update {
            self.table_update = false;
            let mut updated = Vec::with_capacity(block.len() + 1);
            updated.push(TABLE_SIZE_ZERO);
            updated.extend_from_slice(block);
            frame::headers(out, sid, &updated, end_stream, self.max_frame);
        } else {
            frame::headers(out, sid, block, end_stream, self.max_frame);
        }
    }

    // -- what the peer allows (the connection unblocks streams afterwards) ----------------------

    pub fn add_window(&mut self, increment: u32) -> H2Result<()> {
        self.window += i64::from(increment);
        if self.window > MAX_WINDOW {
            return Err(H2Error::connection(ErrorCode::FlowControlError, "window above 2^31-1"));
        }
        Ok(())
    }

    pub fn add_stream_window(&self, stream: &mut Stream, increment: u32) -> H2Result<()> {
        stream.send_window += i64::from(increment);
        if stream.send_window > MAX_WINDOW {
            return Err(H2Error::stream(stream.id, ErrorCode::FlowControlError,
                                       "window above 2^31-1"));
        }
        Ok(())
    }

    /// SETTINGS_INITIAL_WINDOW_SIZE: every open stream's window moves by the change.
    pub fn set_stream_window<'a>(&mut self, value: u32, streams: impl Iterator<Item = &'a mut Stream>)
                                 -> H2Result<()> {
        let value = i64::from(value);
        if value > MAX_WINDOW {
            return Err(H2Error::connection(ErrorCode::FlowControlError, "initial window too large"));
        }
        let delta = value - self.stream_window;
        self.stream_window = value;
        for stream in streams {
            stream.send_window += delta;
            if stream.send_window > MAX_WINDOW {
                return Err(H2Error::connection(ErrorCode::FlowControlError,
                                               "stream window overflow"));
            }
        }
        Ok(())
    }

    pub fn set_max_frame(&mut self, value: u32) -> H2Result<()> {
        let value = value as usize;
        if !(DEFAULT_MAX_FRAME..=LARGEST_MAX_FRAME).contains(&value) {
            return Err(H2Error::protocol(format!("max frame size {value}")));
        }
        self.max_frame = value;
        Ok(())
    }

    /// We never index into the peer's table, so shrinking ours to 0 once is all it takes;
    /// RFC 7541 4.2 wants the update at the start of our next header block.
    pub fn set_peer_table_size(&mut self, value: u32) {
        if u64::from(value) < self.encoder_table {
            self.encoder_table = 0;
            self.table_update = true;
        }
    }
}
