//! A request's header block -> what to do with the stream (RFC 9113 section 8 rules + routing).
//!
//! The result depends only on the decoded headers, so the connection caches it by the block's
//! bytes: a client that repeats its header block (Envoy does) is routed by one map lookup.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::HpackError;
use super::grpc::{http_error, latin1, parse_timeout, py_bytes_repr, trailers_only, Status};
use super::hpack::{Decoder, Header};

pub const RATE_LIMIT_PATH: &[u8] = b"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";
pub const HEALTH_CHECK_PATH: &[u8] = b"/grpc.health.v1.Health/Check";

const CACHE_ENTRIES: usize = 64; // header blocks remembered per connection (per table generation)
const CACHE_MAX_BLOCK: usize = 2048;

/// The unary methods this transport serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    RateLimit,
    Health,
}

/// How to answer a stream once its request is complete: call `method` with the request
/// message, or send `reject` (a response header block, with `reject_body` as DATA when not
/// empty) instead. `malformed` set: the stream is reset with PROTOCOL_ERROR straight away.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestHead {
    pub method: Option<Method>,
    pub reject: Arc<[u8]>,
    pub reject_body: Arc<[u8]>,
    pub timeout: Option<f64>,
    pub content_length: Option<u64>,
    pub malformed: Option<String>,
}

impl RequestHead {
    fn call(method: Method, timeout: Option<f64>) -> RequestHead {
        RequestHead { method: Some(method), reject: Arc::from(&[][..]), reject_body: Arc::from(&[][..]),
                      timeout, content_length: None, malformed: None }
    }

    fn reject(block: Vec<u8>, body: Vec<u8>) -> RequestHead {
        RequestHead { method: None, reject: block.into(), reject_body: body.into(), timeout: None,
                      content_length: None, malformed: None }
    }

    fn grpc_reject(status: Status, message: &str) -> RequestHead {
        RequestHead::reject(trailers_only(status, message), Vec::new())
    }

    fn malformed(problem: String) -> RequestHead {
        RequestHead { malformed: Some(problem), ..RequestHead::reject(Vec::new(), Vec::new()) }
    }
}

/// Maps request header lists to RequestHeads for the two methods.
pub struct Router {
    too_large_grpc: Arc<RequestHead>,
    too_large_http: Arc<RequestHead>,
    not_post: Arc<RequestHead>,
    head_not_post: Arc<RequestHead>,
    not_grpc: Arc<RequestHead>,
    rate_limit: Arc<RequestHead>,
    health: Arc<RequestHead>,
}

impl Default for Router {
    fn default() -> Router {
        Router::new()
    }
}

/// The request fields routing reads (pseudo-headers and the few regular ones).
#[derive(Default)]
struct Fields<'a> {
    method: Option<&'a [u8]>,
    scheme: Option<&'a [u8]>,
    path: Option<&'a [u8]>,
    authority: Option<&'a [u8]>,
    content_type: Option<&'a [u8]>,
    grpc_timeout: Option<&'a [u8]>,
    grpc_encoding: Option<&'a [u8]>,
    content_length: Option<&'a [u8]>,
}

impl Router {
    pub fn new() -> Router {
        let http = |status, text| {
            let (block, body) = http_error(status, text);
            Arc::new(RequestHead::reject(block, body))
        };
        let not_post = http(405, "method not allowed: gRPC calls are POST requests");
        Router {
            too_large_grpc: Arc::new(RequestHead::grpc_reject(
                Status::ResourceExhausted, "request header list is larger than we accept")),
            too_large_http: http(431, "request header fields too large"),
            // A HEAD response has no body.
            head_not_post: Arc::new(RequestHead::reject(not_post.reject.to_vec(), Vec::new())),
            not_post,
            not_grpc: http(415, "unsupported media type: this server speaks gRPC \
                                 (content-type application/grpc) only"),
            rate_limit: Arc::new(RequestHead::call(Method::RateLimit, None)),
            health: Arc::new(RequestHead::call(Method::Health, None)),
        }
    }

    pub fn interpret(&self, headers: &[Header], too_large: bool) -> Arc<RequestHead> {
        let mut fields = Fields::default();
        if let Some(problem) = check_fields(headers, &mut fields) {
            return Arc::new(RequestHead::malformed(problem));
        }
        let length = match fields.content_length {
            None => None,
            Some(text) if is_digits(text) => Some(parse_length(text)),
            Some(text) => {
                return Arc::new(RequestHead::malformed(format!("content-length {} is not a number", py_bytes_repr(text))));
            }
        };
        let head = self.route(&fields, too_large);
        match length {
            None => head,
            Some(n) => Arc::new(RequestHead { content_length: Some(n), ..(*head).clone() }),
        }
    }

