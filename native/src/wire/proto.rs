//! The protobuf messages of the two methods we serve, by hand: `RateLimitRequest` and
//! `grpc.health.v1.HealthCheckRequest` in, `RateLimitResponse` and `HealthCheckResponse` out.
//!
//! Decoding follows what Python's protobuf runtime (upb) accepts, byte for byte, because the
//! pure-Python transport is the reference: unknown fields and known fields with the wrong wire
//! type are skipped; a repeated singular submessage merges into the first; strings must be
//! UTF-8; tags have at most 5 bytes and field numbers below 2^29 (0 is refused outside groups);
//! lengths at most 5 bytes; varints at most 10; groups nest at most 100 deep counting the
//! message levels above them. The first problem met, in wire order, is the one reported, and
//! like upb a string may run past the end of its submessage (only the whole message bounds
//! it): its UTF-8 is checked before the overrun is found.

use std::fmt;

use crate::rls::{DescriptorStatus, Descriptor, LimitOverride, RateLimitRequest, RateLimitResponse};

const MAX_DEPTH: i32 = 100;
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const DELIMITED: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Why a message could not be decoded, in the words of Python's protobuf runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Malformed,
    BadUtf8,
}

impl DecodeError {
    /// The text Python's `DecodeError` carries for a message of type `type_name`.
    pub fn describe(self, type_name: &str) -> String {
        format!("Error parsing message with type '{type_name}': {self}")
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::Malformed => "Wire format was corrupt",
            DecodeError::BadUtf8 => "String field had bad UTF-8",
        })
    }
}

pub const RATE_LIMIT_REQUEST: &str = "envoy.service.ratelimit.v3.RateLimitRequest";
pub const HEALTH_CHECK_REQUEST: &str = "grpc.health.v1.HealthCheckRequest";

type Decoded<T> = Result<T, DecodeError>;

