//! HPACK (RFC 7541): a complete decoder and the few encoder primitives the server needs.
//!
//! The decoder keeps the dynamic table, honours table size updates (only at the start of a
//! block, never above the size we advertised), decodes Huffman strings and bounds the decoded
//! header list. `generation` changes whenever the dynamic table does, so a caller may cache what
//! a block decoded to, keyed by its bytes, while the generation stays the same: the index-only
//! fast path for clients (Envoy, nghttp2) that repeat one all-indexed block on every request.
//!
//! The encoder never uses the peer's dynamic table: every block we send is static-indexed or
//! literal-without-indexing, so responses are precomputed once and reused.

use std::collections::VecDeque;

use super::error::HpackError;
use super::huffman;

pub type Header = (Vec<u8>, Vec<u8>);

pub const ENTRY_OVERHEAD: usize = 32; // RFC 7541 section 4.1
pub const DEFAULT_TABLE_SIZE: usize = 4096;
const MAX_INTEGER: u64 = 1 << 32; // no size or index is that big: larger is hostile

pub const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""), (b":method", b"GET"), (b":method", b"POST"), (b":path", b"/"),
    (b":path", b"/index.html"), (b":scheme", b"http"), (b":scheme", b"https"),
    (b":status", b"200"), (b":status", b"204"), (b":status", b"206"), (b":status", b"304"),
    (b":status", b"400"), (b":status", b"404"), (b":status", b"500"), (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"), (b"accept-language", b""), (b"accept-ranges", b""),
    (b"accept", b""), (b"access-control-allow-origin", b""), (b"age", b""), (b"allow", b""),
    (b"authorization", b""), (b"cache-control", b""), (b"content-disposition", b""),
    (b"content-encoding", b""), (b"content-language", b""), (b"content-length", b""),
    (b"content-location", b""), (b"content-range", b""), (b"content-type", b""),
    (b"cookie", b""), (b"date", b""), (b"etag", b""), (b"expect", b""), (b"expires", b""),
    (b"from", b""), (b"host", b""), (b"if-match", b""), (b"if-modified-since", b""),
    (b"if-none-match", b""), (b"if-range", b""), (b"if-unmodified-since", b""),
    (b"last-modified", b""), (b"link", b""), (b"location", b""), (b"max-forwards", b""),
    (b"proxy-authenticate", b""), (b"proxy-authorization", b""), (b"range", b""),
    (b"referer", b""), (b"refresh", b""), (b"retry-after", b""), (b"server", b""),
    (b"set-cookie", b""), (b"strict-transport-security", b""), (b"transfer-encoding", b""),
    (b"user-agent", b""), (b"vary", b""), (b"via", b""), (b"www-authenticate", b""),
];
const STATIC_COUNT: u64 = 61; // index 0 is invalid, 1..=61 static, 62.. dynamic

fn error<T>(message: impl Into<String>) -> Result<T, HpackError> {
    Err(HpackError(message.into()))
}

/// One connection's HPACK decoding context.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// What we advertised: the ceiling for size updates.
    settings_table_size: usize,
    /// The encoder's current choice.
    max_table_size: usize,
    max_header_list_size: usize,
    table_size: usize,
    generation: u64,
    /// Newest first: index 62 is dynamic[0].
    dynamic: VecDeque<Header>,
}

