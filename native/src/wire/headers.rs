//! The frames that carry request headers (HEADERS, CONTINUATION): header blocks, new
//! streams, trailers, and blocks for streams that are already gone.

use std::sync::Arc;

use super::connection::{router, Block, Connection, Phase};
use super::error::{ErrorCode, H2Error, H2Result};
use super::frame::{self, END_HEADERS, END_STREAM, PADDED, PRIORITY_FLAG};
use super::request::{check_trailers, RequestHead};
use super::stream::Stream;

impl Connection {
    pub(super) fn on_headers(&mut self, flags: u8, sid: u32, payload: &[u8]) -> H2Result<()> {
        if sid == 0 {
            return Err(H2Error::protocol("HEADERS on stream 0"));
        }
        let mut block = payload;
        if flags & (PADDED | PRIORITY_FLAG) != 0 {
            let self_dependent;
            (block, self_dependent) = frame::header_fragment(flags, sid, payload)?;
            if self_dependent {
                self.bad_priority = sid; // reset once the block is decoded (HPACK sync)
            }
        }
        let end_stream = flags & END_STREAM != 0;
        if flags & END_HEADERS != 0 {
            return self.header_block(sid, end_stream, block);
        }
        self.block = Some(Block { fragment: block.to_vec(), stream_id: sid, end_stream,
                                  since: self.now });
        self.phase = Phase::InBlock;
        Ok(())
    }

    pub(super) fn on_continuation(&mut self, flags: u8, sid: u32, payload: &[u8]) -> H2Result<()> {
        let max = self.opts.max_header_block_size;
        let Some(block) = self.block.as_mut().filter(|b| b.stream_id == sid) else {
            return Err(H2Error::protocol("CONTINUATION for another stream"));
        };
        block.fragment.extend_from_slice(payload);
        if block.fragment.len() > max {
            return Err(H2Error::connection(ErrorCode::EnhanceYourCalm, "header block too large"));
        }
        if flags & END_HEADERS != 0 {
            let block = self.block.take().expect("checked above");
            self.phase = Phase::Normal;
            return self.header_block(sid, block.end_stream, &block.fragment);
        }
        Ok(())
    }

    fn header_block(&mut self, sid: u32, end_stream: bool, block: &[u8]) -> H2Result<()> {
        if self.streams.contains_key(&sid) {
            return self.trailers(sid, end_stream, block);
        }
        if sid <= self.last_sid {
            return self.closed_headers(sid, block);
        }
        if sid & 1 == 0 {
            return Err(H2Error::protocol(format!("even stream id {sid}")));
        }
        self.last_sid = sid;
        let head = self.heads.head(&mut self.decoder, router(), block)?;
        if self.bad_priority == sid {
            self.bad_priority = 0;
            return Err(H2Error::stream(sid, ErrorCode::ProtocolError, "stream depends on itself"));
        }
        if self.goaway_last.is_some() {
            // After our final GOAWAY: not processed, dropped.
            self.remember_reset(sid);
            return Ok(());
        }
        self.open_stream(sid, head, end_stream)
    }

    fn open_stream(&mut self, sid: u32, head: Arc<RequestHead>, end_stream: bool) -> H2Result<()> {
        if let Some(problem) = &head.malformed {
            return Err(H2Error::stream(sid, ErrorCode::ProtocolError, problem.clone()));
        }
        if self.streams.len() >= self.opts.max_concurrent_streams {
            return Err(H2Error::stream(sid, ErrorCode::RefusedStream, "too many concurrent streams"));
        }
        let mut stream = Stream::new(sid, head, self.opts.stream_window, self.sender.stream_window,
                                     self.now);
        stream.remote_closed = end_stream;
        self.streams.insert(sid, stream);
        if end_stream {
            return self.complete(sid, b"");
        }
        Ok(())
    }

    fn trailers(&mut self, sid: u32, end_stream: bool, block: &[u8]) -> H2Result<()> {
        let (headers, _) = self.decoder.decode(block)?;
        if self.bad_priority == sid {
            self.bad_priority = 0;
            return Err(H2Error::stream(sid, ErrorCode::ProtocolError, "stream depends on itself"));
        }
        let stream = self.streams.get_mut(&sid).expect("the caller found it");
        if stream.remote_closed {
            return Err(H2Error::stream(sid, ErrorCode::StreamClosed, "HEADERS after END_STREAM"));
        }
        if !end_stream {
            return Err(H2Error::stream(sid, ErrorCode::ProtocolError, "trailers without END_STREAM"));
        }
        if let Some(problem) = check_trailers(&headers) {
            return Err(H2Error::stream(sid, ErrorCode::ProtocolError, problem));
        }
        stream.remote_closed = true;
        let body = self.take_body(sid);
        self.complete(sid, &body)
    }

    fn closed_headers(&mut self, sid: u32, block: &[u8]) -> H2Result<()> {
        self.decoder.decode(block)?; // unused, but the HPACK context must stay in step
        if self.reset_by_us.contains(&sid) {
            return Ok(());
        }
        if sid == self.last_sid {
            return Err(H2Error::connection(ErrorCode::StreamClosed,
                                           format!("HEADERS on closed stream {sid}")));
        }
        Err(H2Error::protocol(format!("stream id {sid} is not above {}", self.last_sid)))
    }
}