    fn route(&self, fields: &Fields<'_>, too_large: bool) -> Arc<RequestHead> {
        let grpc = is_grpc(fields.content_type.unwrap_or(b""));
        if too_large {
            return Arc::clone(if grpc { &self.too_large_grpc } else { &self.too_large_http });
        }
        let method = fields.method.unwrap_or(b"");
        if method != b"POST" {
            return Arc::clone(if method == b"HEAD" { &self.head_not_post } else { &self.not_post });
        }
        if !grpc {
            return Arc::clone(&self.not_grpc);
        }
        let path = fields.path.unwrap_or(b"");
        let base = match path {
            RATE_LIMIT_PATH => &self.rate_limit,
            HEALTH_CHECK_PATH => &self.health,
            _ => {
                let message = format!("unknown method {}", latin1(path));
                return Arc::new(RequestHead::grpc_reject(Status::Unimplemented, &message));
            }
        };
        let encoding = fields.grpc_encoding.unwrap_or(b"identity");
        if encoding != b"identity" {
            let message = format!("grpc-encoding {} is not supported; send messages uncompressed",
                                  latin1(encoding));
            return Arc::new(RequestHead::grpc_reject(Status::Unimplemented, &message));
        }
        match fields.grpc_timeout.map(parse_timeout) {
            None => Arc::clone(base),
            Some(Ok(timeout)) => Arc::new(RequestHead { timeout: Some(timeout), ..(**base).clone() }),
            Some(Err(message)) => Arc::new(RequestHead::grpc_reject(Status::Internal, &message)),
        }
    }
}

fn is_digits(text: &[u8]) -> bool {
    !text.is_empty() && text.iter().all(u8::is_ascii_digit)
}

/// A content-length: numbers past u64 saturate (no stream can carry that many bytes, so the
/// request fails the length check all the same).
fn parse_length(text: &[u8]) -> u64 {
    text.iter().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')))
}

/// application/grpc, application/grpc+proto, application/grpc;charset=... but not grpc-web.
fn is_grpc(content_type: &[u8]) -> bool {
    content_type == b"application/grpc"
        || (content_type.len() >= 17
            && matches!(&content_type[..17], b"application/grpc+" | b"application/grpc;"))
}

/// An RFC 9110 token in lowercase (RFC 9113 8.2).
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| {
        c.is_ascii_digit() || c.is_ascii_lowercase() || b"!#$%&'*+-.^_`|~".contains(&c)
    })
}

/// NUL, CR or LF anywhere, or whitespace at either end.
fn bad_value(value: &[u8]) -> bool {
    value.iter().any(|c| matches!(c, 0 | b'\r' | b'\n'))
        || matches!(value.first(), Some(b' ' | b'\t'))
        || matches!(value.last(), Some(b' ' | b'\t'))
}

fn connection_specific(name: &[u8], value: &[u8]) -> bool {
    matches!(name, b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
                   | b"upgrade")
        || (name == b"te" && value != b"trailers")
}

/// RFC 9113 8.2 and 8.3.1 for a request; fills `fields` and returns what is malformed.
fn check_fields<'a>(headers: &'a [Header], fields: &mut Fields<'a>) -> Option<String> {
    let mut regular = false;
    for (name, value) in headers {
        let (name, value) = (name.as_slice(), value.as_slice());
        if bad_value(value) {
            return Some(format!("invalid value for {}", py_bytes_repr(name)));
        }
        if name.first() == Some(&b':') {
            if regular {
                return Some(format!("pseudo-header {} after a regular field", py_bytes_repr(name)));
            }
            let slot = match name {
                b":method" => &mut fields.method,
                b":scheme" => &mut fields.scheme,
                b":path" => &mut fields.path,
                b":authority" => &mut fields.authority,
                _ => return Some(format!("unknown pseudo-header {}", py_bytes_repr(name))),
            };
            if slot.is_some() {
                return Some(format!("repeated pseudo-header {}", py_bytes_repr(name)));
            }
            *slot = Some(value);
            continue;
        }
        regular = true;
        if !valid_name(name) {
            return Some(format!("invalid field name {}", py_bytes_repr(name)));
        }
        if connection_specific(name, value) {
            return Some(format!("connection-specific field {}", py_bytes_repr(name)));
        }
        match name {
            b"content-type" => fields.content_type = Some(value),
            b"grpc-timeout" => fields.grpc_timeout = Some(value),
            b"grpc-encoding" => fields.grpc_encoding = Some(value),
            b"content-length" => {
                if fields.content_length.is_some_and(|seen| seen != value) {
                    return Some("conflicting content-length fields".into());
                }
                fields.content_length = Some(value);
            }
            _ => {}
        }
    }
    check_pseudo(fields)
}

