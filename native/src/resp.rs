//! RESP2, the Redis protocol: commands out, replies in.
//!
//! Encoding writes each command as an array of bulk strings, byte for byte as redis-py packs
//! it (`*<n>\r\n` then `$<len>\r\n<arg>\r\n` per argument, integers in decimal). Decoding reads
//! replies from untrusted bytes with bounded depth, and never allocates more than the input
//! could fill.

use std::fmt::Write as _;

/// Nested arrays deeper than this are refused (Redis replies to our commands are flat).
pub const MAX_DEPTH: usize = 8;
/// Redis' own ceiling for a bulk string (proto-max-bulk-len).
pub const MAX_BULK: usize = 512 * 1024 * 1024;

/// One reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Simple(Vec<u8>),
    Error(String),
    Int(i64),
    /// `None`: the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None`: the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as an integer: an integer reply, or a bulk string of one (as redis-py's
    /// `int(reply)` reads both).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            Reply::Bulk(Some(b)) | Reply::Simple(b) => {
                std::str::from_utf8(b).ok()?.trim().parse().ok()
            }
            _ => None,
        }
    }

    /// The reply as a float (`float(reply)`): a bulk string such as Lua's `%.17g`, or an integer.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Reply::Int(n) => Some(*n as f64),
            Reply::Bulk(Some(b)) | Reply::Simple(b) => {
                std::str::from_utf8(b).ok()?.trim().parse().ok()
            }
            _ => None,
        }
    }
}

/// Why bytes could not be read as replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed.
    Incomplete,
    /// Not RESP; the message says where and what.
    Invalid(String),
}

/// Builds one pipeline: commands appended in order.
#[derive(Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
    pub commands: usize,
}

/// An argument of a command.
pub enum Arg<'a> {
    Str(&'a str),
    Bytes(&'a [u8]),
    Int(i64),
}

impl Encoder {
    pub fn command(&mut self, args: &[Arg<'_>]) {
        let _ = write!(Bulk(&mut self.buf), "*{}\r\n", args.len());
        let mut digits = String::new();
        for arg in args {
            let bytes: &[u8] = match arg {
                Arg::Str(s) => s.as_bytes(),
                Arg::Bytes(b) => b,
                Arg::Int(n) => {
                    digits.clear();
                    let _ = write!(digits, "{n}");
                    digits.as_bytes()
                }
            };
            let _ = write!(Bulk(&mut self.buf), "${}\r\n", bytes.len());
            self.buf.extend_from_slice(bytes);
            self.buf.extend_from_slice(b"\r\n");
        }
        self.commands += 1;
    }
}

/// `fmt::Write` into a byte buffer.
struct Bulk<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bulk<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Read one reply from `buf` at `*pos`, moving `*pos` past it.
pub fn parse(buf: &[u8], pos: &mut usize) -> Result<Reply, ParseError> {
    parse_at(buf, pos, 0)
}

/// Read exactly `count` replies from `buf`; the bytes must hold nothing else.
pub fn parse_all(buf: &[u8], count: usize) -> Result<Vec<Reply>, ParseError> {
    let mut pos = 0;
    let mut out = Vec::with_capacity(count.min(buf.len() / 3 + 1));
    for _ in 0..count {
        out.push(parse(buf, &mut pos)?);
    }
    if pos != buf.len() {
        return Err(ParseError::Invalid(format!(
            "{} bytes after the last of {count} replies",
            buf.len() - pos
        )));
    }
    Ok(out)
}

/// Where the `count`-th reply after `start` ends, or `None` while incomplete.
pub fn reply_end(buf: &[u8], count: usize, start: usize) -> Result<Option<usize>, String> {
    let mut pos = start;
    for _ in 0..count {
        match skip(buf, &mut pos, 0) {
            Ok(()) => {}
            Err(ParseError::Incomplete) => return Ok(None),
            Err(ParseError::Invalid(why)) => return Err(why),
        }
    }
    Ok(Some(pos))
}

fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Result<&'a [u8], ParseError> {
    let rest = buf.get(*pos..).unwrap_or_default();
    let end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or(ParseError::Incomplete)?;
    *pos += end + 2;
    Ok(&rest[..end])
}

fn number(text: &[u8], at: usize) -> Result<i64, ParseError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ParseError::Invalid(format!(
                "byte {at}: '{}' is not a number",
                String::from_utf8_lossy(text)
            ))
        })
}

/// A length field: -1 (null) or 0..=max.
fn length(text: &[u8], at: usize, max: usize) -> Result<Option<usize>, ParseError> {
    match number(text, at)? {
        -1 => Ok(None),
        n if n >= 0 && (n as u64) <= max as u64 => Ok(Some(n as usize)),
        n => Err(ParseError::Invalid(format!(
            "byte {at}: length {n} is out of range"
        ))),
    }
}

