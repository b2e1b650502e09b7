//! Answers framed as aiohttp frames them: status line with the version of the request, the
//! handler's fields in order, then Content-Length, Date, Server and, when the connection's
//! state needs saying, Connection; the body unless the request was HEAD.

use std::time::{SystemTime, UNIX_EPOCH};

use super::head::Reply;
use super::text::http_date;

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
pub const JSON: &str = "application/json; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

/// What every answer of one server says the same way.
#[derive(Clone, Debug)]
pub struct Framing {
    /// The `Server` field (aiohttp's SERVER_SOFTWARE).
    pub server: String,
    /// Reason phrases by status (`http.HTTPStatus(status).phrase`, which changes between
    /// Python versions, so it comes from the running one).
    pub reasons: Vec<(u16, String)>,
}

impl Framing {
    fn reason(&self, status: u16) -> &str {
        self.reasons
            .iter()
            .find(|(s, _)| *s == status)
            .map_or("Unknown", |(_, r)| r.as_str())
    }

    /// Append the answer to `out`; `continue_first` puts the interim `100 Continue` before it.
    #[allow(clippy::too_many_arguments)]
    pub fn write<'a>(
        &self,
        out: &mut Vec<u8>,
        reply: Reply,
        continue_first: bool,
        status: u16,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &[u8],
    ) {
        if continue_first {
            out.extend_from_slice(CONTINUE);
        }
        let version = if reply.http10 { "1.0" } else { "1.1" };
        let mut head = format!("HTTP/{version} {status} {}\r\n", self.reason(status));
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        head.push_str("Content-Length: ");
        head.push_str(&body.len().to_string());
        head.push_str("\r\nDate: ");
        head.push_str(&http_date(now));
        head.push_str("\r\nServer: ");
        head.push_str(&self.server);
        head.push_str("\r\n");
        match (reply.keep_alive, reply.http10) {
            (true, true) => head.push_str("Connection: keep-alive\r\n"),
            (false, false) => head.push_str("Connection: close\r\n"),
            _ => {}
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        if !reply.head {
            out.extend_from_slice(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing() -> Framing {
        Framing {
            server: "Python/3.11 aiohttp/3.14.5".into(),
            reasons: vec![(200, "OK".into()), (429, "Too Many Requests".into())],
        }
    }

    fn text(reply: Reply, continue_first: bool, status: u16) -> String {
        let mut out = Vec::new();
        framing().write(
            &mut out,
            reply,
            continue_first,
            status,
            [("Content-Type", JSON), ("X-A", "1")],
            b"{}",
        );
        let text = String::from_utf8(out).unwrap();
        // the date is now's: replace it for the comparison
        let at = text.find("Date: ").unwrap();
        let end = at + text[at..].find("\r\n").unwrap();
        format!("{}Date: -{}", &text[..at], &text[end..])
    }

    #[test]
    fn framed_as_aiohttp_frames_it() {
        let keep = Reply {
            http10: false,
            keep_alive: true,
            head: false,
        };
        assert_eq!(
            text(keep, false, 200),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nX-A: 1\r\n\
             Content-Length: 2\r\nDate: -\r\nServer: Python/3.11 aiohttp/3.14.5\r\n\r\n{}"
        );
        let close = Reply {
            keep_alive: false,
            ..keep
        };
        assert!(text(close, false, 429).starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(text(close, false, 429).ends_with("aiohttp/3.14.5\r\nConnection: close\r\n\r\n{}"));
        let old = Reply {
            http10: true,
            ..keep
        };
        assert!(text(old, false, 200).ends_with("\r\nConnection: keep-alive\r\n\r\n{}"));
        let old_close = Reply {
            http10: true,
            keep_alive: false,
            head: false,
        };
        assert!(text(old_close, false, 200).ends_with("aiohttp/3.14.5\r\n\r\n{}"));
        let head = Reply { head: true, ..keep };
        assert!(text(head, false, 200).ends_with(
            "Content-Length: 2\r\nDate: -\r\nServer: Python/3.11 aiohttp/3.14.5\r\n\r\n"
        ));
        assert!(
            text(keep, true, 200).starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
        );
        assert!(text(keep, false, 418).starts_with("HTTP/1.1 418 Unknown\r\n"));
    }
}