fn check_pseudo(fields: &Fields<'_>) -> Option<String> {
    let Some(method) = fields.method else {
        return Some("missing :method".into());
    };
    if method == b"CONNECT" {
        // The one request without :scheme and :path (RFC 9113 8.5).
        let ok = fields.authority.is_some() && fields.path.is_none();
        return (!ok).then(|| "malformed CONNECT".into());
    }
    if fields.scheme.is_none() {
        return Some("missing :scheme".into());
    }
    if fields.path.is_none_or(<[u8]>::is_empty) {
        return Some("missing or empty :path".into());
    }
    None
}

/// Trailers carry no pseudo-headers and obey the field rules (RFC 9113 8.1).
pub fn check_trailers(headers: &[Header]) -> Option<String> {
    headers.iter().find(|(name, value)| {
        name.first() == Some(&b':') || !valid_name(name) || bad_value(value)
    }).map(|(name, _)| format!("invalid trailer field {}", py_bytes_repr(name)))
}

/// One connection's request header blocks -> RequestHead, by the block's bytes.
///
/// An entry stays valid while the HPACK dynamic table is unchanged (the decoder's generation),
/// and a block that changes the table is never remembered: decoding it again would have to
/// change the table again. Clients that repeat an all-indexed block are routed by one lookup,
/// with no HPACK decoding at all.
#[derive(Default)]
pub struct HeadCache {
    heads: HashMap<Vec<u8>, Arc<RequestHead>>,
    generation: u64,
}

impl HeadCache {
    pub fn head(&mut self, decoder: &mut Decoder, router: &Router, block: &[u8])
                -> Result<Arc<RequestHead>, HpackError> {
        if decoder.generation() != self.generation {
            self.heads.clear();
            self.generation = decoder.generation();
        }
        if let Some(head) = self.heads.get(block) {
            return Ok(Arc::clone(head));
        }
        let (headers, too_large) = decoder.decode(block)?;
        let head = router.interpret(&headers, too_large);
        if decoder.generation() == self.generation && block.len() <= CACHE_MAX_BLOCK {
            if self.heads.len() >= CACHE_ENTRIES {
                self.heads.clear();
            }
            self.heads.insert(block.to_vec(), Arc::clone(&head));
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<Header> {
        pairs.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    fn grpc_request(path: &str, extra: &[(&str, &str)]) -> Vec<Header> {
        let mut list = vec![(":method", "POST"), (":scheme", "http"), (":path", path),
                            (":authority", "x"), ("content-type", "application/grpc"),
                            ("te", "trailers")];
        list.extend_from_slice(extra);
        headers(&list)
    }

    #[test]
    fn routes_the_two_methods() {
        let router = Router::new();
        let head = router.interpret(&grpc_request("/grpc.health.v1.Health/Check", &[]), false);
        assert_eq!(head.method, Some(Method::Health));
        let path = std::str::from_utf8(RATE_LIMIT_PATH).unwrap();
        let head = router.interpret(&grpc_request(path, &[("grpc-timeout", "5S")]), false);
        assert_eq!((head.method, head.timeout), (Some(Method::RateLimit), Some(5.0)));
        let head = router.interpret(&grpc_request("/x/Y", &[]), false);
        assert_eq!(head.method, None);
        assert_eq!(&*head.reject, &trailers_only(Status::Unimplemented, "unknown method /x/Y")[..]);
    }

    #[test]
    fn malformed_requests() {
        let router = Router::new();
        for bad in [
            headers(&[(":scheme", "http"), (":path", "/")]),
            headers(&[(":method", "POST"), (":path", "/")]),
            headers(&[(":method", "POST"), (":scheme", "http"), (":path", "")]),
            grpc_request("/a", &[("connection", "close")]),
            grpc_request("/a", &[("te", "gzip")]),
            grpc_request("/a", &[("X-Upper", "1")]),
            grpc_request("/a", &[("x-v", " lead")]),
            grpc_request("/a", &[("content-length", "1"), ("content-length", "2")]),
            grpc_request("/a", &[("content-length", "x")]),
            headers(&[("x", "1"), (":method", "POST")]),
        ] {
            assert!(router.interpret(&bad, false).malformed.is_some(), "{bad:?}");
        }
        let connect = headers(&[(":method", "CONNECT"), (":authority", "h")]);
        assert!(router.interpret(&connect, false).malformed.is_none());
    }
}
