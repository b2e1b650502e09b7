//! One connection's bytes → its requests, in order, with keep-alive and pipelining.
//!
//! A read buffer may hold several requests, or part of one: `Conn::feed` hands every complete
//! request on a fast route to its sink, keeps an incomplete tail for the next read, and stops
//! at the first request the fast path does not answer, returning the bytes from that request
//! on: the general path then reads the rest of the connection. Bytes are copied only when a
//! request spans two reads.

use std::borrow::Cow;

use super::chunked::{Chunked, Step};
use super::head::{parse_head, Framing, Head, Parsed, MAX_HEAD_BYTES};
use super::routes::{Route, Routes};

/// One complete request on a fast route.
pub struct Request<'b> {
    pub route: Route,
    pub head: Head<'b>,
    pub body: Cow<'b, [u8]>,
    /// The answer must start with `100 Continue` (the general path sends it when it starts
    /// the request, and has not yet).
    pub continue_first: bool,
}

pub enum Event<'b> {
    /// `HTTP/1.1 100 Continue` is due now: the body has not all come yet.
    Continue,
    Request(Request<'b>),
}

/// How a feed ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Waiting for more bytes.
    Open,
    /// The last request did not keep the connection alive: close once it is answered (bytes
    /// after it are never read, as on the general path).
    Close,
    /// These bytes, from the start of a request the fast path does not answer, are the
    /// general path's, with the rest of the connection.
    Handoff(Vec<u8>),
}

/// The head of a request whose body is still coming.
#[derive(Clone, Copy)]
struct Waiting {
    head_len: usize,
    route: Route,
    framing: Framing,
    expect_continue: bool,
}

#[derive(Default)]
struct Reader {
    waiting: Option<Waiting>,
    chunked: Option<Chunked>,
    /// `100 Continue` was sent for the request being read.
    continued: bool,
    /// Bytes of the buffer already searched for the end of a head.
    scanned: usize,
    /// Bytes of an incomplete head when it was last parsed.
    checked: usize,
}

pub struct Conn {
    routes: Routes,
    buf: Vec<u8>,
    reader: Reader,
    ended: bool,
}

impl Conn {
    pub fn new(routes: Routes) -> Conn {
        Conn {
            routes,
            buf: Vec::new(),
            reader: Reader::default(),
            ended: false,
        }
    }

