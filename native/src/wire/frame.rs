//! HTTP/2 frame layout (RFC 9113 sections 4 and 6): constants, the frames a server writes, and
//! the padding/priority fields of the frames it reads.

use super::error::{ErrorCode, H2Error, H2Result};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADER_LEN: usize = 9;

// Frame types.
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

// Flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

// Settings identifiers.
pub const HEADER_TABLE_SIZE: u16 = 0x1;
pub const ENABLE_PUSH: u16 = 0x2;
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const MAX_FRAME_SIZE: u16 = 0x5;
pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;

pub const DEFAULT_WINDOW: i64 = 65535;
pub const DEFAULT_MAX_FRAME: usize = 16384;
pub const LARGEST_MAX_FRAME: usize = (1 << 24) - 1;
pub const MAX_WINDOW: i64 = (1 << 31) - 1;
pub const STREAM_ID_MASK: u32 = 0x7FFF_FFFF;

/// A frame as read: type, flags, stream id (reserved bit cleared) and payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub length: usize,
    pub ftype: u8,
    pub flags: u8,
    pub stream_id: u32,
}

impl FrameHeader {
    /// The header at the start of `data` (at least 9 bytes).
    pub fn parse(data: &[u8]) -> FrameHeader {
        FrameHeader {
            length: (usize::from(data[0]) << 16) | (usize::from(data[1]) << 8) | usize::from(data[2]),
            ftype: data[3],
            flags: data[4],
            stream_id: u32_at(data, 5) & STREAM_ID_MASK,
        }
    }
}

/// The big-endian u32 at `data[pos..pos + 4]`.
pub fn u32_at(data: &[u8], pos: usize) -> u32 {
    u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]])
}

pub fn write_header(out: &mut Vec<u8>, ftype: u8, flags: u8, stream_id: u32, length: usize) {
    let n = length as u32;
    out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8, ftype, flags]);
    out.extend_from_slice(&stream_id.to_be_bytes());
}

pub fn write_frame(out: &mut Vec<u8>, ftype: u8, flags: u8, stream_id: u32, payload: &[u8]) {
    write_header(out, ftype, flags, stream_id, payload.len());
    out.extend_from_slice(payload);
}

pub fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + 6 * values.len());
    write_header(&mut out, SETTINGS, 0, 0, 6 * values.len());
    for (ident, value) in values {
        out.extend_from_slice(&ident.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
    out
}

pub fn settings_ack(out: &mut Vec<u8>) {
    write_header(out, SETTINGS, ACK, 0, 0);
}

pub fn ping(out: &mut Vec<u8>, flags: u8, opaque: &[u8]) {
    write_frame(out, PING, flags, 0, opaque);
}

pub fn goaway(out: &mut Vec<u8>, last_stream_id: u32, code: ErrorCode, debug: &[u8]) {
    write_header(out, GOAWAY, 0, 0, 8 + debug.len());
    out.extend_from_slice(&last_stream_id.to_be_bytes());
    out.extend_from_slice(&(code as u32).to_be_bytes());
    out.extend_from_slice(debug);
}

pub fn rst_stream(out: &mut Vec<u8>, stream_id: u32, code: ErrorCode) {
    write_frame(out, RST_STREAM, 0, stream_id, &(code as u32).to_be_bytes());
}

pub fn window_update(out: &mut Vec<u8>, stream_id: u32, increment: u32) {
    write_frame(out, WINDOW_UPDATE, 0, stream_id, &increment.to_be_bytes());
}

/// HEADERS, then CONTINUATION frames when the block is larger than the peer's max frame.
pub fn headers(out: &mut Vec<u8>, stream_id: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let flags = if end_stream { END_STREAM } else { 0 };
    if block.len() <= max_frame {
        write_frame(out, HEADERS, flags | END_HEADERS, stream_id, block);
        return;
    }
    let chunks: Vec<&[u8]> = block.chunks(max_frame).collect();
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.iter().enumerate() {
        let (ftype, flags) = match i {
            0 => (HEADERS, flags),
            _ if i == last => (CONTINUATION, END_HEADERS),
            _ => (CONTINUATION, 0),
        };
        write_frame(out, ftype, flags, stream_id, chunk);
    }
}

/// The content of a PADDED frame (RFC 9113 6.1, 6.2).
pub fn unpad(payload: &[u8]) -> H2Result<&[u8]> {
    let Some(&pad) = payload.first() else {
        return Err(H2Error::connection(ErrorCode::FrameSizeError,
                                       "padded frame without pad length"));
    };
    let pad = usize::from(pad);
    if pad >= payload.len() {
        return Err(H2Error::protocol("padding longer than the frame"));
    }
    Ok(&payload[1..payload.len() - pad])
}

/// A HEADERS payload without its padding and priority fields, and whether the priority made
/// the stream depend on itself (a stream error, raised once the block is decoded).
pub fn header_fragment(flags: u8, stream_id: u32, payload: &[u8]) -> H2Result<(&[u8], bool)> {
    let payload = if flags & PADDED != 0 { unpad(payload)? } else { payload };
    if flags & PRIORITY_FLAG == 0 {
        return Ok((payload, false));
    }
    if payload.len() < 5 {
        return Err(H2Error::connection(ErrorCode::FrameSizeError,
                                       "HEADERS too short for priority"));
    }
    Ok((&payload[5..], depends_on_itself(stream_id, payload)))
}

pub fn depends_on_itself(stream_id: u32, priority: &[u8]) -> bool {
    u32_at(priority, 0) & STREAM_ID_MASK == stream_id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_into_continuations() {
        let block: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        headers(&mut out, 3, &block, true, 100);
        let first = FrameHeader::parse(&out);
        assert_eq!((first.length, first.ftype, first.flags), (100, HEADERS, END_STREAM));
        let second = FrameHeader::parse(&out[109..]);
        assert_eq!((second.length, second.ftype, second.flags), (100, CONTINUATION, 0));
        let third = FrameHeader::parse(&out[218..]);
        assert_eq!((third.length, third.ftype, third.flags), (56, CONTINUATION, END_HEADERS));
        assert_eq!(out.len(), 27 + 256);
    }

    #[test]
    fn padding_and_priority_are_removed() {
        assert_eq!(unpad(&[2, 7, 8, 0, 0]).unwrap(), &[7, 8]);
        assert!(matches!(unpad(&[]), Err(H2Error::Connection { code: ErrorCode::FrameSizeError, .. })));
        assert!(matches!(unpad(&[1]), Err(H2Error::Connection { code: ErrorCode::ProtocolError, .. })));
        let payload = [0, 0, 0, 5, 16, 0xAA];
        assert_eq!(header_fragment(PRIORITY_FLAG, 5, &payload).unwrap(), (&[0xAA][..], true));
        assert_eq!(header_fragment(PRIORITY_FLAG, 7, &payload).unwrap(), (&[0xAA][..], false));
    }
}
