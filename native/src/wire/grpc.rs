//! gRPC over HTTP/2 (the PROTOCOL-HTTP2 spec): status codes, timeouts, message framing and the
//! header blocks of answers, all built from static-indexed and literal-without-indexing fields
//! so that answering a call encodes no header at all.

use super::hpack::encode_block;

pub const CONTENT_TYPE: &[u8] = b"application/grpc";
/// grpc-message is for humans: keep it (and the header block) small.
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// :status 200 and content-type: the first HEADERS of every successful call.
pub const RESPONSE_HEADERS: &[u8] = b"\x88\x0f\x10\x10application/grpc";
/// grpc-status 0: the trailers of every successful call.
pub const TRAILERS_OK: &[u8] = b"\x00\x0bgrpc-status\x010";

/// grpc.StatusCode numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Status {
    pub fn from_code(code: u64) -> Option<Status> {
        use Status::*;
        const ALL: [Status; 17] = [Ok, Cancelled, Unknown, InvalidArgument, DeadlineExceeded,
                                   NotFound, AlreadyExists, PermissionDenied, ResourceExhausted,
                                   FailedPrecondition, Aborted, OutOfRange, Unimplemented,
                                   Internal, Unavailable, DataLoss, Unauthenticated];
        ALL.get(usize::try_from(code).ok()?).copied()
    }
}

/// A call that ends with a status other than OK: the code and the message for grpc-message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcError {
    pub status: Status,
    pub message: String,
}

impl GrpcError {
    pub fn new(status: Status, message: impl Into<String>) -> GrpcError {
        GrpcError { status, message: message.into() }
    }
}

fn unreserved(byte: u8) -> bool {
    (0x20..0x7F).contains(&byte) && byte != b'%'
}

/// grpc-message encoding: UTF-8, then %XX for every byte outside 0x20..0x7E and for '%'.
pub fn percent_encode(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    for &byte in message.as_bytes() {
        if unreserved(byte) {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
    }
    out
}

/// A call that ends without a message: one HEADERS block with END_STREAM carrying the
/// response headers and the status together (the spec's Trailers-Only form).
pub fn trailers_only(status: Status, message: &str) -> Vec<u8> {
    let code = (status as u8).to_string();
    let mut fields: Vec<(&[u8], &[u8])> = vec![(b":status", b"200"), (b"content-type", CONTENT_TYPE),
                                               (b"grpc-status", code.as_bytes())];
    let encoded;
    if !message.is_empty() {
        let cut = message.char_indices().nth(MAX_STATUS_MESSAGE).map_or(message.len(), |(i, _)| i);
        encoded = percent_encode(&message[..cut]);
        fields.push((b"grpc-message", &encoded));
    }
    encode_block(&fields)
}

/// (header block, body) for a request that is not gRPC at all, e.g. a browser's GET: an HTTP
/// error status, so no client mistakes it for a gRPC answer.
pub fn http_error(status: u16, text: &str) -> (Vec<u8>, Vec<u8>) {
    let body = format!("{text}\n").into_bytes();
    let status = status.to_string();
    let length = body.len().to_string();
    let block = encode_block(&[(b":status", status.as_bytes()),
                               (b"content-type", b"text/plain; charset=utf-8"),
                               (b"content-length", length.as_bytes())]);
    (block, body)
}

/// grpc-timeout ("TimeoutValue TimeoutUnit": at most 8 ASCII digits and one of HMSmun) in
/// seconds; the error message when malformed.
pub fn parse_timeout(value: &[u8]) -> Result<f64, String> {
    let unit = match value.last() {
        Some(b'H') => Some(3600.0),
        Some(b'M') => Some(60.0),
        Some(b'S') => Some(1.0),
        Some(b'm') => Some(1e-3),
        Some(b'u') => Some(1e-6),
        Some(b'n') => Some(1e-9),
        _ => None,
    };
    let digits = &value[..value.len().saturating_sub(1)];
    match unit {
        Some(unit) if (1..=8).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) => {
            let n: u32 = digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
            Ok(f64::from(n) * unit)
        }
        _ => Err(format!("malformed grpc-timeout {}", py_bytes_repr(value))),
    }
}