    /// Bytes held for a request not complete yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Read `data`, handing each complete request to `sink` in order.
    ///
    /// When the read holds a request the fast path does not answer, none of the requests
    /// completed by this read are answered here: the general path reads the whole read (with
    /// any bytes held from earlier ones), as it would have. That keeps its way with a read
    /// that mixes good requests and a malformed one (llhttp refuses the whole read, and
    /// aiohttp answers only the refusal).
    pub fn feed(&mut self, data: &[u8], sink: &mut dyn FnMut(Event<'_>)) -> End {
        if self.ended {
            return End::Close;
        }
        let held = !self.buf.is_empty();
        if held {
            self.buf.extend_from_slice(data);
        }
        let Conn {
            buf,
            reader,
            routes,
            ..
        } = self;
        let bytes: &[u8] = if held { buf } else { data };
        let mut events = Vec::new();
        let (consumed, run) = reader.run(bytes, routes, &mut |event| events.push(event));
        if run == Run::Handoff {
            let all = bytes.to_vec();
            drop(events);
            self.ended = true;
            self.buf = Vec::new();
            return End::Handoff(all);
        }
        for event in events {
            sink(event);
        }
        if run == Run::Close {
            self.ended = true;
            self.buf = Vec::new();
            return End::Close;
        }
        if held {
            self.buf.drain(..consumed);
        } else {
            self.buf.extend_from_slice(&data[consumed..]);
        }
        End::Open
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Run {
    Open,
    Close,
    Handoff,
}

impl Reader {
    /// Read the requests at the start of `buf`: the bytes consumed, and how it ended (on
    /// Handoff, the bytes consumed are those before the request handed off).
    fn run<'b>(
        &mut self,
        buf: &'b [u8],
        routes: &Routes,
        sink: &mut dyn FnMut(Event<'b>),
    ) -> (usize, Run) {
        let mut pos = 0;
        while pos < buf.len() {
            match self.one(&buf[pos..], routes, sink) {
                One::Wait => break,
                One::Handoff => return (pos, Run::Handoff),
                One::Done(len, keep_alive) => {
                    pos += len;
                    if !keep_alive {
                        return (pos, Run::Close);
                    }
                }
            }
        }
        (pos, Run::Open)
    }

    fn one<'b>(&mut self, buf: &'b [u8], routes: &Routes, sink: &mut dyn FnMut(Event<'b>)) -> One {
        let waiting = match self.waiting {
            Some(waiting) => waiting,
            None => match self.head(buf, routes) {
                Some(Ok(waiting)) => waiting,
                Some(Err(())) => return One::Handoff,
                None => return One::Wait,
            },
        };
        let after_head = &buf[waiting.head_len..];
        let limit = routes.body_limit(waiting.route);
        let (body, len): (Cow<'b, [u8]>, usize) = match waiting.framing {
            Framing::Length(n) if after_head.len() >= n => (Cow::Borrowed(&after_head[..n]), n),
            Framing::Length(_) => return self.wait(waiting, sink),
            Framing::Chunked => {
                let decoder = self.chunked.get_or_insert_with(Chunked::default);
                match decoder.step(after_head, limit) {
                    Step::Done(n) => (Cow::Owned(std::mem::take(&mut decoder.body)), n),
                    Step::Partial => return self.wait(waiting, sink),
                    Step::Handoff => return One::Handoff,
                }
            }
        };
        let Parsed::Complete(head) = parse_head(buf) else {
            unreachable!("a head parsed once parses again the same");
        };
        if !head.reply.keep_alive && buf.len() > waiting.head_len + len {
            // llhttp refuses bytes after a request that closes the connection (the whole
            // read, that request included): the general path's answer.
            return One::Handoff;
        }
        let continue_first = head.expect_continue && !self.continued;
        let keep_alive = head.reply.keep_alive;
        *self = Reader::default();
        sink(Event::Request(Request {
            route: waiting.route,
            head,
            body,
            continue_first,
        }));
        One::Done(waiting.head_len + len, keep_alive)
    }

    /// The head at the start of `buf` as a request to read: `None` while incomplete,
    /// `Err` when the general path must read it.
    fn head(&mut self, buf: &[u8], routes: &Routes) -> Option<Result<Waiting, ()>> {
        // Look for the blank line only in bytes not searched yet: a head sent a byte at a
        // time costs its length, not its length squared.
        if !head_ended(buf, self.scanned) {
            // A head still coming is parsed now and then (its first bytes, then each KiB),
            // so bytes that are not HTTP go to the general path at once, as llhttp refuses
            // them at once, without a head sent a byte at a time costing its length squared.
            let check = self.checked == 0 || buf.len() >= self.checked + 1024;
            self.scanned = buf.len();
            if buf.len() > MAX_HEAD_BYTES || check && matches!(parse_head(buf), Parsed::Handoff) {
                return Some(Err(()));
            }
            if check {
                self.checked = buf.len();
            }
            return None;
        }
        let head = match parse_head(buf) {
            Parsed::Complete(head) => head,
            Parsed::Partial => return None,
            Parsed::Handoff => return Some(Err(())),
        };
        let Some(route) = routes.route(head.method, head.path) else {
            return Some(Err(()));
        };
        if matches!(head.framing, Framing::Length(n) if n > routes.body_limit(route)) {
            return Some(Err(()));
        }
        let waiting = Waiting {
            head_len: head.len,
            route,
            framing: head.framing,
            expect_continue: head.expect_continue,
        };
        self.waiting = Some(waiting);
        Some(Ok(waiting))
    }

    fn wait<'b>(&mut self, waiting: Waiting, sink: &mut dyn FnMut(Event<'b>)) -> One {
        self.waiting = Some(waiting);
        if waiting.expect_continue && !self.continued {
            self.continued = true;
            sink(Event::Continue);
        }
        One::Wait
    }
}

/// Whether `buf` holds a blank line (CRLF CRLF, or a bare LF LF the parser then refuses),
/// searching from about `from`.
fn head_ended(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(3).max(1);
    (start..buf.len()).any(|i| {
        buf[i] == b'\n' && (buf[i - 1] == b'\n' || (i >= 3 && &buf[i - 3..i] == b"\r\n\r"))
    })
}

enum One {
    Wait,
    Handoff,
    /// A request was read: its length, and whether the connection stays open after it.
    Done(usize, bool),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes {
            full: false,
            max_body_bytes: 64,
            json_max_body_bytes: 128,
        }
    }

