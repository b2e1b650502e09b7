//! The rate-limit call as plain data: what the wire decoder produces and the engine consumes,
//! and what the engine answers and the wire encoder sends. Mirrors Envoy's
//! `envoy.service.ratelimit.v3` messages (field meanings there), nothing more.

/// `RateLimitResponse.RateLimit.Unit` numbers, unchanged on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Unit {
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
    Week = 7,
}

impl Unit {
    /// The unit a wire number names; `None` for numbers Envoy does not define.
    pub fn from_wire(n: u64) -> Option<Unit> {
        Some(match n {
            0 => Unit::Unknown,
            1 => Unit::Second,
            2 => Unit::Minute,
            3 => Unit::Hour,
            4 => Unit::Day,
            5 => Unit::Month,
            6 => Unit::Year,
            7 => Unit::Week,
            _ => return None,
        })
    }
}

/// `RateLimitResponse.Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

/// `RateLimitDescriptor.RateLimitOverride`: a limit Envoy sends with the descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitOverride {
    pub requests_per_unit: u32,
    /// The wire number as protobuf reads an open enum (the varint's low 32 bits, signed): the
    /// engine, not the decoder, refuses numbers that are not units (the error names the
    /// descriptor index and shows this number, e.g. -1).
    pub unit: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Descriptor {
    pub entries: Vec<(String, String)>,
    pub limit: Option<LimitOverride>,
    /// `hits_addend` of the descriptor (a UInt64Value); `None` when Envoy did not set it.
    pub hits_addend: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RateLimitRequest {
    pub domain: String,
    pub descriptors: Vec<Descriptor>,
    pub hits_addend: u32,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentLimit {
    pub name: String,
    pub requests_per_unit: u32,
    pub unit: Unit,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptorStatus {
    pub code: Code,
    pub current_limit: Option<CurrentLimit>,
    pub limit_remaining: u32,
    /// `duration_until_reset` in milliseconds; only sent with `current_limit`.
    pub reset_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitResponse {
    pub overall_code: Code,
    pub statuses: Vec<DescriptorStatus>,
    pub response_headers_to_add: Vec<(String, String)>,
}
