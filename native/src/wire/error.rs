//! The errors the HTTP/2 layer raises while reading what a client sent (RFC 9113 section 7):
//!
//! ```text
//! H2Error::Connection   the whole connection is unusable: answer GOAWAY(code), close
//!   (HpackError)        the header block cannot be decoded: COMPRESSION_ERROR, always fatal
//! H2Error::Stream       one stream is broken: answer RST_STREAM(stream, code), keep the rest
//! ```
//!
//! The frame parser and the HPACK decoder return these and nothing else on bad input; the
//! connection turns them into frames.

use std::fmt;

/// RFC 9113 section 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    NoError = 0x0,
    ProtocolError = 0x1,
    InternalError = 0x2,
    FlowControlError = 0x3,
    SettingsTimeout = 0x4,
    StreamClosed = 0x5,
    FrameSizeError = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    CompressionError = 0x9,
    ConnectError = 0xA,
    EnhanceYourCalm = 0xB,
    InadequateSecurity = 0xC,
    Http11Required = 0xD,
}

/// A protocol violation by the peer; the code is what we answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum H2Error {
    /// Fatal for the connection: GOAWAY with `code`.
    Connection { code: ErrorCode, message: String },
    /// Fatal for one stream: RST_STREAM(stream_id, code).
    Stream { stream_id: u32, code: ErrorCode, message: String },
}

impl H2Error {
    pub fn connection(code: ErrorCode, message: impl Into<String>) -> H2Error {
        H2Error::Connection { code, message: message.into() }
    }

    pub fn stream(stream_id: u32, code: ErrorCode, message: impl Into<String>) -> H2Error {
        H2Error::Stream { stream_id, code, message: message.into() }
    }

    pub fn protocol(message: impl Into<String>) -> H2Error {
        H2Error::connection(ErrorCode::ProtocolError, message)
    }
}

impl fmt::Display for H2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            H2Error::Connection { code, message } => write!(f, "{message} ({code:?})"),
            H2Error::Stream { stream_id, code, message } => {
                write!(f, "stream {stream_id}: {message} ({code:?})")
            }
        }
    }
}

/// The header block is invalid (RFC 7541); always COMPRESSION_ERROR for the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HpackError(pub String);

impl From<HpackError> for H2Error {
    fn from(err: HpackError) -> H2Error {
        H2Error::connection(ErrorCode::CompressionError, err.0)
    }
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type H2Result<T> = Result<T, H2Error>;
