//! Receive-side flow control of one connection (RFC 9113 6.9).

use super::error::{ErrorCode, H2Error, H2Result};
use super::frame::{window_update, DEFAULT_WINDOW};

/// How much the peer may still send, and the credit we give back.
///
/// Credit goes back in WINDOW_UPDATEs of half a window, so a steady stream of small requests
/// costs one WINDOW_UPDATE per half window rather than one per request. Request bytes held for
/// incomplete streams are counted: past `max_buffered` their credit is withheld until bodies
/// are consumed, so a connection never holds more than max_buffered + one window.
#[derive(Clone, Debug)]
pub struct ReceiveWindow {
    pub window: i64,
    /// Request bytes held for incomplete streams.
    pub buffered: i64,
    threshold: i64,
    /// Credit not yet returned.
    unacked: i64,
    /// Credit held back while `buffered` is over the limit.
    withheld: i64,
    max_buffered: i64,
}

impl ReceiveWindow {
    pub fn new(window: i64, max_buffered: i64) -> ReceiveWindow {
        let window = window.max(DEFAULT_WINDOW);
        ReceiveWindow { window, buffered: 0, threshold: (window / 2).max(1), unacked: 0,
                        withheld: 0, max_buffered }
    }

    /// A flow-controlled frame of `size` bytes (padding included) arrived.
    pub fn consume(&mut self, size: usize) -> H2Result<()> {
        self.window -= size as i64;
        if self.window < 0 {
            return Err(H2Error::connection(ErrorCode::FlowControlError,
                                           "connection window exceeded"));
        }
        Ok(())
    }

    /// `size` bytes were consumed or discarded: the peer may send them again.
    pub fn credit(&mut self, out: &mut Vec<u8>, size: i64) {
        let mut size = size + self.unacked;
        if size >= self.threshold {
            self.window += size;
            window_update(out, 0, size as u32);
            size = 0;
        }
        self.unacked = size;
    }

    /// `held` bytes of a `size`-byte frame are kept in a request body.
    pub fn keep(&mut self, out: &mut Vec<u8>, held: usize, size: usize) {
        self.buffered += held as i64;
        if self.buffered > self.max_buffered {
            self.withheld += size as i64;
        } else {
            self.credit(out, size as i64);
        }
    }

    /// A body of `held` bytes was consumed or dropped.
    pub fn release(&mut self, out: &mut Vec<u8>, held: usize) {
        self.buffered -= held as i64;
        if self.withheld != 0 && self.buffered <= self.max_buffered {
            let withheld = std::mem::take(&mut self.withheld);
            self.credit(out, withheld);
        }
    }
}
