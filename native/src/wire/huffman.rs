//! HPACK Huffman coding (RFC 7541 section 5.2 and appendix B).
//!
//! Decoding walks the code tree a nibble at a time through a table built once: the states are
//! the tree's 256 internal nodes, and a nibble completes at most one symbol because the
//! shortest code is 5 bits long.

use std::sync::OnceLock;

use super::error::HpackError;

/// (code, length in bits) for symbols 0..=255 and EOS (256), from RFC 7541 appendix B.
pub const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28), (0xfffffe4, 28),
    (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28), (0xfffffe8, 28), (0xffffea, 24),
    (0x3ffffffc, 30), (0xfffffe9, 28), (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28),
    (0xfffffec, 28), (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28),
    (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28), (0xffffff4, 28),
    (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28), (0xffffff8, 28), (0xffffff9, 28),
    (0xffffffa, 28), (0xffffffb, 28), (0x14, 6), (0x3f8, 10), (0x3f9, 10),
    (0xffa, 12), (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11),
    (0x3fa, 10), (0x3fb, 10), (0xf9, 8), (0x7fb, 11), (0xfa, 8),
    (0x16, 6), (0x17, 6), (0x18, 6), (0x0, 5), (0x1, 5),
    (0x2, 5), (0x19, 6), (0x1a, 6), (0x1b, 6), (0x1c, 6),
    (0x1d, 6), (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10), (0x1ffa, 13),
    (0x21, 6), (0x5d, 7), (0x5e, 7), (0x5f, 7), (0x60, 7),
    (0x61, 7), (0x62, 7), (0x63, 7), (0x64, 7), (0x65, 7),
    (0x66, 7), (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7),
    (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7), (0x6f, 7),
    (0x70, 7), (0x71, 7), (0x72, 7), (0xfc, 8), (0x73, 7),
    (0xfd, 8), (0x1ffb, 13), (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14),
    (0x22, 6), (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5),
    (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6), (0x27, 6),
    (0x6, 5), (0x74, 7), (0x75, 7), (0x28, 6), (0x29, 6),
    (0x2a, 6), (0x7, 5), (0x2b, 6), (0x76, 7), (0x2c, 6),
    (0x8, 5), (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15), (0x7fc, 11),
    (0x3ffd, 14), (0x1ffd, 13), (0xffffffc, 28), (0xfffe6, 20), (0x3fffd2, 22),
    (0xfffe7, 20), (0xfffe8, 20), (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22),
    (0x7fffd9, 23), (0x3fffd6, 22), (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23),
    (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23), (0xffffec, 24),
    (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23), (0xffffee, 24), (0x7fffe1, 23),
    (0x7fffe2, 23), (0x7fffe3, 23), (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22),
    (0x7fffe5, 23), (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24),
    (0x3fffda, 22), (0x1fffdd, 21), (0xfffe9, 20), (0x3fffdb, 22), (0x3fffdc, 22),
    (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21), (0x7fffea, 23), (0x3fffdd, 22),
    (0x3fffde, 22), (0xfffff0, 24), (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23),
    (0x7fffec, 23), (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23), (0xfffea, 20),
    (0x3fffe2, 22), (0x3fffe3, 22), (0x3fffe4, 22), (0x7ffff0, 23), (0x3fffe5, 22),
    (0x3fffe6, 22), (0x7ffff1, 23), (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20),
    (0x7fff1, 19), (0x3fffe7, 22), (0x7ffff2, 23), (0x3fffe8, 22), (0x1ffffec, 25),
    (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27), (0x7ffffdf, 27),
    (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25), (0x7fff2, 19), (0x1fffe3, 21),
    (0x3ffffe6, 26), (0x7ffffe0, 27), (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27),
    (0xfffff2, 24), (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26),
    (0xffffffd, 28), (0x7ffffe3, 27), (0x7ffffe4, 27), (0x7ffffe5, 27), (0xfffec, 20),
    (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21), (0x3fffe9, 22), (0x1fffe7, 21),
    (0x1fffe8, 21), (0x7ffff3, 23), (0x3fffea, 22), (0x3fffeb, 22), (0x1ffffee, 25),
    (0x1ffffef, 25), (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26), (0x7ffffe7, 27),
    (0x7ffffe8, 27), (0x7ffffe9, 27), (0x7ffffea, 27), (0x7ffffeb, 27), (0xffffffe, 28),
    (0x7ffffec, 27), (0x7ffffed, 27), (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27),
    (0x3ffffee, 26), (0x3fffffff, 30),
];

