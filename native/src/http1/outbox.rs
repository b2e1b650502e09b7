//! One connection's answers, in the order of its requests.
//!
//! Each request read takes the next slot: answered at once (an answer made while reading, an
//! interim `100 Continue`), or waiting (for Python to answer it, or for a Redis batch). The
//! bytes that may be sent are the answers at the front up to the first one still waiting, so
//! a pipelined client gets its answers in order however they complete.

use std::collections::VecDeque;

enum Slot {
    Ready(Vec<u8>),
    Waiting(u64),
}

#[derive(Default)]
pub struct Outbox {
    slots: VecDeque<Slot>,
    next_id: u64,
}

impl Outbox {
    /// An answer made already.
    pub fn ready(&mut self, bytes: Vec<u8>) {
        match self.slots.back_mut() {
            // Joined to the answer before it when that one is ready too: one write for both.
            Some(Slot::Ready(last)) => last.extend_from_slice(&bytes),
            _ => self.slots.push_back(Slot::Ready(bytes)),
        }
    }

    /// A slot for an answer made later; its id for `fill`.
    pub fn wait(&mut self) -> u64 {
        self.next_id += 1;
        self.slots.push_back(Slot::Waiting(self.next_id));
        self.next_id
    }

    /// The answer of slot `id`; false when there is no such slot waiting.
    pub fn fill(&mut self, id: u64, bytes: Vec<u8>) -> bool {
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| matches!(s, Slot::Waiting(w) if *w == id))
        else {
            return false;
        };
        *slot = Slot::Ready(bytes);
        true
    }

    /// The bytes that may be sent now: every answer at the front that is ready.
    pub fn take_ready(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(Slot::Ready(_)) = self.slots.front() {
            if let Some(Slot::Ready(bytes)) = self.slots.pop_front() {
                if out.is_empty() {
                    out = bytes;
                } else {
                    out.extend_from_slice(&bytes);
                }
            }
        }
        out
    }

    /// Answers not yet sent (ready or waiting).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Answers still waiting.
    pub fn waiting(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Waiting(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_leave_in_request_order() {
        let mut out = Outbox::default();
        out.ready(b"a".to_vec());
        let b = out.wait();
        out.ready(b"c".to_vec());
        let d = out.wait();
        out.ready(b"e".to_vec());
        out.ready(b"f".to_vec());
        assert_eq!(out.take_ready(), b"a");
        assert!(out.fill(d, b"d".to_vec()));
        assert_eq!(out.take_ready(), b"");
        assert_eq!(out.waiting(), 1);
        assert!(out.fill(b, b"b".to_vec()));
        assert_eq!(out.take_ready(), b"bcdef");
        assert!(out.is_empty());
        assert!(!out.fill(b, b"again".to_vec()));
    }
}
