//! The stream lifecycle of a connection: complete requests become calls (answered inline by
//! the handler, or left to the caller), answers become frames, and streams end, are reset or
//! are dropped.

use super::connection::Connection;
use super::error::{ErrorCode, H2Error, H2Result};
use super::frame;
use super::grpc::{unframe, Status};
use super::handler::{Answer, Call, CallHandler, Handled, Payload};
use super::proto::{self, HEALTH_CHECK_REQUEST, RATE_LIMIT_REQUEST};
use super::request::Method;

impl Connection {
    /// The whole request of stream `sid` is in (`body`): answer what the head decided, or
    /// make it a call. A stream error when it contradicts its content-length.
    pub(super) fn complete(&mut self, sid: u32, body: &[u8]) -> H2Result<()> {
        let stream = self.streams.get(&sid).expect("a complete stream is open");
        let (head, deadline) = (std::sync::Arc::clone(&stream.head), stream.deadline);
        if head.content_length.is_some_and(|n| n != stream.received) {
            return Err(H2Error::stream(sid, ErrorCode::ProtocolError, "content-length mismatch"));
        }
        let Some(method) = head.method else {
            let stream = self.streams.get_mut(&sid).expect("checked above");
            let done = if head.reject_body.is_empty() {
                self.sender.headers_only(&mut self.out, stream, &head.reject)
            } else {
                self.sender.send(&mut self.out, stream, &head.reject, head.reject_body.to_vec(),
                                 None, self.now)
            };
            if done {
                self.end_stream(sid);
            }
            return Ok(());
        };
        let message = match unframe(body, self.opts.max_message_size) {
            Ok(message) => message,
            Err(err) => {
                self.answer_error(sid, err.status, &err.message);
                return Ok(());
            }
        };
        if deadline.is_some_and(|deadline| self.now >= deadline) {
            self.answer_error(sid, Status::DeadlineExceeded, "deadline exceeded");
            return Ok(());
        }
        self.streams.get_mut(&sid).expect("checked above").dispatched = true;
        self.calls.push(Call { stream_id: sid, payload: decode(method, message), deadline });
        Ok(())
    }

    /// Offer the read's calls to the handler; keep those it leaves. Calls whose stream was
    /// reset later in the same read are dropped unanswered.
    pub(super) fn offer_calls(&mut self, handler: &mut dyn CallHandler, wall_ms: u64) {
        if self.closing || self.calls.is_empty() {
            return;
        }
        let calls = std::mem::take(&mut self.calls);
        for call in calls {
            if !self.streams.get(&call.stream_id).is_some_and(|s| s.dispatched) {
                continue;
            }
            let sid = call.stream_id;
            match handler.offer(call, wall_ms) {
                Handled::Answer(answer) => self.respond(sid, &answer, self.now),
                Handled::Held => {
                    if let Some(stream) = self.streams.get_mut(&sid) {
                        stream.held = true;
                    }
                }
                Handled::Left(call) => self.calls.push(call),
            }
        }
    }

    /// Answer the call of stream `sid`. Nothing happens when the stream is gone (reset, timed
    /// out or the connection closing): the answer is simply not needed any more.
    pub fn respond(&mut self, sid: u32, answer: &Answer, now: f64) {
        self.now = now;
        if self.closing || !self.streams.get(&sid).is_some_and(|s| s.dispatched) {
            return;
        }
        let held_late = self.streams.get(&sid)
            .is_some_and(|s| s.held && s.deadline.is_some_and(|deadline| now >= deadline));
        if held_late {
            // A held call answered after its deadline: the caller has given up on it.
            self.answer_error(sid, Status::DeadlineExceeded, "deadline exceeded");
            return;
        }
        let message = match answer {
            Answer::Error(err) => {
                self.answer_error(sid, err.status, &err.message);
                return;
            }
            Answer::RateLimit(response) => {
                let mut message = Vec::with_capacity(64);
                proto::encode_rate_limit_response(response, &mut message);
                message
            }
            Answer::Health(status) => {
                let mut message = Vec::with_capacity(2);
                proto::encode_health_check_response(*status, &mut message);
                message
            }
        };
        let stream = self.streams.get_mut(&sid).expect("checked above");
        stream.dispatched = false;
        if self.sender.respond(&mut self.out, stream, &message, now) {
            self.end_stream(sid);
        }
    }

