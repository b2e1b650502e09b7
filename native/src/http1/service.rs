//! The engine behind the HTTP/1.1 fast path: the check endpoints' calls decided inside the
//! read that brought them, and counted as `sidecar/service.py` counts the general path's (one
//! [`CallMetrics`] per endpoint, under its `grpc_method` label), so Python only exports the
//! counts on scrape.
//!
//! On the memory store a call is decided and answered at once. On Redis it is held: planned
//! later, with the other calls of the event-loop turn (the fast gRPC transport's too), into
//! one `RedisBatch`, and answered when the batch is done ([`Http1Service::finish`]). Either
//! way the answer is the general path's, byte for byte: the decision as `answers.py` (or, for
//! /json, `MessageToJson`) shows it, and an engine error with the status of
//! `service.failure_of` in the words of `handlers.rest_failure` (or `http.json_failure`).

use std::time::Instant;

use super::answer::{LimitView, StatusView};
use super::serve::{Call, CallKind, Config};
use crate::engine::{Decision, Engine, EngineError};
use crate::service::CallMetrics;

/// The `grpc_method` label of each endpoint's requests, in [`Http1Service::metrics`] order
/// (`transports/rest/handlers.py` and `transports/http.py` name them so).
pub const METHODS: [&str; 4] = ["rest_check", "rest_report", "forward_auth", "json"];

/// A call held for a Redis batch.
#[derive(Debug)]
pub struct Held {
    pub call: Call,
    pub now_ms: i64,
    started: Instant,
}

pub struct Http1Service {
    /// Per endpoint, as [`METHODS`].
    pub metrics: [CallMetrics; 4],
    /// Calls are held for Redis instead of decided on the memory store.
    pub redis: bool,
}

impl Http1Service {
    pub fn new(redis: bool) -> Http1Service {
        Http1Service {
            metrics: Default::default(),
            redis,
        }
    }

    /// Decide `call` at `now_ms` with `engine`, its answer appended to `out` (`now`: the same
    /// instant in seconds, which the answer's `reset_at` counts from); or, on Redis, the call
    /// back to be held.
    pub fn offer(
        &mut self,
        engine: &mut Engine,
        config: &Config,
        call: Call,
        now_ms: i64,
        now: f64,
        out: &mut Vec<u8>,
    ) -> Option<Held> {
        let started = Instant::now();
        let metrics = &mut self.metrics[method(call.kind)];
        metrics.requests += 1;
        if self.redis {
            metrics.in_flight += 1;
            return Some(Held {
                call,
                now_ms,
                started,
            });
        }
        let result = engine.decide(&call.engine_request(now_ms));
        metrics.observe(started.elapsed().as_secs_f64());
        respond(config, &call, &result, now, metrics, out);
        None
    }

    /// The answer to a held call whose batch ended with `result`, appended to `out`.
    pub fn finish(
        &mut self,
        config: &Config,
        held: &Held,
        result: &Result<Decision, EngineError>,
        now: f64,
        out: &mut Vec<u8>,
    ) {
        let metrics = &mut self.metrics[method(held.call.kind)];
        metrics.in_flight -= 1;
        metrics.observe(held.started.elapsed().as_secs_f64());
        respond(config, &held.call, result, now, metrics, out);
    }
}

fn method(kind: CallKind) -> usize {
    match kind {
        CallKind::Check { .. } => 0,
        CallKind::Report { .. } => 1,
        CallKind::ForwardAuth { .. } => 2,
        CallKind::Json => 3,
    }
}

fn respond(
    config: &Config,
    call: &Call,
    result: &Result<Decision, EngineError>,
    now: f64,
    metrics: &mut CallMetrics,
    out: &mut Vec<u8>,
) {
    match result {
        Ok(decision) => {
            let statuses = views(decision);
            call.answer(
                config,
                decision.overall as u8,
                &statuses,
                &decision.headers,
                now,
                out,
            );
        }
        Err(error) => {
            metrics.count_error(error);
            call.failure(config, http_status(error), &error.to_string(), out);
        }
    }
}

/// `service.failure_of`'s HTTP status: the engine's errors are a bad request, or no decision
/// now (the store or the rules are missing: the caller's failure mode decides).
fn http_status(error: &EngineError) -> u16 {
    match error {
        EngineError::Request(_) => 400,
        EngineError::Storage { .. } | EngineError::NoRules => 503,
    }
}

