//! The seam between the wire and whatever answers calls.
//!
//! `Connection::feed` decodes every complete call of a read and offers each to a
//! `CallHandler`: one that can decide at once (the engine on its memory store) answers inside
//! `feed`, with no Python at all; one that needs a round trip first (the engine on Redis) holds
//! the call and answers it later with `Connection::respond`; whatever it leaves comes back to
//! the caller as a `Call`, to be answered the same way.

use super::grpc::{GrpcError, Status};
use super::proto::ServingStatus;
use super::request::Method;
use crate::rls::{RateLimitRequest, RateLimitResponse};

/// What a handler made of a call.
#[derive(Clone, Debug, PartialEq)]
pub enum Handled {
    /// Answered now: the response is written inside `feed`.
    Answer(Answer),
    /// Kept by the handler, which answers it later (`Connection::respond`); the stream's
    /// deadline then holds at `Connection::tick` and at that answer.
    Held,
    /// Not this handler's: the call comes back from `feed` for the caller to answer.
    Left(Call),
}

/// Offered every complete call of a read. `now_ms` is the wall clock of the read (the same for
/// every call in it), in milliseconds since the Unix epoch.
pub trait CallHandler {
    fn offer(&mut self, call: Call, now_ms: u64) -> Handled;
}

/// Leaves every call to the caller.
pub struct DeferAll;

impl CallHandler for DeferAll {
    fn offer(&mut self, call: Call, _: u64) -> Handled {
        Handled::Left(call)
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