    /// End a stream's call with a status (Trailers-Only).
    pub(super) fn answer_error(&mut self, sid: u32, status: Status, message: &str) {
        let stream = self.streams.get_mut(&sid).expect("the stream is open");
        stream.dispatched = false;
        if self.sender.error(&mut self.out, stream, status, message) {
            self.end_stream(sid);
        }
    }

    pub(super) fn take_body(&mut self, sid: u32) -> Vec<u8> {
        let Some(body) = self.streams.get_mut(&sid).and_then(|s| s.body.take()) else {
            return Vec::new();
        };
        self.inflow.release(&mut self.out, body.len());
        body
    }

    /// Our side is done with the stream; if the peer's is not, ask it to stop.
    pub(super) fn end_stream(&mut self, sid: u32) {
        let Some(stream) = self.streams.remove(&sid) else { return };
        if stream.dispatched {
            self.cancelled.push(sid);
        }
        if let Some(body) = stream.body {
            self.inflow.release(&mut self.out, body.len());
        }
        if !stream.remote_closed {
            frame::rst_stream(&mut self.out, sid, ErrorCode::NoError);
            self.remember_reset(sid);
        }
        self.close_when_done();
    }

    pub(super) fn reset(&mut self, sid: u32, code: ErrorCode) {
        frame::rst_stream(&mut self.out, sid, code);
        self.remember_reset(sid);
        if self.streams.contains_key(&sid) {
            self.drop_stream(sid);
        }
    }

    /// Forget a stream that was reset (by either side).
    pub(super) fn drop_stream(&mut self, sid: u32) {
        let Some(stream) = self.streams.remove(&sid) else { return };
        self.sender.blocked.retain(|&b| b != sid);
        if stream.dispatched {
            self.cancelled.push(sid);
        }
        if let Some(body) = stream.body {
            self.inflow.release(&mut self.out, body.len());
        }
        self.close_when_done();
    }

    fn close_when_done(&mut self) {
        if self.streams.is_empty() && (self.goaway_last.is_some() || self.peer_goaway) {
            self.close();
        }
    }

    /// Push the streams waiting for window, in the order they got blocked, while the
    /// connection window lasts.
    pub(super) fn unblock(&mut self) {
        let blocked = self.sender.blocked.clone();
        for sid in blocked {
            if self.sender.window <= 0 {
                return;
            }
            let Some(stream) = self.streams.get_mut(&sid) else { continue };
            if stream.send_window > 0 && stream.pending.is_some()
                && self.sender.push(&mut self.out, stream, self.now) {
                self.end_stream(sid);
            }
        }
    }

    /// The connection is finished: nothing more is read, written after this or answered.
    pub(super) fn close(&mut self) {
        self.closing = true;
    }

    /// A connection error: GOAWAY with its code and (the start of) its message, then close.
    pub fn fail(&mut self, code: ErrorCode, message: &str) {
        if self.closing {
            return;
        }
        let debug = &message.as_bytes()[..message.len().min(200)];
        frame::goaway(&mut self.out, self.last_sid, code, debug);
        self.close();
    }
}

fn decode(method: Method, message: &[u8]) -> Payload {
    let (result, type_name) = match method {
        Method::RateLimit => (proto::decode_rate_limit_request(message).map(Payload::RateLimit),
                              RATE_LIMIT_REQUEST),
        Method::Health => (proto::decode_health_check_request(message).map(Payload::Health),
                           HEALTH_CHECK_REQUEST),
    };
    result.unwrap_or_else(|err| Payload::Malformed { method, message: err.describe(type_name) })
}