/// A cursor over one (sub)message: `buf` is the whole top-level message, the fields of this
/// one end at `limit`.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limit: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0, limit: buf.len() }
    }

    fn more(&self) -> bool {
        self.pos < self.limit
    }

    /// The submessage in the next length-delimited field; its length must fit in this one.
    fn submessage(&mut self) -> Decoded<Reader<'a>> {
        let length = self.varint(5)?;
        if length > (self.limit.saturating_sub(self.pos)) as u64 {
            return Err(DecodeError::Malformed);
        }
        let start = self.pos;
        self.pos += length as usize;
        Ok(Reader { buf: self.buf, pos: start, limit: self.pos })
    }

    /// A varint of at most `max_bytes` bytes (bits past 64 are dropped, as upb does).
    fn varint(&mut self, max_bytes: usize) -> Decoded<u64> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let &byte = self.buf.get(self.pos).ok_or(DecodeError::Malformed)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed)
    }

    /// (field number, wire type).
    fn tag(&mut self) -> Decoded<(u32, u8)> {
        let tag = self.varint(5)?;
        if tag > u64::from(u32::MAX) {
            return Err(DecodeError::Malformed);
        }
        Ok(((tag >> 3) as u32, (tag & 7) as u8))
    }

    /// The bytes of a length-delimited field; they may run past `limit` (the caller finds
    /// that out after), not past the whole message.
    fn delimited(&mut self) -> Decoded<&'a [u8]> {
        let length = self.varint(5)?;
        let end = (self.pos as u64).checked_add(length).ok_or(DecodeError::Malformed)?;
        if end > self.buf.len() as u64 {
            return Err(DecodeError::Malformed);
        }
        let slice = &self.buf[self.pos..end as usize];
        self.pos = end as usize;
        Ok(slice)
    }

    fn fixed(&mut self, size: usize) -> Decoded<()> {
        if self.buf.len() - self.pos < size {
            return Err(DecodeError::Malformed);
        }
        self.pos += size;
        Ok(())
    }

    /// A field we do not read (unknown, or known with another wire type).
    fn skip(&mut self, field: u32, wire_type: u8, depth: i32) -> Decoded<()> {
        match wire_type {
            VARINT => self.varint(10).map(drop),
            FIXED64 => self.fixed(8),
            DELIMITED => self.delimited().map(drop),
            FIXED32 => self.fixed(4),
            START_GROUP => self.skip_group(field, depth - 1),
            _ => Err(DecodeError::Malformed),
        }
    }

    /// The rest of a group, up to its END_GROUP with the same field number.
    fn skip_group(&mut self, field: u32, depth: i32) -> Decoded<()> {
        if depth < 0 {
            return Err(DecodeError::Malformed);
        }
        loop {
            if !self.more() {
                return Err(DecodeError::Malformed);
            }
            let (inner, wire_type) = self.tag()?;
            if wire_type == END_GROUP {
                return if inner == field { Ok(()) } else { Err(DecodeError::Malformed) };
            }
            self.skip(inner, wire_type, depth)?;
        }
    }

    /// Every field of a message: `read(reader, field, wire_type)` returns true when it
    /// consumed the field, false to have it skipped.
    fn fields(&mut self, depth: i32,
              mut read: impl FnMut(&mut Reader<'a>, u32, u8) -> Decoded<bool>) -> Decoded<()> {
        while self.more() {
            let (field, wire_type) = self.tag()?;
            if field == 0 || wire_type == END_GROUP {
                return Err(DecodeError::Malformed);
            }
            if !read(self, field, wire_type)? {
                self.skip(field, wire_type, depth)?;
            }
        }
        if self.pos > self.limit {
            return Err(DecodeError::Malformed); // the last field ran past this message
        }
        Ok(())
    }

    fn string(&mut self) -> Decoded<String> {
        let bytes = self.delimited()?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(DecodeError::BadUtf8),
        }
    }
}

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
pub fn decode_rate_limit_request(buf: &[u8]) -> Decoded<RateLimitRequest> {
    let mut request = RateLimitRequest::default();
    Reader::new(buf).fields(MAX_DEPTH, |r, field, wire_type| {
        match (field, wire_type) {
            (1, DELIMITED) => request.domain = r.string()?,
            (2, DELIMITED) => request.descriptors.push(descriptor(r.submessage()?, MAX_DEPTH - 1)?),
            (3, VARINT) => request.hits_addend = r.varint(10)? as u32,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(request)
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
fn descriptor(mut reader: Reader<'_>, depth: i32) -> Decoded<Descriptor> {
    let mut out = Descriptor::default();
    reader.fields(depth, |r, field, wire_type| {
        match (field, wire_type) {
            (1, DELIMITED) => out.entries.push(entry(r.submessage()?, depth - 1)?),
            (2, DELIMITED) => {
                let limit = out.limit.get_or_insert(LimitOverride { requests_per_unit: 0, unit: 0 });
                limit_override(r.submessage()?, depth - 1, limit)?;
            }
            (3, DELIMITED) => {
                let hits = out.hits_addend.get_or_insert(0);
                uint64_value(r.submessage()?, depth - 1, hits)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(out)
}

/// `RateLimitDescriptor.Entry`.
fn entry(mut reader: Reader<'_>, depth: i32) -> Decoded<(String, String)> {
    let (mut key, mut value) = (String::new(), String::new());
    reader.fields(depth, |r, field, wire_type| {
        match (field, wire_type) {
            (1, DELIMITED) => key = r.string()?,
            (2, DELIMITED) => value = r.string()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok((key, value))
}

/// `RateLimitDescriptor.RateLimitOverride`, merged into `limit` (a repeated singular
/// submessage merges, as protobuf defines).
fn limit_override(mut reader: Reader<'_>, depth: i32, limit: &mut LimitOverride) -> Decoded<()> {
    reader.fields(depth, |r, field, wire_type| {
        match (field, wire_type) {
            (1, VARINT) => limit.requests_per_unit = r.varint(10)? as u32,
            // An open enum: the low 32 bits as a signed number.
            (2, VARINT) => limit.unit = r.varint(10)? as u32 as i32,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `google.protobuf.UInt64Value`, merged into `value`.
fn uint64_value(mut reader: Reader<'_>, depth: i32, value: &mut u64) -> Decoded<()> {
    reader.fields(depth, |r, field, wire_type| {
        if (field, wire_type) != (1, VARINT) {
            return Ok(false);
        }
        *value = r.varint(10)?;
        Ok(true)
    })
}

/// `grpc.health.v1.HealthCheckRequest`: the service name.
pub fn decode_health_check_request(buf: &[u8]) -> Decoded<String> {
    let mut service = String::new();
    Reader::new(buf).fields(MAX_DEPTH, |r, field, wire_type| {
        if (field, wire_type) != (1, DELIMITED) {
            return Ok(false);
        }
        service = r.string()?;
        Ok(true)
    })?;
    Ok(service)
}

// -- encoding: fields in number order, proto3 defaults left out (as protobuf writes them) -----

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, u64::from(field << 3 | u32::from(wire_type)));
}

fn put_uint(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        put_tag(out, field, VARINT);
        put_varint(out, value);
    }
}

fn put_bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        put_tag(out, field, DELIMITED);
        put_varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }
}

/// A submessage that is present (written even when empty): `body` writes its fields.
fn put_message(out: &mut Vec<u8>, field: u32, scratch: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    scratch.clear();
    body(scratch);
    put_tag(out, field, DELIMITED);
    put_varint(out, scratch.len() as u64);
    out.extend_from_slice(scratch);
}

/// `envoy.service.ratelimit.v3.RateLimitResponse`, appended to `out`.
pub fn encode_rate_limit_response(response: &RateLimitResponse, out: &mut Vec<u8>) {
    put_uint(out, 1, response.overall_code as u64);
    let mut status_body = Vec::new();
    let mut scratch = Vec::new();
    for status in &response.statuses {
        status_body.clear();
        descriptor_status(status, &mut status_body, &mut scratch);
        put_tag(out, 2, DELIMITED);
        put_varint(out, status_body.len() as u64);
        out.extend_from_slice(&status_body);
    }
    for (key, value) in &response.response_headers_to_add {
        put_message(out, 3, &mut scratch, |m| {
            put_bytes(m, 1, key.as_bytes());
            put_bytes(m, 2, value.as_bytes());
        });
    }
}

/// `RateLimitResponse.DescriptorStatus`; the reset duration goes with the current limit.
fn descriptor_status(status: &DescriptorStatus, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    put_uint(out, 1, status.code as u64);
    if let Some(limit) = &status.current_limit {
        put_message(out, 2, scratch, |m| {
            put_uint(m, 1, u64::from(limit.requests_per_unit));
            put_uint(m, 2, limit.unit as u64);
            put_bytes(m, 3, limit.name.as_bytes());
        });
    }
    put_uint(out, 3, u64::from(status.limit_remaining));
    if status.current_limit.is_some() {
        put_message(out, 4, scratch, |m| {
            put_uint(m, 1, status.reset_ms / 1000);
            put_uint(m, 2, status.reset_ms % 1000 * 1_000_000);
        });
    }
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

pub fn encode_health_check_response(status: ServingStatus, out: &mut Vec<u8>) {
    put_uint(out, 1, status as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rls::{Code, CurrentLimit, Unit};

    #[test]
    fn decodes_a_request() {
        // domain "d"; descriptor {entries [{k, v}], limit {7, MINUTE}, hits {3}}; hits 2.
        let buf = b"\x0a\x01d\x12\x12\x0a\x06\x0a\x01k\x12\x01v\x12\x04\x08\x07\x10\x02\x1a\x02\x08\x03\x18\x02";
        let request = decode_rate_limit_request(buf).unwrap();
        assert_eq!(request.domain, "d");
        assert_eq!(request.hits_addend, 2);
        let d = &request.descriptors[0];
        assert_eq!(d.entries, vec![("k".to_string(), "v".to_string())]);
        assert_eq!(d.limit, Some(LimitOverride { requests_per_unit: 7, unit: 2 }));
        assert_eq!(d.hits_addend, Some(3));
    }

    #[test]
    fn follows_the_python_runtime_on_odd_input() {
        let ok = |b: &[u8]| decode_rate_limit_request(b).is_ok();
        assert!(ok(b"\x08\x05")); // domain as a varint: skipped
        assert!(ok(b"\x2b\x08\x01\x2c")); // an unknown group
        assert!(!ok(b"\x2b\x34")); // a group closed by another field number
        assert!(!ok(b"\x00\x01")); // field 0
        assert!(!ok(b"\x2c")); // END_GROUP outside a group
        assert!(!ok(b"\x26")); // wire type 6
        assert!(ok(&[b"\x2b".repeat(100), b"\x2c".repeat(100)].concat()));
        assert!(!ok(&[b"\x2b".repeat(101), b"\x2c".repeat(101)].concat()));
        assert!(ok(b"\x88\x80\x80\x80\x00\x01")); // a 5-byte tag
        assert!(!ok(b"\x88\x80\x80\x80\x80\x00\x01")); // a 6-byte tag
        assert!(!ok(b"\x2a\x81\x80\x80\x80\x80\x00a")); // a 6-byte length
        assert!(ok(&[&b"\x28"[..], &[0xff; 9], b"\x7f"].concat())); // a 10-byte varint
        assert!(!ok(&[&b"\x28"[..], &[0xff; 10], b"\x01"].concat())); // an 11-byte varint
        assert_eq!(decode_rate_limit_request(b"\x0a\x01\xff"), Err(DecodeError::BadUtf8));
        let unit = decode_rate_limit_request(b"\x12\x0d\x12\x0b\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")
            .unwrap();
        assert_eq!(unit.descriptors[0].limit.as_ref().unwrap().unit, -1);
        // A key running past its entry: its UTF-8 is checked first, then the overrun found.
        assert_eq!(decode_rate_limit_request(b"\x12\x06\x0a\x03\x0a\x02a\xff"),
                   Err(DecodeError::BadUtf8));
        assert_eq!(decode_rate_limit_request(b"\x12\x06\x0a\x03\x0a\x02ab"),
                   Err(DecodeError::Malformed));
        // A submessage running past its parent is refused at once.
        assert_eq!(decode_rate_limit_request(b"\x12\x04\x0a\x05\x0a\x03\xff\xff\xff"),
                   Err(DecodeError::Malformed));
    }

    #[test]
    fn merges_repeated_submessages() {
        let buf = b"\x12\x08\x12\x02\x08\x05\x12\x02\x10\x03";
        let limit = decode_rate_limit_request(buf).unwrap().descriptors[0].limit.clone();
        assert_eq!(limit, Some(LimitOverride { requests_per_unit: 5, unit: 3 }));
    }

    #[test]
    fn encodes_a_response() {
        let response = RateLimitResponse {
            overall_code: Code::OverLimit,
            statuses: vec![DescriptorStatus {
                code: Code::OverLimit,
                current_limit: Some(CurrentLimit { name: "n".into(), requests_per_unit: 3,
                                                   unit: Unit::Minute }),
                limit_remaining: 0,
                reset_ms: 1500,
            }],
            response_headers_to_add: vec![("k".into(), "".into())],
        };
        let mut out = Vec::new();
        encode_rate_limit_response(&response, &mut out);
        let want = b"\x08\x02\x12\x15\x08\x02\x12\x07\x08\x03\x10\x02\x1a\x01n\x22\x08\x08\x01\x10\x80\xca\xb5\xee\x01\x1a\x03\x0a\x01k";
        assert_eq!(out, want.to_vec());
    }

    #[test]
    fn health_messages() {
        assert_eq!(decode_health_check_request(b"\x0a\x09ratelimit").unwrap(), "ratelimit");
        assert_eq!(decode_health_check_request(b"").unwrap(), "");
        let mut out = Vec::new();
        encode_health_check_response(ServingStatus::NotServing, &mut out);
        assert_eq!(out, b"\x08\x02");
    }
}