fn parse_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Reply, ParseError> {
    let at = *pos;
    let kind = *buf.get(at).ok_or(ParseError::Incomplete)?;
    *pos += 1;
    let text = line(buf, pos)?;
    match kind {
        b'+' => Ok(Reply::Simple(text.to_vec())),
        b'-' => Ok(Reply::Error(String::from_utf8_lossy(text).into_owned())),
        b':' => Ok(Reply::Int(number(text, at)?)),
        b'$' => {
            let Some(len) = length(text, at, MAX_BULK)? else {
                return Ok(Reply::Bulk(None));
            };
            let body = buf.get(*pos..).unwrap_or_default();
            if body.len() < len + 2 {
                return Err(ParseError::Incomplete);
            }
            if &body[len..len + 2] != b"\r\n" {
                return Err(ParseError::Invalid(format!(
                    "byte {at}: bulk string of {len} bytes not followed by CRLF"
                )));
            }
            *pos += len + 2;
            Ok(Reply::Bulk(Some(body[..len].to_vec())))
        }
        b'*' => {
            let Some(len) = length(text, at, i32::MAX as usize)? else {
                return Ok(Reply::Array(None));
            };
            if depth >= MAX_DEPTH {
                return Err(ParseError::Invalid(format!(
                    "byte {at}: arrays nested deeper than {MAX_DEPTH}"
                )));
            }
            // Each element takes at least 3 bytes: never reserve more than the input can fill.
            let mut items = Vec::with_capacity(len.min(buf.len().saturating_sub(*pos) / 3));
            for _ in 0..len {
                items.push(parse_at(buf, pos, depth + 1)?);
            }
            Ok(Reply::Array(Some(items)))
        }
        other => Err(ParseError::Invalid(format!(
            "byte {at}: {other:#04x} does not start a RESP2 reply"
        ))),
    }
}

/// Move past one reply without building it.
fn skip(buf: &[u8], pos: &mut usize, depth: usize) -> Result<(), ParseError> {
    let at = *pos;
    let kind = *buf.get(at).ok_or(ParseError::Incomplete)?;
    *pos += 1;
    let text = line(buf, pos)?;
    match kind {
        b'+' | b'-' => Ok(()),
        b':' => number(text, at).map(|_| ()),
        b'$' => {
            let Some(len) = length(text, at, MAX_BULK)? else {
                return Ok(());
            };
            if buf.len() < *pos + len + 2 {
                return Err(ParseError::Incomplete);
            }
            *pos += len + 2;
            Ok(())
        }
        b'*' => {
            let Some(len) = length(text, at, i32::MAX as usize)? else {
                return Ok(());
            };
            if depth >= MAX_DEPTH {
                return Err(ParseError::Invalid(format!(
                    "byte {at}: arrays nested deeper than {MAX_DEPTH}"
                )));
            }
            for _ in 0..len {
                skip(buf, pos, depth + 1)?;
            }
            Ok(())
        }
        other => Err(ParseError::Invalid(format!(
            "byte {at}: {other:#04x} does not start a RESP2 reply"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_packed_as_redis_py_packs_them() {
        let mut enc = Encoder::default();
        enc.command(&[Arg::Str("INCRBY"), Arg::Str("d_k_v_60"), Arg::Int(3)]);
        enc.command(&[Arg::Str("EXPIRE"), Arg::Bytes(b"d_k_v_60"), Arg::Int(-1)]);
        assert_eq!(
            enc.buf,
            b"*3\r\n$6\r\nINCRBY\r\n$8\r\nd_k_v_60\r\n$1\r\n3\r\n*3\r\n$6\r\nEXPIRE\r\n$8\r\nd_k_v_60\r\n$2\r\n-1\r\n"
        );
        assert_eq!(enc.commands, 2);
    }

    #[test]
    fn replies_of_every_kind() {
        let data =
            b":5\r\n+OK\r\n-ERR bad\r\n$-1\r\n$3\r\nabc\r\n*2\r\n:1\r\n$4\r\n1.25\r\n*-1\r\n";
        let replies = parse_all(data, 7).unwrap();
        assert_eq!(replies[0], Reply::Int(5));
        assert_eq!(replies[2], Reply::Error("ERR bad".into()));
        assert_eq!(replies[3], Reply::Bulk(None));
        assert_eq!(replies[4].as_int(), None);
        let Reply::Array(Some(items)) = &replies[5] else {
            panic!()
        };
        assert_eq!(
            (items[0].as_int(), items[1].as_float()),
            (Some(1), Some(1.25))
        );
        assert_eq!(replies[6], Reply::Array(None));
        assert_eq!(reply_end(data, 7, 0), Ok(Some(data.len())));
    }

    #[test]
    fn incomplete_and_invalid_input() {
        for cut in 1..12 {
            let data = b"*2\r\n:1\r\n$3\r\nabc\r\n";
            assert_eq!(
                parse_all(&data[..cut], 1),
                Err(ParseError::Incomplete),
                "cut at {cut}"
            );
            assert_eq!(reply_end(&data[..cut], 1, 0), Ok(None));
        }
        assert!(matches!(
            parse_all(b"?x\r\n", 1),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            parse_all(b"$3\r\nabcd\r\n", 1),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            parse_all(b"$-2\r\n", 1),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            parse_all(b":1\r\n:2\r\n", 1),
            Err(ParseError::Invalid(_))
        ));
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(matches!(
            parse_all(deep.as_bytes(), 1),
            Err(ParseError::Invalid(_))
        ));
        assert!(reply_end(deep.as_bytes(), 1, 0).is_err());
        // a huge announced array does not reserve memory it cannot fill
        assert_eq!(
            parse_all(b"*2147483647\r\n", 1),
            Err(ParseError::Incomplete)
        );
    }
}
