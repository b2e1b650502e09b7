//! The request head: request line and header fields, parsed by `httparse` and then held to the
//! rules of the general path's parser (llhttp in strict mode, as aiohttp runs it).
//!
//! The fast path answers only heads it is sure the general path would accept and read the
//! same way; anything else is `Handoff`: the general path then parses those bytes itself and
//! answers (or refuses) them as it always does. So an unusual or malformed head costs nothing
//! in parity: it is never answered by this code.

use httparse::{Request, Status, EMPTY_HEADER};

/// Headers one request may have here; more go to the general path (aiohttp allows 128).
pub const MAX_HEADERS: usize = 64;
/// A head longer than this goes to the general path.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A request target, or a field's name and value together, longer than this go to the
/// general path, which refuses those over 8190 bytes (its max_line_size, max_field_size).
pub const MAX_FIELD_BYTES: usize = 8000;

/// Fields aiohttp refuses to see twice in one request (`SINGLETON_HEADERS`).
const SINGLETONS: [&str; 10] = [
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "etag",
    "host",
    "max-forwards",
    "server",
    "transfer-encoding",
    "user-agent",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    fn parse(name: &str) -> Option<Method> {
        Some(match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

/// How the body of a request is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
}

/// What the answer to a request must say about the connection (and whether it has a body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub http10: bool,
    pub keep_alive: bool,
    pub head: bool,
}

#[derive(Debug)]
pub struct Head<'b> {
    pub method: Method,
    pub path: &'b str,
    pub query: &'b str,
    pub reply: Reply,
    pub framing: Framing,
    /// `Expect: 100-continue` on HTTP/1.1: the general path sends the interim answer when it
    /// starts the request, so this path does too.
    pub expect_continue: bool,
    /// Every field in order, names as sent, values without surrounding blanks.
    pub headers: Vec<(&'b str, &'b str)>,
    /// Bytes of the head, the blank line included.
    pub len: usize,
}

impl<'b> Head<'b> {
    /// The first field named `name` (ASCII case-insensitive), as aiohttp's `headers.get`.
    pub fn header(&self, name: &str) -> Option<&'b str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

#[derive(Debug)]
pub enum Parsed<'b> {
    /// The head is not complete yet.
    Partial,
    /// The general path must read these bytes.
    Handoff,
    Complete(Head<'b>),
}

/// The head at the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Parsed<'_> {
    if matches!(buf.first(), Some(b'\r' | b'\n')) {
        return Parsed::Handoff;
    }
    let mut fields = [EMPTY_HEADER; MAX_HEADERS];
    let mut request = Request::new(&mut fields);
    let len = match request.parse(buf) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Parsed::Partial,
        _ => return Parsed::Handoff,
    };
    if len > MAX_HEAD_BYTES || has_bare_lf(&buf[..len]) {
        return Parsed::Handoff;
    }
    match build(&request, len) {
        Some(head) => Parsed::Complete(head),
        None => Parsed::Handoff,
    }
}

/// llhttp (strict) wants CRLF line ends; httparse also takes a lone LF.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

fn build<'b>(request: &Request<'_, 'b>, len: usize) -> Option<Head<'b>> {
    let method = Method::parse(request.method?)?;
    let target = request.path?;
    if target.len() > MAX_FIELD_BYTES {
        return None;
    }
    // origin-form only, printable ASCII, no fragment: anything else is the general path's.
    if !target.starts_with('/') || !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return None;
    }
    if target.contains('#') {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let http10 = request.version? == 0;
    let mut fields = Fields::default();
    let mut headers = Vec::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        if field.name.len() + field.value.len() > MAX_FIELD_BYTES {
            return None;
        }
        let value = field_value(field.value)?;
        fields.note(field.name, value, http10)?;
        headers.push((field.name, value));
    }
    if !http10 && !fields.host {
        return None; // aiohttp: "Missing 'Host' header in request."
    }
    let framing = match (fields.length, fields.chunked) {
        (Some(_), true) => return None,
        (_, true) if http10 => return None,
        (_, true) => Framing::Chunked,
        (length, false) => Framing::Length(length.unwrap_or(0)),
    };
    let keep_alive = if http10 {
        fields.keep_alive
    } else {
        !fields.close
    };
    Some(Head {
        method,
        path,
        query,
        reply: Reply {
            http10,
            keep_alive,
            head: method == Method::Head,
        },
        framing,
        expect_continue: fields.expect_continue,
        headers,
        len,
    })
}

