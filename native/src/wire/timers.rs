//! Timeouts, graceful drain and the peer's end of input. The caller keeps the timers: it calls
//! `tick` about once a second with its clock, and `drain` when the server stops.

use super::connection::{Connection, Phase, DRAIN_PING};
use super::error::ErrorCode;
use super::frame::{self, STREAM_ID_MASK};
use super::grpc::Status;

/// What the caller must do with the transport after `tick`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickAction {
    /// Nothing beyond writing the output.
    Continue,
    /// Write the output, then close (gracefully).
    Close,
    /// Drop the connection now: the peer does not read what we write.
    Abort,
}

impl Connection {
    /// Every timeout, at time `now`. `write_stalled`: the caller's transport has been unable
    /// to write for longer than the write timeout (the peer does not read).
    pub fn tick(&mut self, now: f64, write_stalled: bool) -> TickAction {
        self.now = now;
        if self.closing {
            return TickAction::Continue;
        }
        let opts = &self.opts;
        if self.phase == Phase::AwaitSettings && now - self.since > opts.handshake_timeout {
            self.close();
            return TickAction::Close;
        }
        if write_stalled {
            self.close();
            return TickAction::Abort;
        }
        if self.block.as_ref().is_some_and(|b| now - b.since > opts.request_timeout) {
            self.fail(ErrorCode::EnhanceYourCalm, "header block not finished in time");
            return TickAction::Close;
        }
        if self.drain_deadline.is_some_and(|deadline| now >= deadline) {
            self.final_goaway();
        }
        if !self.closing {
            self.expire_streams(now);
        }
        if !self.closing {
            self.check_idle(now);
        }
        if self.closing { TickAction::Close } else { TickAction::Continue }
    }

    fn expire_streams(&mut self, now: f64) {
        let sids: Vec<u32> = self.streams.keys().copied().collect();
        for sid in sids {
            let Some(stream) = self.streams.get(&sid) else { continue };
            if stream.pending.is_some() {
                if now - stream.since > self.opts.write_timeout {
                    self.reset(sid, ErrorCode::Cancel);
                }
            } else if stream.held && stream.dispatched {
                // The caller keeps the deadlines of the calls it answers; the handler's are
                // kept here.
                if stream.deadline.is_some_and(|deadline| now >= deadline) {
                    self.answer_error(sid, Status::DeadlineExceeded, "deadline exceeded");
                }
            } else if !stream.remote_closed {
                if stream.deadline.is_some_and(|deadline| now >= deadline) {
                    self.answer_error(sid, Status::DeadlineExceeded, "deadline exceeded");
                } else if now - stream.since > self.opts.request_timeout {
                    self.reset(sid, ErrorCode::Cancel);
                }
            }
        }
    }

    fn check_idle(&mut self, now: f64) {
        if !self.streams.is_empty() || self.last_sid != self.idle_mark {
            self.idle_mark = self.last_sid;
            self.idle_since = now;
        } else if now - self.idle_since > self.opts.idle_timeout {
            frame::goaway(&mut self.out, self.last_sid, ErrorCode::NoError, b"idle");
            self.close();
        }
    }

    /// Begin a graceful shutdown: GOAWAY(2^31-1) and a PING; the final GOAWAY (with the last
    /// stream id) follows the PING's ACK, or `tick` past the drain timeout; the connection
    /// closes once in-flight streams are answered. The first GOAWAY stops new streams without
    /// racing the ones already on the wire (RFC 9113 6.8).
    pub fn drain(&mut self, now: f64) {
        self.now = now;
        if self.closing || self.drain_deadline.is_some() || self.goaway_last.is_some() {
            return;
        }
        if self.phase == Phase::AwaitSettings {
            self.close();
            return;
        }
        frame::goaway(&mut self.out, STREAM_ID_MASK, ErrorCode::NoError, b"");
        frame::ping(&mut self.out, 0, DRAIN_PING);
        self.drain_deadline = Some(now + self.opts.drain_ping_timeout);
    }

    pub(super) fn final_goaway(&mut self) {
        self.drain_deadline = None;
        self.goaway_last = Some(self.last_sid);
        frame::goaway(&mut self.out, self.last_sid, ErrorCode::NoError, b"");
        if self.streams.is_empty() {
            self.close();
        }
    }

    /// The peer sends nothing more. True: it may still read, so keep the transport open until
    /// the calls it already made are answered (as if it had sent GOAWAY); false: close.
    pub fn eof(&mut self) -> bool {
        if self.closing || self.streams.is_empty() {
            self.close();
            return false;
        }
        self.peer_goaway = true;
        true
    }

    /// The transport is gone or dropped: nothing more to do.
    pub fn abort(&mut self) {
        self.close();
    }
}
