//! The HTTP/1.1 connection reader on untrusted reads: whatever the bytes and however they are
//! cut into reads, it never panics, holds at most one head and one body, hands the general
//! path every byte it did not read as a request (once, and then reads nothing more), and
//! every request it reads decodes into work the native engine decides (on its memory store,
//! over a small rule set) into an answer that frames.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use viva_native::engine::{Engine, EngineOptions, Jitter};
use viva_native::http1::answer::Families;
use viva_native::http1::check::BodyLimits;
use viva_native::http1::conn::{Conn, End, Event};
use viva_native::http1::forward::ForwardOptions;
use viva_native::http1::head::MAX_HEAD_BYTES;
use viva_native::http1::response::Framing;
use viva_native::http1::routes::Routes;
use viva_native::http1::serve::{work, Config, Work};
use viva_native::http1::service::Http1Service;
use viva_native::rules::{DomainSpec, LimitSpec, NodeSpec, RuleSetBuilder};

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

/// Domain `api`: `identifier` (any value) 3 a minute, `user` a token bucket of 2 a second.
fn engine() -> Engine {
    let limit = |rpu, unit, key: &str, algorithm: &str| LimitSpec {
        requests_per_unit: rpu,
        unit,
        stats_key: key.into(),
        name: String::new(),
        unlimited: false,
        shadow_mode: false,
        quota_mode: false,
        detailed_metric: false,
        replaces: vec![],
        algorithm: algorithm.into(),
        window_ms: 0,
        burst: 0,
        count_rejected: true,
        calendar: false,
    };
    let mut b = RuleSetBuilder::new();
    let mut leaf = |key: &str, spec| {
        let limit = Some(b.add_limit(spec).expect("a valid limit"));
        b.add_node(NodeSpec {
            key: key.into(),
            limit,
            ..NodeSpec::default()
        })
    };
    let identifier = leaf("identifier", limit(3, 2, "api.identifier", "fixed_window"));
    let user = leaf("user", limit(2, 1, "api.user", "token_bucket"));
    let root = b.add_node(NodeSpec {
        key: "api".into(),
        children: vec![("identifier".into(), identifier), ("user".into(), user)],
        ..NodeSpec::default()
    });
    b.add_domain(DomainSpec {
        name: "api".into(),
        root,
        time_zone: "UTC".into(),
        ..DomainSpec::default()
    });
    let mut engine = Engine::new(
        EngineOptions::default(),
        Jitter::Fixed {
            values: vec![7],
            next: 0,
        },
    );
    engine.set_rules(Arc::new(b.build().expect("a valid rule set")));
    engine
}

fuzz_target!(|data: &[u8]| {
    // The first bytes choose where the reads are cut.
    let (cuts, bytes) = data.split_at(data.len().min(4));
    let config = config();
    let mut engine = engine();
    let mut service = Http1Service::new(false);
    let mut now_ms = 1_800_000_000_000_i64;
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
                now_ms += 250;
                let now = now_ms as f64 / 1000.0;
                let held = service.offer(&mut engine, &config, call, now_ms, now, &mut out);
                assert!(held.is_none(), "the memory store decides at once");
                assert!(out.starts_with(b"HTTP/1."));
                out.clear();
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