/// The single length-prefixed message of a unary request body.
pub fn unframe(body: &[u8], max_size: usize) -> Result<&[u8], GrpcError> {
    if body.len() < 5 {
        let text = if body.is_empty() { "unary call without a request message" }
                   else { "request message missing or truncated" };
        return Err(GrpcError::new(Status::Internal, text));
    }
    let flag = body[0];
    let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if flag == 1 {
        return Err(GrpcError::new(Status::Internal, "compressed-flag set but no grpc-encoding was \
            negotiated; this server accepts uncompressed messages only"));
    }
    if flag != 0 {
        return Err(GrpcError::new(Status::Internal, format!("invalid message flag {flag}")));
    }
    if length > max_size {
        return Err(GrpcError::new(Status::ResourceExhausted, format!(
            "request message of {length} bytes is larger than {max_size}")));
    }
    if body.len() < 5 + length {
        return Err(GrpcError::new(Status::Internal, "request message truncated"));
    }
    if body.len() > 5 + length {
        return Err(GrpcError::new(Status::Internal,
                                  "more than one request message in a unary call"));
    }
    Ok(&body[5..])
}

/// Python's repr() of a bytes value: error messages name bad header values the way the
/// pure-Python transport does, so both send the same grpc-message.
pub fn py_bytes_repr(value: &[u8]) -> String {
    let quote = if value.contains(&b'\'') && !value.contains(&b'"') { '"' } else { '\'' };
    let mut out = String::with_capacity(value.len() + 3);
    out.push('b');
    out.push(quote);
    for &byte in value {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if char::from(byte) == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7E => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out.push(quote);
    out
}

/// Latin-1 text of header bytes (every byte is one character), as the pure-Python transport
/// decodes a path or encoding it names in a message.
pub fn latin1(value: &[u8]) -> String {
    value.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precomputed_blocks_match_the_encoder() {
        assert_eq!(RESPONSE_HEADERS, encode_block(&[(b":status", b"200"),
                                                    (b"content-type", CONTENT_TYPE)]));
        assert_eq!(TRAILERS_OK, encode_block(&[(b"grpc-status", b"0")]));
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("caf\u{e9} is 100% wrong\n"),
                   b"caf%C3%A9 is 100%25 wrong%0A".to_vec());
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout(b"200m"), Ok(200.0 * 1e-3));
        assert_eq!(parse_timeout(b"12345678S"), Ok(12345678.0));
        for bad in [&b""[..], b"S", b"123456789S", b"1x", b"-1S", b"1 S"] {
            assert!(parse_timeout(bad).is_err());
        }
        assert_eq!(parse_timeout(b"soon").unwrap_err(), "malformed grpc-timeout b'soon'");
    }

    #[test]
    fn bytes_repr_matches_python() {
        assert_eq!(py_bytes_repr(b"a'b"), "b\"a'b\"");
        assert_eq!(py_bytes_repr(b"a'\"b"), "b'a\\'\"b'");
        assert_eq!(py_bytes_repr(b"\x00\xff\t\\"), "b'\\x00\\xff\\t\\\\'");
    }

    #[test]
    fn framing_errors() {
        assert_eq!(unframe(b"\x00\x00\x00\x00\x02hi", 10), Ok(&b"hi"[..]));
        assert_eq!(unframe(b"", 10).unwrap_err().status, Status::Internal);
        assert_eq!(unframe(b"\x00\x00\x00\x00\x0b", 10).unwrap_err().status,
                   Status::ResourceExhausted);
        assert!(unframe(b"\x01\x00\x00\x00\x00", 10).unwrap_err().message.contains("compressed"));
    }
}