const EOS: i16 = 256;
const NO_SYMBOL: i16 = -1;

struct Tables {
    /// (state << 4 | nibble) -> the state after the nibble.
    next: Vec<u8>,
    /// (state << 4 | nibble) -> the symbol the nibble completed, or NO_SYMBOL.
    emit: Vec<i16>,
    /// States a string may end in: the all-ones path of at most 7 bits (EOS prefix padding).
    accept: [bool; 256],
}

/// Internal nodes as [child0, child1]: a child > 0 is a node index, < 0 is !symbol, 0 none.
fn build_tree() -> Vec<[i32; 2]> {
    let mut nodes: Vec<[i32; 2]> = vec![[0, 0]];
    for (symbol, &(code, length)) in CODES.iter().enumerate() {
        let mut node = 0usize;
        for shift in (1..length).rev() {
            let bit = ((code >> shift) & 1) as usize;
            if nodes[node][bit] == 0 {
                nodes.push([0, 0]);
                nodes[node][bit] = (nodes.len() - 1) as i32;
            }
            node = nodes[node][bit] as usize;
        }
        nodes[node][(code & 1) as usize] = !(symbol as i32);
    }
    nodes
}

fn build_tables() -> Tables {
    let nodes = build_tree();
    assert_eq!(nodes.len(), 256, "a complete code over 257 symbols has 256 internal nodes");
    let mut next = vec![0u8; 256 * 16];
    let mut emit = vec![NO_SYMBOL; 256 * 16];
    for state in 0..nodes.len() {
        for nibble in 0..16usize {
            let (mut node, mut symbol) = (state, NO_SYMBOL);
            for shift in (0..4).rev() {
                let child = nodes[node][(nibble >> shift) & 1];
                if child < 0 {
                    symbol = (!child) as i16;
                    node = 0;
                } else {
                    node = child as usize;
                }
            }
            next[(state << 4) | nibble] = node as u8;
            emit[(state << 4) | nibble] = symbol;
        }
    }
    let mut accept = [false; 256];
    let mut node = 0usize;
    for _ in 0..8 {
        accept[node] = true;
        node = nodes[node][1].max(0) as usize;
    }
    Tables { next, emit, accept }
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(build_tables)
}

/// Decode a Huffman-coded string literal, appending to `out`.
pub fn decode(data: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let t = tables();
    let mut state = 0usize;
    for &byte in data {
        for nibble in [byte >> 4, byte & 0x0F] {
            let i = (state << 4) | usize::from(nibble);
            let symbol = t.emit[i];
            state = usize::from(t.next[i]);
            if symbol >= 0 {
                if symbol == EOS {
                    return Err(HpackError("Huffman-coded string contains EOS".into()));
                }
                out.push(symbol as u8);
            }
        }
    }
    if !t.accept[state] {
        return Err(HpackError("Huffman-coded string has invalid padding".into()));
    }
    Ok(())
}

/// Huffman-code `data`, padding the last byte with the high bits of EOS (ones).
pub fn encode(data: &[u8], out: &mut Vec<u8>) {
    let (mut acc, mut bits) = (0u64, 0u32);
    for &byte in data {
        let (code, length) = CODES[usize::from(byte)];
        acc = (acc << length) | u64::from(code);
        bits += u32::from(length);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        let pad = 8 - bits;
        out.push((((acc << pad) | ((1 << pad) - 1)) & 0xFF) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8]) -> Vec<u8> {
        let mut coded = Vec::new();
        encode(data, &mut coded);
        let mut decoded = Vec::new();
        decode(&coded, &mut decoded).unwrap();
        decoded
    }

    #[test]
    fn rfc7541_example() {
        // C.4.1: "www.example.com".
        let coded = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        let mut out = Vec::new();
        decode(&coded, &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
        let mut encoded = Vec::new();
        encode(b"www.example.com", &mut encoded);
        assert_eq!(encoded, coded);
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(roundtrip(&all), all);
        assert_eq!(roundtrip(b""), b"");
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        let mut out = Vec::new();
        assert!(decode(&[0x00], &mut out).is_err()); // zero padding
        assert!(decode(&[0xff, 0xff], &mut out).is_err()); // more than 7 bits of padding
        assert!(decode(&[0xff, 0xff, 0xff, 0xff], &mut out).is_err()); // EOS
    }
}
