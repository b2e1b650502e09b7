//! The HPACK decoder on untrusted header blocks: it returns headers or an error, never panics,
//! keeps its dynamic table within the size in force and drops fields past the list limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use viva_native::wire::hpack::{Decoder, ENTRY_OVERHEAD};

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(4096, 1024);
    // Several blocks in a row share the table: split at every 0xFF 0xFF.
    for block in data.split(|&b| b == 0xFF).filter(|b| !b.is_empty()) {
        let Ok((headers, _)) = decoder.decode(block) else { return };
        let size: usize = headers.iter().map(|(n, v)| n.len() + v.len() + ENTRY_OVERHEAD).sum();
        assert!(size <= decoder.max_header_list_size());
        assert!(decoder.table_size() <= decoder.max_table_size());
        assert!(decoder.max_table_size() <= 4096);
    }
});
