//! The HTTP/1.1 connection reader on untrusted reads: whatever the bytes and however they are
//! cut into reads, it never panics, holds at most one head and one body, hands the general
//! path every byte it did not read as a request (once, and then reads nothing more), and
//! every request it reads decodes into work whose answer frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use viva_native::http1::answer::{Families, LimitView, StatusView};
use viva_native::http1::check::BodyLimits;
use viva_native::http1::conn::{Conn, End, Event};
use viva_native::http1::forward::ForwardOptions;
use viva_native::http1::head::MAX_HEAD_BYTES;
use viva_native::http1::response::Framing;
use viva_native::http1::routes::Routes;
use viva_native::http1::serve::{work, Config, Work};

const MAX_BODY: usize = 1024;

fn config() -> Config {
    Config {
        routes: Routes {
            full: true,
            max_body_bytes: MAX_BODY,
            json_max_body_bytes: MAX_BODY,
        },
        limits: BodyLimits {
            max_descriptors: 4,
            max_entries: 4,
            max_hits: 100,
        },
        forward: ForwardOptions {
            identifier_header: "X-Forwarded-For".into(),
            xff_index: -1,
            namespace_header: "X-RateLimit-Namespace".into(),
            default_namespace: String::new(),
            hash_identifier: true,
            deny_status: 403,
        },
        families: Families {
            ietf: true,
            x: true,
            retry_after: true,
        },
        framing: Framing {
            server: "fuzz".into(),
            reasons: vec![(200, "OK".into())],
        },
    }
}

fuzz_target!(|data: &[u8]| {
    // The first bytes choose where the reads are cut.
    let (cuts, bytes) = data.split_at(data.len().min(4));
    let config = config();
    let mut conn = Conn::new(config.routes.clone());
    let mut at = 0;
    let mut cut = cuts.iter().cycle();
    let mut over = false;
    while at < bytes.len() {
        let len = usize::from(*cut.next().unwrap_or(&255)).max(1);
        let read = &bytes[at..(at + len).min(bytes.len())];
        at += read.len();
        let mut out = Vec::new();
        let end = conn.feed(read, &mut |event| {
            let Event::Request(request) = event else {
                return;
            };
            assert!(request.body.len() <= MAX_BODY);
            if let Work::Call(call) = work(request, &config) {
                let limit = LimitView {
                    name: "",
                    requests_per_unit: 3,
                    unit: 2,
                    window_ms: 60_000,
                };
                let status = StatusView {
                    code: 2,
                    limit: Some(limit),
                    remaining: 0,
                    reset_seconds: 7,
                    reset_ms: Some(6500),
                };
                let statuses = vec![status; call.descriptors.len()];
                call.answer(&config, 2, &statuses, &[], 1.5, &mut out);
                assert!(out.starts_with(b"HTTP/1."));
            }
        });
        if over {
            assert_eq!(
                end,
                End::Close,
                "nothing is read once the connection is over"
            );
        }
        match end {
            // a chunked body costs at most 21 bytes a byte (a zero-padded size line per byte)
            End::Open => assert!(conn.buffered() <= MAX_HEAD_BYTES + 21 * MAX_BODY + read.len()),
            End::Close => over = true,
            End::Handoff(rest) => {
                assert!(!rest.is_empty());
                assert!(rest.len() <= bytes.len());
                over = true;
            }
        }
    }
});
