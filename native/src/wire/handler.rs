//! The seam between the wire and whatever answers calls.
//!
//! `Connection::feed` decodes every complete call of a read and offers each rate-limit call
//! to a `CallHandler` first: an engine that can decide at once (the memory store) answers
//! inside `feed`, with no Python at all; whatever it leaves `Pending` (a Redis round trip, or
//! every call while only the Python engine exists) comes back to the caller as a `Call`, to be
//! answered later with `Connection::respond`.

use crate::rls::{RateLimitRequest, RateLimitResponse};

use super::grpc::{GrpcError, Status};
use super::proto::ServingStatus;
use super::request::Method;

/// What a handler makes of a call.
#[derive(Clone, Debug, PartialEq)]
pub enum HandlerResult {
    /// Answered now: the response is written inside `feed`.
    Answer(RateLimitResponse),
    /// Ended now with a status other than OK (e.g. INVALID_ARGUMENT naming the bad field).
    Error(GrpcError),
    /// Not now: the call comes back from `feed` for the caller to answer.
    Pending,
}

/// Answers rate-limit calls inside `feed`. `now_ms` is the wall clock of the read (the same
/// for every call in it), in milliseconds since the Unix epoch.
pub trait CallHandler {
    fn should_rate_limit(&mut self, request: &RateLimitRequest, now_ms: u64) -> HandlerResult;
}

/// Leaves every call to the caller (the Python engine answers them all).
pub struct DeferAll;

impl CallHandler for DeferAll {
    fn should_rate_limit(&mut self, _: &RateLimitRequest, _: u64) -> HandlerResult {
        HandlerResult::Pending
    }
}

/// A call's request, decoded, or why it could not be.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    RateLimit(RateLimitRequest),
    /// The service name of a grpc.health.v1 Check.
    Health(String),
    /// The request message is not a valid protobuf message of its method's type; the text is
    /// what Python's protobuf runtime says about it (for INVALID_ARGUMENT).
    Malformed { method: Method, message: String },
}

/// A complete call left for the caller to answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub stream_id: u32,
    pub payload: Payload,
    /// When the call must have been answered (grpc-timeout), on the clock `feed` was given.
    pub deadline: Option<f64>,
}

/// An answer to a `Call`.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    RateLimit(RateLimitResponse),
    Health(ServingStatus),
    Error(GrpcError),
}

impl Answer {
    pub fn error(status: Status, message: impl Into<String>) -> Answer {
        Answer::Error(GrpcError::new(status, message))
    }
}
