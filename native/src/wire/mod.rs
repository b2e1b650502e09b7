//! The wire side of the fast transport: HTTP/2 (RFC 9113) with HPACK (RFC 7541) for unary
//! gRPC, the rate-limit and health protobuf messages, as pure state machines over bytes.
//!
//! Modules, bottom up: error (protocol error types), frame (layout), huffman and hpack,
//! grpc (status, timeouts, framing, precomputed header blocks), proto (the messages), request
//! (header block -> what to do with the stream), flow (receive-side flow control), stream,
//! sending (responses within the peer's limits), handler (the seam to the engine), options,
//! connection (the receive side), streams (the stream lifecycle), timers (timeouts, drain).
//!
//! The same protocol runs in pure Python (sidecar/server/h2); parity tests hold both to the
//! same bytes out for the same bytes in.

pub mod connection;
mod control;
mod headers;
pub mod error;
pub mod flow;
pub mod frame;
pub mod grpc;
pub mod handler;
pub mod hpack;
pub mod huffman;
pub mod options;
pub mod proto;
pub mod request;
pub mod sending;
pub mod stream;
mod streams;
pub mod timers;

pub use connection::{Connection, Feed};
pub use handler::{Answer, Call, CallHandler, DeferAll, Handled, Payload};
pub use options::Options;
pub use timers::TickAction;
