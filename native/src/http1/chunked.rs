//! Chunked request bodies (RFC 9112 7.1), decoded as they arrive.
//!
//! Only the plain form is read here: hex sizes without extensions and no trailer fields.
//! Anything else (and a body over the route's limit) is `Handoff`, so the general path reads
//! it and answers what it always answers.

/// A size line longer than this is not a size line.
const MAX_SIZE_LINE: usize = 18;

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The body is complete; this many bytes (after the head) were its encoding.
    Done(usize),
    Partial,
    Handoff,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    /// Bytes left in the current chunk's data.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The CRLF after the last (empty) chunk: no trailer fields are read here.
    Last,
}

#[derive(Debug, Default)]
pub struct Chunked {
    /// Next byte to read, relative to the end of the head.
    pos: usize,
    state: State,
    pub body: Vec<u8>,
}

impl Chunked {
    /// Decode what `data` (every byte after the head so far) adds; `limit` caps the body.
    pub fn step(&mut self, data: &[u8], limit: usize) -> Step {
        loop {
            let rest = &data[self.pos..];
            match self.state {
                State::Size => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        return if rest.len() > MAX_SIZE_LINE {
                            Step::Handoff
                        } else {
                            Step::Partial
                        };
                    };
                    let Some(size) = parse_size(&rest[..end]) else {
                        return Step::Handoff;
                    };
                    if size > limit.saturating_sub(self.body.len()) {
                        return Step::Handoff;
                    }
                    self.pos += end + 2;
                    self.state = if size == 0 {
                        State::Last
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    let take = left.min(rest.len());
                    self.body.extend_from_slice(&rest[..take]);
                    self.pos += take;
                    if take < left {
                        self.state = State::Data(left - take);
                        return Step::Partial;
                    }
                    self.state = State::DataEnd;
                }
                State::DataEnd | State::Last => {
                    match crlf(rest) {
                        Some(true) => self.pos += 2,
                        Some(false) => return Step::Handoff,
                        None => return Step::Partial,
                    }
                    if self.state == State::Last {
                        return Step::Done(self.pos);
                    }
                    self.state = State::Size;
                }
            }
        }
    }
}

/// Whether `rest` starts with CRLF; `None` while it may still.
fn crlf(rest: &[u8]) -> Option<bool> {
    match rest {
        [b'\r', b'\n', ..] => Some(true),
        [] | [b'\r'] => None,
        _ => Some(false),
    }
}

fn parse_size(line: &[u8]) -> Option<usize> {
    if line.is_empty() || line.len() > 16 || !line.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    usize::from_str_radix(std::str::from_utf8(line).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(parts: &[&[u8]], limit: usize) -> (Step, Vec<u8>) {
        let mut c = Chunked::default();
        let mut data = Vec::new();
        let mut last = Step::Partial;
        for part in parts {
            data.extend_from_slice(part);
            last = c.step(&data, limit);
            if last != Step::Partial {
                break;
            }
        }
        (last, c.body)
    }

    #[test]
    fn whole_and_split() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT";
        assert_eq!(
            decode(&[body], 100),
            (Step::Done(body.len() - 4), b"hello world".to_vec())
        );
        let parts: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(
            decode(&parts, 100),
            (Step::Done(body.len() - 4), b"hello world".to_vec())
        );
    }

    #[test]
    fn limits_and_odd_forms_are_handed_off() {
        assert_eq!(
            decode(&[b"b\r\nhello world\r\n0\r\n\r\n"], 10).0,
            Step::Handoff
        );
        assert_eq!(
            decode(&[b"5;ext=1\r\nhello\r\n0\r\n\r\n"], 100).0,
            Step::Handoff
        );
        assert_eq!(
            decode(&[b"5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n"], 100).0,
            Step::Handoff
        );
        assert_eq!(decode(&[b"5\r\nhelloXX0\r\n\r\n"], 100).0, Step::Handoff);
        assert_eq!(decode(&[b"5 \r\nhello\r\n0\r\n\r\n"], 100).0, Step::Handoff);
        assert_eq!(decode(&[b"0000000000000000005\r\n"], 100).0, Step::Handoff);
        assert_eq!(decode(&[&[b'1'; 40]], 100).0, Step::Handoff);
    }

    #[test]
    fn incomplete_is_partial() {
        assert_eq!(decode(&[b"5\r\nhel"], 100).0, Step::Partial);
        assert_eq!(decode(&[b"5\r\nhello\r"], 100).0, Step::Partial);
        assert_eq!(decode(&[b"5\r\nhello\r\n0\r\n\r"], 100).0, Step::Partial);
    }
}