/// A field value the general path reads as the same text: visible ASCII, spaces and tabs
/// (NUL and other controls are refused there; bytes past ASCII are decoded there).
fn field_value(raw: &[u8]) -> Option<&str> {
    if !raw.iter().all(|b| *b == b'\t' || (0x20..0x7f).contains(b)) {
        return None;
    }
    let text = std::str::from_utf8(raw).ok()?;
    Some(text.trim_matches(|c| c == ' ' || c == '\t'))
}

#[derive(Default)]
struct Fields {
    seen: [bool; SINGLETONS.len()],
    host: bool,
    length: Option<usize>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    expect_seen: bool,
}

impl Fields {
    /// Take note of one field; `None` when the request is the general path's to read.
    fn note(&mut self, name: &str, value: &str, http10: bool) -> Option<()> {
        if let Some(i) = SINGLETONS.iter().position(|s| name.eq_ignore_ascii_case(s)) {
            if std::mem::replace(&mut self.seen[i], true) {
                return None; // "Duplicate '…' header found."
            }
        }
        let is = |wanted: &str| name.eq_ignore_ascii_case(wanted);
        if is("host") {
            self.host = true;
        } else if is("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.len() > 15 {
                return None;
            }
            self.length = Some(value.parse().ok()?);
        } else if is("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return None;
            }
            self.chunked = true;
        } else if is("connection") {
            for token in value.split(',').map(|t| t.trim_matches([' ', '\t'])) {
                if token.eq_ignore_ascii_case("close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    self.keep_alive = true;
                } else if token.eq_ignore_ascii_case("upgrade") {
                    return None;
                }
            }
        } else if is("upgrade") || is("content-encoding") || is("sec-websocket-key1") {
            // a protocol switch, or a body aiohttp would decompress first
            return None;
        } else if is("expect") && !http10 {
            if self.expect_seen || !value.eq_ignore_ascii_case("100-continue") {
                return None; // the general path answers 417 (or reads the first one)
            }
            self.expect_seen = true;
            self.expect_continue = true;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head<'_> {
        match parse_head(text.as_bytes()) {
            Parsed::Complete(head) => head,
            other => panic!("{other:?}"),
        }
    }

    fn handoff(text: &str) -> bool {
        matches!(parse_head(text.as_bytes()), Parsed::Handoff)
    }

    #[test]
    fn a_plain_post() {
        let h = head("POST /v1/check?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n{}");
        assert_eq!(h.method, Method::Post);
        assert_eq!((h.path, h.query), ("/v1/check", "x=1"));
        assert_eq!(h.framing, Framing::Length(12));
        assert_eq!(
            h.reply,
            Reply {
                http10: false,
                keep_alive: true,
                head: false
            }
        );
        assert_eq!(h.len, 60);
        assert_eq!(h.header("content-LENGTH"), Some("12"));
    }

    #[test]
    fn keep_alive_rules() {
        assert!(
            !head("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .reply
                .keep_alive
        );
        assert!(!head("GET / HTTP/1.0\r\n\r\n").reply.keep_alive);
        assert!(
            head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .reply
                .keep_alive
        );
        assert!(
            head("GET / HTTP/1.1\r\nHost: a\r\nConnection: x, keep-alive\r\n\r\n")
                .reply
                .keep_alive
        );
    }

    #[test]
    fn expect_continue() {
        assert!(head("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n").expect_continue);
        assert!(!head("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
        assert!(handoff(
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"
        ));
    }

    #[test]
    fn partial_heads_wait_and_long_ones_are_handed_off() {
        assert!(matches!(
            parse_head(b"POST /v1/check HTTP/1.1\r\nHo"),
            Parsed::Partial
        ));
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert!(handoff(&long));
        let field = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_FIELD_BYTES)
        );
        assert!(handoff(&field));
        let target = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(MAX_FIELD_BYTES)
        );
        assert!(handoff(&target));
    }

    #[test]
    fn what_the_general_path_reads_differently_is_handed_off() {
        for text in [
            "GET / HTTP/1.1\r\n\r\n",                                  // no Host
            "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",                   // leading blank line
            "GET / HTTP/1.1\nHost: a\n\n",                             // bare LF
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",            // duplicate singleton
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", // odd length
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
            "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Encoding: gzip\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: caf\u{e9}\r\n\r\n", // obs-text
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",         // absolute-form
            "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
            "BREW / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(handoff(text), "{text:?}");
        }
    }

    #[test]
    fn values_lose_surrounding_blanks() {
        let h = head("GET / HTTP/1.1\r\nHost: a\r\nX-Id:  \t u1 \t\r\n\r\n");
        assert_eq!(h.header("x-id"), Some("u1"));
    }
}