    /// What a connection makes of `reads`: one line per event, and how the last read ended.
    fn run(reads: &[&[u8]]) -> (Vec<String>, End) {
        let mut conn = Conn::new(routes());
        let mut seen = Vec::new();
        let mut end = End::Open;
        for data in reads {
            end = conn.feed(data, &mut |event| {
                seen.push(match event {
                    Event::Continue => "continue".to_owned(),
                    Event::Request(r) => format!(
                        "{} {}{} {}",
                        r.route.name(),
                        String::from_utf8_lossy(&r.body),
                        if r.continue_first { " +100" } else { "" },
                        if r.head.reply.keep_alive {
                            "ka"
                        } else {
                            "close"
                        },
                    ),
                });
            });
        }
        (seen, end)
    }

    const CHECK: &[u8] = b"POST /v1/check HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}";

    #[test]
    fn pipelined_in_one_read() {
        let data = [
            CHECK,
            CHECK,
            b"GET /v1/forward-auth HTTP/1.1\r\nHost: a\r\n\r\n",
        ]
        .concat();
        let (seen, end) = run(&[&data]);
        assert_eq!(seen, ["check {} ka", "check {} ka", "forward_auth  ka"]);
        assert_eq!(end, End::Open);
    }

    #[test]
    fn split_at_every_byte() {
        let data = [CHECK, CHECK].concat();
        let reads: Vec<&[u8]> = data.chunks(1).collect();
        let (seen, end) = run(&reads);
        assert_eq!(seen, ["check {} ka", "check {} ka"]);
        assert_eq!(end, End::Open);
    }

    #[test]
    fn chunked_bodies_across_reads() {
        let (seen, _) = run(&[
            b"POST /v1/report HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{",
            b"\r\n1\r\n}\r\n0\r\n",
            b"\r\n",
        ]);
        assert_eq!(seen, ["report {} ka"]);
    }

    #[test]
    fn continue_is_sent_once_when_the_body_waits() {
        let head = b"POST /v1/check HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let (seen, _) = run(&[head, b"{", b"}"]);
        assert_eq!(seen, ["continue", "check {} ka"]);
        let (seen, _) = run(&[&[&head[..], b"{}"].concat()]);
        assert_eq!(seen, ["check {} +100 ka"]);
    }

    #[test]
    fn close_ends_the_reading() {
        let close = b"POST /v1/check HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}";
        let (seen, end) = run(&[CHECK, close, CHECK]);
        assert_eq!(seen, ["check {} ka", "check {} close"]);
        assert_eq!(end, End::Close);
        // bytes after it in the same read: the general path refuses them all
        let all = [CHECK, close, CHECK].concat();
        let (seen, end) = run(&[&all]);
        assert!(seen.is_empty());
        assert_eq!(end, End::Handoff(all));
    }

    #[test]
    fn the_rest_is_handed_off_from_the_first_other_request() {
        let other = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
        // the whole read goes: requests completed by it are not answered here
        let data = [CHECK, other, CHECK].concat();
        let (seen, end) = run(&[&data]);
        assert!(seen.is_empty());
        assert_eq!(end, End::Handoff(data));
        // requests of earlier reads were answered; the bytes held so far go along
        let (seen, end) = run(&[CHECK, b"GET /met", b"rics HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert_eq!(seen, ["check {} ka"]);
        assert_eq!(end, End::Handoff(other.to_vec()));
    }

    #[test]
    fn bodies_over_the_limit_are_handed_off() {
        let big = format!(
            "POST /v1/check HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n{}",
            "x".repeat(65)
        );
        let (seen, end) = run(&[big.as_bytes()]);
        assert!(seen.is_empty());
        assert_eq!(end, End::Handoff(big.into_bytes()));
        let chunked =
            b"POST /v1/check HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n";
        assert!(matches!(run(&[chunked]).1, End::Handoff(_)));
    }

    #[test]
    fn garbage_is_handed_off() {
        assert!(matches!(
            run(&[b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]).1,
            End::Handoff(_)
        ));
        assert!(matches!(
            run(&[b"POST /v1/check HTTP/1.1\r\nHost: a\r\nX Y: 1\r\n"]).1,
            End::Handoff(_)
        ));
        let endless = vec![b'A'; MAX_HEAD_BYTES + 1];
        assert!(matches!(run(&[&endless]).1, End::Handoff(_)));
        assert_eq!(run(&[&endless[..100]]).1, End::Open);
    }

    #[test]
    fn nothing_is_read_after_the_end() {
        let mut conn = Conn::new(routes());
        let other = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(matches!(conn.feed(other, &mut |_| {}), End::Handoff(_)));
        let mut called = false;
        assert_eq!(conn.feed(CHECK, &mut |_| called = true), End::Close);
        assert!(!called);
    }
}