/// The decision's statuses as the answers show them.
pub fn views(decision: &Decision) -> Vec<StatusView<'_>> {
    decision
        .statuses
        .iter()
        .map(|s| StatusView {
            code: s.code as u8,
            limit: s.limit.as_deref().map(|l| LimitView {
                name: &l.name,
                requests_per_unit: l.requests_per_unit,
                unit: l.unit as u8,
                window_ms: l.window_length_ms(),
            }),
            remaining: s.remaining,
            reset_seconds: s.reset_seconds,
            reset_ms: s.reset_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::{EngineOptions, Jitter};
    use crate::http1::answer::Families;
    use crate::http1::check::BodyLimits;
    use crate::http1::conn::{Conn, Event};
    use crate::http1::forward::ForwardOptions;
    use crate::http1::response::Framing;
    use crate::http1::routes::Routes;
    use crate::http1::serve::{work, Work};
    use crate::rls::Unit;
    use crate::rules::testing::{domain, leaf, limit};
    use crate::rules::RuleSetBuilder;

    fn config() -> Config {
        Config {
            routes: Routes {
                full: false,
                max_body_bytes: 1024,
                json_max_body_bytes: 1024,
            },
            limits: BodyLimits {
                max_descriptors: 4,
                max_entries: 4,
                max_hits: 100,
            },
            forward: ForwardOptions {
                identifier_header: "X-Forwarded-For".into(),
                xff_index: 1,
                namespace_header: "X-RateLimit-Namespace".into(),
                default_namespace: String::new(),
                hash_identifier: false,
                deny_status: 429,
            },
            families: Families {
                ietf: true,
                x: true,
                retry_after: true,
            },
            framing: Framing {
                server: "test".into(),
                reasons: vec![
                    (200, "OK".into()),
                    (400, "Bad Request".into()),
                    (429, "Too Many Requests".into()),
                    (503, "Service Unavailable".into()),
                ],
            },
        }
    }

    fn engine(with_rules: bool) -> Engine {
        let mut engine = Engine::new(
            EngineOptions::default(),
            Jitter::Fixed {
                values: vec![0],
                next: 0,
            },
        );
        if with_rules {
            let mut b = RuleSetBuilder::new();
            let n = leaf(
                &mut b,
                "identifier",
                "",
                Some(limit(2, Unit::Minute, "api.identifier")),
            );
            domain(&mut b, "api", &[("identifier", "", n)]);
            engine.set_rules(Arc::new(b.build().unwrap()));
        }
        engine
    }

    /// The calls of `data`, as the fast path reads them.
    fn calls(data: &[u8], config: &Config) -> Vec<Call> {
        let mut conn = Conn::new(config.routes.clone());
        let mut out = Vec::new();
        conn.feed(data, &mut |event| {
            if let Event::Request(request) = event {
                match work(request, config) {
                    Work::Call(call) => out.push(call),
                    Work::Refer(_) => panic!("referred"),
                }
            }
        });
        out
    }

    fn post(path: &str, body: &str) -> Vec<u8> {
        format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn status_and_body(answer: &[u8]) -> (String, String) {
        let text = String::from_utf8_lossy(answer);
        let status = text.split(' ').nth(1).unwrap().to_owned();
        let body = text.split("\r\n\r\n").nth(1).unwrap().to_owned();
        (status, body)
    }

    #[test]
    fn memory_calls_are_answered_and_counted_per_endpoint() {
        let (config, mut engine) = (config(), engine(true));
        let mut service = Http1Service::new(false);
        let check = post("/v1/check", r#"{"namespace": "api", "identifier": "u"}"#);
        let json = post(
            "/json",
            r#"{"domain": "api", "descriptors": [{"entries":
            [{"key": "identifier", "value": "u"}]}]}"#,
        );
        let data = [&check[..], &check, &json].concat();
        let mut answers = Vec::new();
        for call in calls(&data, &config) {
            let mut out = Vec::new();
            let held = service.offer(&mut engine, &config, call, 1_000_000, 1000.0, &mut out);
            assert!(held.is_none());
            answers.push(status_and_body(&out));
        }
        assert_eq!(answers[0].0, "200");
        assert!(answers[0]
            .1
            .starts_with(r#"{"allowed": true, "limit": 2, "remaining": 1"#));
        assert!(answers[1]
            .1
            .starts_with(r#"{"allowed": true, "limit": 2, "remaining": 0"#));
        assert_eq!(answers[2].0, "429"); // the third hit of the same counter
        assert!(answers[2].1.starts_with(r#"{"overallCode": "OVER_LIMIT""#));
        let counted: Vec<u64> = service
            .metrics
            .iter_mut()
            .map(|m| m.take().requests)
            .collect();
        assert_eq!(counted, [2, 0, 0, 1]);
    }

    #[test]
    fn engine_errors_get_the_general_paths_words() {
        let (config, mut engine) = (config(), engine(false));
        let mut service = Http1Service::new(false);
        let data = [
            post("/v1/report", r#"{"namespace": "api", "identifier": "u"}"#),
            post(
                "/json",
                r#"{"descriptors": [{"entries": [{"key": "a", "value": "b"}]}]}"#,
            ),
        ]
        .concat();
        let mut answers = Vec::new();
        for call in calls(&data, &config) {
            let mut out = Vec::new();
            service.offer(&mut engine, &config, call, 0, 0.0, &mut out);
            answers.push(status_and_body(&out));
        }
        assert_eq!(answers[0], ("503".into(), r#"{"error": "cannot decide now: no rate limit configuration loaded", "field": null}"#.into()));
        // /json refuses an empty domain before it looks for rules, as the engine does
        assert_eq!(
            answers[1],
            (
                "400".into(),
                "Bad Request: rate limit domain must not be empty\n".into()
            )
        );
        assert_eq!(service.metrics[1].take().errors, [0, 0, 1, 0]);
        assert_eq!(service.metrics[3].take().errors, [1, 0, 0, 0]);
    }

    #[test]
    fn redis_calls_are_held_then_finished() {
        let (config, mut engine) = (config(), engine(true));
        let mut service = Http1Service::new(true);
        let data = post(
            "/v1/check",
            r#"{"namespace": "api", "identifier": "u", "hits": 0}"#,
        );
        let call = calls(&data, &config).pop().unwrap();
        let held = service
            .offer(&mut engine, &config, call, 5, 0.005, &mut Vec::new())
            .unwrap();
        assert_eq!(
            (held.now_ms, held.call.descriptors[0].hits_addend),
            (5, Some(0))
        );
        assert_eq!(service.metrics[0].in_flight, 1);
        let error = EngineError::Storage {
            message: "redis down".into(),
            transient: true,
        };
        let mut out = Vec::new();
        service.finish(&config, &held, &Err(error), 0.005, &mut out);
        assert_eq!(
            status_and_body(&out),
            (
                "503".into(),
                r#"{"error": "cannot decide now: redis down", "field": null}"#.into()
            )
        );
        let m = service.metrics[0].take();
        assert_eq!((m.requests, m.errors, m.in_flight), (1, [0, 1, 0, 0], 0));
    }
}
