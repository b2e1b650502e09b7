//! The hot path of viva-ratelimit as pure functions over bytes and state.
//!
//! Python keeps the I/O, the control plane and everything else; this crate holds what runs on
//! every call. The pure-Rust modules know nothing of Python; `python` (the `python` feature)
//! is the only place that does, and the only place `unsafe` may appear (through PyO3).

#[forbid(unsafe_code)]
pub mod rls;
#[forbid(unsafe_code)]
pub mod wire;

#[cfg(feature = "python")]
mod python;