impl Decoder {
    pub fn new(max_table_size: usize, max_header_list_size: usize) -> Decoder {
        Decoder {
            settings_table_size: max_table_size,
            max_table_size,
            max_header_list_size,
            table_size: 0,
            generation: 0,
            dynamic: VecDeque::new(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn table_size(&self) -> usize {
        self.table_size
    }

    pub fn max_table_size(&self) -> usize {
        self.max_table_size
    }

    pub fn max_header_list_size(&self) -> usize {
        self.max_header_list_size
    }

    #[cfg(test)]
    pub fn dynamic_entries(&self) -> impl Iterator<Item = &Header> {
        self.dynamic.iter()
    }

    /// (headers, too_large). Past max_header_list_size the rest of the block is still decoded,
    /// to keep the table in step, but its fields are dropped and too_large is set.
    pub fn decode(&mut self, block: &[u8]) -> Result<(Vec<Header>, bool), HpackError> {
        let mut headers = Vec::new();
        let (mut pos, mut list_size) = (0usize, 0usize);
        let mut at_start = true;
        while pos < block.len() {
            let first = block[pos];
            let field = if first & 0x80 != 0 {
                let index;
                (index, pos) = integer(block, pos, 0x7F)?;
                self.field(index)?
            } else if first & 0x40 != 0 {
                let field;
                (field, pos) = self.literal(block, pos, 0x3F)?;
                self.insert(&field);
                field
            } else if first & 0x20 != 0 {
                if !at_start {
                    return error("dynamic table size update after a header field");
                }
                let size;
                (size, pos) = integer(block, pos, 0x1F)?;
                self.resize(size)?;
                continue;
            } else {
                let field;
                (field, pos) = self.literal(block, pos, 0x0F)?;
                field
            };
            at_start = false;
            list_size += field.0.len() + field.1.len() + ENTRY_OVERHEAD;
            if list_size <= self.max_header_list_size {
                headers.push(field);
            }
        }
        Ok((headers, list_size > self.max_header_list_size))
    }

    fn field(&self, index: u64) -> Result<Header, HpackError> {
        if index <= STATIC_COUNT {
            if index == 0 {
                return error("indexed header field with index 0");
            }
            let (name, value) = STATIC_TABLE[(index - 1) as usize];
            return Ok((name.to_vec(), value.to_vec()));
        }
        match self.dynamic.get((index - STATIC_COUNT - 1) as usize) {
            Some(field) => Ok(field.clone()),
            None => error(format!("header index {index} is past the end of the tables")),
        }
    }

    fn literal(&self, block: &[u8], pos: usize, mask: u8) -> Result<(Header, usize), HpackError> {
        let (index, pos) = integer(block, pos, mask)?;
        let (name, pos) = if index != 0 {
            (self.field(index)?.0, pos)
        } else {
            string(block, pos)?
        };
        let (value, pos) = string(block, pos)?;
        Ok(((name, value), pos))
    }

    fn insert(&mut self, field: &Header) {
        self.generation += 1;
        let size = field.0.len() + field.1.len() + ENTRY_OVERHEAD;
        if size > self.max_table_size {
            // RFC 7541 4.4: an entry larger than the table empties it.
            self.dynamic.clear();
            self.table_size = 0;
            return;
        }
        self.dynamic.push_front(field.clone());
        self.table_size += size;
        self.evict();
    }

    fn resize(&mut self, size: u64) -> Result<(), HpackError> {
        if size > self.settings_table_size as u64 {
            return error(format!("dynamic table size update to {size} exceeds the {} we allow",
                                 self.settings_table_size));
        }
        self.generation += 1;
        self.max_table_size = size as usize;
        self.evict();
        Ok(())
    }

    fn evict(&mut self) {
        while self.table_size > self.max_table_size {
            let Some((name, value)) = self.dynamic.pop_back() else { break };
            self.table_size -= name.len() + value.len() + ENTRY_OVERHEAD;
        }
    }
}

/// An N-bit prefix integer starting at data[pos] (RFC 7541 5.1) and the next position.
fn integer(data: &[u8], pos: usize, mask: u8) -> Result<(u64, usize), HpackError> {
    let mut value = u64::from(data[pos] & mask);
    let mut pos = pos + 1;
    if value < u64::from(mask) {
        return Ok((value, pos));
    }
    let mut shift = 0u32;
    loop {
        let Some(&byte) = data.get(pos) else {
            return error("header block ends inside an integer");
        };
        pos += 1;
        value += u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            if value >= MAX_INTEGER {
                return error("integer too large");
            }
            return Ok((value, pos));
        }
        shift += 7;
        if shift > 28 {
            // Five continuation bytes carry 35 bits: more is padding or an attack.
            return error("integer too large");
        }
    }
}

fn string(data: &[u8], pos: usize) -> Result<(Vec<u8>, usize), HpackError> {
    let Some(&first) = data.get(pos) else {
        return error("header block ends before a string literal");
    };
    let (length, pos) = integer(data, pos, 0x7F)?;
    let end = pos as u64 + length;
    if end > data.len() as u64 {
        return error("string literal runs past the end of the header block");
    }
    let raw = &data[pos..end as usize];
    if first & 0x80 == 0 {
        return Ok((raw.to_vec(), end as usize));
    }
    let mut out = Vec::with_capacity(raw.len() * 8 / 5);
    huffman::decode(raw, &mut out)?;
    Ok((out, end as usize))
}

// -- encoding (precomputed blocks only) -------------------------------------------------------

/// `value` with an N-bit prefix; `first` holds the representation's high bits.
pub fn encode_integer(out: &mut Vec<u8>, value: u64, prefix_bits: u32, first: u8) {
    let limit = (1u64 << prefix_bits) - 1;
    if value < limit {
        out.push(first | value as u8);
        return;
    }
    out.push(first | limit as u8);
    let mut rest = value - limit;
    while rest >= 0x80 {
        out.push((rest & 0x7F) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

pub fn encode_string(out: &mut Vec<u8>, value: &[u8], huffman: bool) {
    if huffman {
        let mut coded = Vec::new();
        huffman::encode(value, &mut coded);
        encode_integer(out, coded.len() as u64, 7, 0x80);
        out.extend_from_slice(&coded);
    } else {
        encode_integer(out, value.len() as u64, 7, 0);
        out.extend_from_slice(value);
    }
}

/// A field that never touches either dynamic table: static index when the whole field is in
/// the static table, else literal without indexing (name indexed when it can be).
pub fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8], huffman: bool) {
    if let Some(i) = STATIC_TABLE.iter().position(|&(n, v)| n == name && v == value) {
        encode_integer(out, i as u64 + 1, 7, 0x80);
        return;
    }
    let name_index = STATIC_TABLE.iter().position(|&(n, _)| n == name).map_or(0, |i| i + 1);
    encode_integer(out, name_index as u64, 4, 0x00);
    if name_index == 0 {
        encode_string(out, name, huffman);
    }
    encode_string(out, value, huffman);
}

pub fn encode_block(headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        encode_literal(&mut out, name, value, false);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let clean: String = text.split_whitespace().collect();
        (0..clean.len()).step_by(2).map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect()
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<Header> {
        pairs.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut decoder = Decoder::new(4096, 16384);
        let blocks = ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
                      "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"];
        let expected = [
            fields(&[(":method", "GET"), (":scheme", "http"), (":path", "/"),
                     (":authority", "www.example.com")]),
            fields(&[(":method", "GET"), (":scheme", "http"), (":path", "/"),
                     (":authority", "www.example.com"), ("cache-control", "no-cache")]),
            fields(&[(":method", "GET"), (":scheme", "https"), (":path", "/index.html"),
                     (":authority", "www.example.com"), ("custom-key", "custom-value")]),
        ];
        for (block, want) in blocks.iter().zip(expected) {
            assert_eq!(decoder.decode(&hex(block)).unwrap(), (want, false));
        }
        assert_eq!(decoder.table_size(), 164);
    }

    #[test]
    fn rfc7541_c5_responses_evict() {
        let mut decoder = Decoder::new(256, 16384);
        let blocks = [
            "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a3231\
             20474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
            "4803333037c1c0bf",
            "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a6970\
             7738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167\
             653d333630303b2076657273696f6e3d31",
        ];
        let mut last = Vec::new();
        for block in blocks {
            last = decoder.decode(&hex(block)).unwrap().0;
        }
        assert_eq!(last[0], (b":status".to_vec(), b"200".to_vec()));
        assert_eq!(decoder.table_size(), 215);
    }

    #[test]
    fn invalid_blocks_name_the_problem() {
        let cases = [
            ("80", "index 0"), ("be", "past the end"), ("ff80808080808080", "integer too large"),
            ("ff", "ends inside an integer"), ("40", "ends before a string"),
            ("4005", "runs past the end"), ("3fe21f", "exceeds"), ("8220", "after a header field"),
            ("4084ffffffff01 78", "EOS"), ("408100 0178", "padding"),
        ];
        for (block, problem) in cases {
            let err = Decoder::new(4096, 16384).decode(&hex(block)).unwrap_err();
            assert!(err.0.contains(problem), "{block}: {}", err.0);
        }
    }

    #[test]
    fn header_list_limit_drops_fields_but_keeps_the_table() {
        let mut decoder = Decoder::new(4096, 100);
        let mut block = Vec::new();
        for (name, value) in [(&b"x-a"[..], [b'a'; 60]), (&b"x-b"[..], [b'b'; 60])] {
            encode_integer(&mut block, 0, 6, 0x40);
            encode_string(&mut block, name, false);
            encode_string(&mut block, &value, true);
        }
        let (headers, too_large) = decoder.decode(&block).unwrap();
        assert!(too_large);
        assert_eq!(headers.len(), 1);
        assert_eq!(decoder.dynamic_entries().count(), 2);
    }

    #[test]
    fn literals_use_static_names() {
        let block = encode_block(&[(b":status", b"200"), (b"content-type", b"application/grpc"),
                                   (b"grpc-status", b"0")]);
        let mut want = vec![0x88, 0x0f, 0x10, 16];
        want.extend_from_slice(b"application/grpc");
        want.extend_from_slice(&[0x00, 11]);
        want.extend_from_slice(b"grpc-status");
        want.extend_from_slice(&[1, b'0']);
        assert_eq!(block, want);
    }
}
