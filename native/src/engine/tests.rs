//! Engine semantics on the memory store (a few of tests/limiter/test_engine.py's cases; the
//! Python parity properties in tests/native cover the rest against the Python engine itself).

use std::sync::Arc;

use super::*;
use crate::redis::RedisScript;
use crate::rls::{LimitOverride, Unit};
use crate::rules::testing::*;
use crate::rules::{DomainSpec, LimitSpec, NodeSpec, RuleSetBuilder};

const NOW_MS: i64 = 1_000_000_000; // second 1_000_000: its minute window began at 999_960
const OK: Code = Code::Ok;
const OVER: Code = Code::OverLimit;

fn rules() -> Arc<RuleSet> {
    let mut b = RuleSetBuilder::new();
    let three = leaf(&mut b, "three", "", Some(limit(3, Unit::Minute, "d.three")));
    let key2 = leaf(&mut b, "key2", "", Some(limit(20, Unit::Minute, "d.key2")));
    let unlimited = LimitSpec {
        unlimited: true,
        unit: 0,
        ..limit(0, Unit::Unknown, "d.free")
    };
    let free = leaf(&mut b, "free", "", Some(unlimited));
    let shadow = LimitSpec {
        shadow_mode: true,
        ..limit(2, Unit::Minute, "d.shadowed")
    };
    let shadowed = leaf(&mut b, "shadowed", "", Some(shadow));
    let qa = leaf(
        &mut b,
        "quota_a",
        "",
        Some(LimitSpec {
            quota_mode: true,
            ..limit(1, Unit::Minute, "d.quota_a")
        }),
    );
    let qb = leaf(
        &mut b,
        "quota_b",
        "",
        Some(LimitSpec {
            quota_mode: true,
            ..limit(2, Unit::Minute, "d.quota_b")
        }),
    );
    let a = leaf(
        &mut b,
        "a",
        "",
        Some(LimitSpec {
            name: "A".into(),
            replaces: vec!["B".into()],
            ..limit(1, Unit::Minute, "d.a")
        }),
    );
    let bb = leaf(
        &mut b,
        "b",
        "",
        Some(LimitSpec {
            name: "B".into(),
            ..limit(1, Unit::Minute, "d.b")
        }),
    );
    let tokens = LimitSpec {
        algorithm: "token_bucket".into(),
        burst: 4,
        count_rejected: false,
        ..limit(2, Unit::Second, "d.tokens")
    };
    let tokens = leaf(&mut b, "tokens", "", Some(tokens));
    domain(
        &mut b,
        "d",
        &[
            ("three", "", three),
            ("key2", "", key2),
            ("free", "", free),
            ("shadowed", "", shadowed),
            ("quota_a", "", qa),
            ("quota_b", "", qb),
            ("a", "", a),
            ("b", "", bb),
            ("tokens", "", tokens),
        ],
    );
    let small = leaf(
        &mut b,
        "small",
        "",
        Some(LimitSpec {
            count_rejected: false,
            ..limit(2, Unit::Minute, "at.small")
        }),
    );
    let big = LimitSpec {
        algorithm: "token_bucket".into(),
        count_rejected: false,
        ..limit(5, Unit::Minute, "at.big")
    };
    let big = leaf(&mut b, "big", "", Some(big));
    let root = parent(&mut b, "at", "", &[("small", "", small), ("big", "", big)]);
    b.add_domain(DomainSpec {
        name: "at".into(),
        root,
        atomic: true,
        time_zone: "UTC".into(),
        ..DomainSpec::default()
    });
    Arc::new(b.build().unwrap())
}

fn engine(options: EngineOptions) -> Engine {
    let mut e = Engine::new(
        EngineOptions {
            expiration_jitter_max_seconds: 0,
            ..options
        },
        Jitter::Fixed {
            values: vec![0],
            next: 0,
        },
    );
    e.set_rules(rules());
    e
}

fn desc(key: &str, value: &str) -> Descriptor {
    Descriptor {
        entries: vec![(key.into(), value.into())],
        limit: None,
        hits_addend: None,
    }
}

fn hits(d: Descriptor, n: u64) -> Descriptor {
    Descriptor {
        hits_addend: Some(n),
        ..d
    }
}

fn check(e: &mut Engine, domain: &str, descs: &[Descriptor]) -> Decision {
    e.decide(&Request {
        domain,
        descriptors: descs,
        hits_addend: 0,
        now_ms: NOW_MS,
        charge_always: false,
        explicit: &[],
        options: None,
    })
    .unwrap()
}

fn codes(d: &Decision) -> (Code, Vec<Code>) {
    (d.overall, d.statuses.iter().map(|s| s.code).collect())
}

#[test]
fn nth_hit_of_an_n_limit_is_ok_with_nothing_left() {
    let mut e = engine(EngineOptions::default());
    let results: Vec<Decision> = (0..4)
        .map(|_| check(&mut e, "d", &[desc("three", "x")]))
        .collect();
    let overall: Vec<Code> = results.iter().map(|d| d.overall).collect();
    assert_eq!(overall, vec![OK, OK, OK, OVER]);
    let left: Vec<i64> = results.iter().map(|d| d.statuses[0].remaining).collect();
    assert_eq!(left, vec![2, 1, 0, 0]);
    assert_eq!(results[0].statuses[0].reset_seconds, 20);
    let stats = e.take_stats();
    let c = stats.rules[0].2;
    assert_eq!((c.total, c.over, c.near, c.within), (4, 1, 1, 3));
    assert_eq!(e.store_len(), 1);
}

#[test]
fn unlimited_replaced_and_unmatched_descriptors() {
    let mut e = engine(EngineOptions::default());
    let d = check(
        &mut e,
        "d",
        &[
            desc("free", "x"),
            desc("nomatch", "x"),
            desc("a", "1"),
            desc("b", "1"),
        ],
    );
    assert_eq!(d.statuses[0].remaining, UNLIMITED_REMAINING);
    assert!(
        d.statuses[0].limit.is_none()
            && d.statuses[1].limit.is_none()
            && d.statuses[3].limit.is_none()
    );
    assert_eq!(d.statuses[2].limit.as_ref().unwrap().name, "A");
    // only A was counted
    assert_eq!(e.store_len(), 1);
}

#[test]
fn shadow_quota_and_global_shadow() {
    let mut e = engine(EngineOptions::default());
    let d = check(&mut e, "d", &[hits(desc("shadowed", "x"), 3)]);
    assert_eq!(codes(&d), (OK, vec![OK]));
    let d = check(
        &mut e,
        "d",
        &[hits(desc("quota_a", "x"), 2), desc("quota_b", "x")],
    );
    assert_eq!(codes(&d), (OK, vec![OVER, OK])); // one quota descriptor over: not the request
    let d = check(
        &mut e,
        "d",
        &[hits(desc("quota_a", "y"), 2), hits(desc("quota_b", "y"), 3)],
    );
    assert_eq!(d.overall, OVER);
    let mut g = engine(EngineOptions {
        shadow_mode: true,
        ..EngineOptions::default()
    });
    let d = check(&mut g, "d", &[hits(desc("three", "x"), 4)]);
    assert_eq!(codes(&d), (OK, vec![OVER]));
    assert_eq!(g.take_stats().global_shadow, 1);
}

#[test]
fn limit_override_with_its_own_stats_key_and_unit_errors() {
    let mut e = engine(EngineOptions::default());
    let mut d = desc("k", "1.2.3.4");
    d.limit = Some(LimitOverride {
        requests_per_unit: 10,
        unit: Unit::Day as i32,
    });
    let answer = check(&mut e, "d", &[d.clone()]);
    assert_eq!(answer.statuses[0].remaining, 9);
    assert_eq!(
        answer.statuses[0].reset_seconds,
        86_400 - 1_000_000 % 86_400
    );
    assert_eq!(e.take_stats().rules[0].1, "d.k_1_2_3_4");
    d.limit = Some(LimitOverride {
        requests_per_unit: 10,
        unit: 0,
    });
    let err = e.decide(&Request {
        domain: "d",
        descriptors: &[desc("three", "x"), d],
        hits_addend: 0,
        now_ms: NOW_MS,
        charge_always: false,
        explicit: &[],
        options: None,
    });
    assert_eq!(
        err.unwrap_err(),
        EngineError::Request("descriptors[1].limit.unit: 0 is not a unit; expected SECOND, MINUTE, HOUR, DAY, WEEK, MONTH or YEAR".into())
    );
    assert_eq!(e.store_len(), 1); // nothing of that request was charged
}

#[test]
fn request_errors_come_before_the_rules() {
    let mut e = Engine::new(
        EngineOptions::default(),
        Jitter::Random(fastrand::Rng::with_seed(1)),
    );
    let none: &[Descriptor] = &[];
    let one = [desc("k", "v")];
    let req = |domain, descriptors| Request {
        domain,
        descriptors,
        hits_addend: 0,
        now_ms: 0,
        charge_always: false,
        explicit: &[],
        options: None,
    };
    assert_eq!(
        e.decide(&req("", &one)).unwrap_err(),
        EngineError::Request("rate limit domain must not be empty".into())
    );
    assert_eq!(
        e.decide(&req("d", none)).unwrap_err(),
        EngineError::Request("rate limit descriptor list must not be empty".into())
    );
    assert_eq!(e.decide(&req("d", &one)).unwrap_err(), EngineError::NoRules);
    e.set_rules(rules());
    assert!(e.decide(&req("elsewhere", &one)).is_ok());
    assert_eq!(
        e.take_stats().domain_not_found,
        vec![("elsewhere".to_string(), 1)]
    );
}

#[test]
fn response_headers_pick_the_most_constrained_status() {
    let mut e = engine(EngineOptions {
        response_headers: true,
        ..EngineOptions::default()
    });
    let d = check(
        &mut e,
        "d",
        &[desc("key2", "a"), desc("three", "x"), desc("nomatch", "z")],
    );
    let names: Vec<(&str, &str)> = d
        .headers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("RateLimit-Limit", "3"),
            ("RateLimit-Remaining", "2"),
            ("RateLimit-Reset", "20")
        ]
    );
}

#[test]
fn stop_increment_charges_only_the_counters_that_go_over() {
    let mut e = engine(EngineOptions {
        stop_increment_when_over_limit: true,
        ..EngineOptions::default()
    });
    let mut left = Vec::new();
    for _ in 0..5 {
        let d = check(&mut e, "d", &[desc("key2", "r"), desc("three", "r")]);
        left.push(d.statuses[0].remaining);
    }
    assert_eq!(left, vec![19, 18, 17, 17, 17]);
}

#[test]
fn jitter_lengthens_the_life_of_plain_counters() {
    let mut e = Engine::new(
        EngineOptions {
            expiration_jitter_max_seconds: 300,
            ..EngineOptions::default()
        },
        Jitter::Fixed {
            values: vec![250, 7],
            next: 0,
        },
    );
    e.set_rules(rules());
    let mut pending = e
        .plan(&Request {
            domain: "d",
            descriptors: &[desc("three", "x"), desc("key2", "y")],
            hits_addend: 0,
            now_ms: NOW_MS,
            charge_always: false,
            explicit: &[],
            options: None,
        })
        .unwrap();
    let ttls: Vec<i64> = pending.checks.iter().map(|c| c.ttl).collect();
    assert_eq!(ttls, vec![60 + 250, 60 + 7]);
    pending.checks.clear();
}

#[test]
fn local_cache_answers_known_refusals_without_the_store() {
    let mut e = engine(EngineOptions {
        local_cache_bytes: 1 << 20,
        ..EngineOptions::default()
    });
    for _ in 0..4 {
        check(&mut e, "d", &[desc("three", "x")]);
    }
    let d = check(&mut e, "d", &[desc("three", "x")]);
    assert_eq!(codes(&d), (OVER, vec![OVER]));
    let stats = e.take_stats();
    assert_eq!(stats.local_cache_hits, 1);
    assert_eq!(stats.rules[0].2.cache_hits, 1);
    assert_eq!(e.local_cache().unwrap().hits, 1);
}

#[test]
fn atomic_domains_charge_all_or_none() {
    let mut e = engine(EngineOptions::default());
    let both = [desc("small", "u"), desc("big", "u")];
    for _ in 0..2 {
        assert_eq!(check(&mut e, "at", &both).overall, OK);
    }
    let d = check(&mut e, "at", &both);
    assert_eq!(codes(&d), (OVER, vec![OVER, OK]));
    assert_eq!(d.statuses[1].remaining, 3); // untouched by the refused request
}

#[test]
fn token_bucket_through_the_engine_knows_its_reset_to_the_millisecond() {
    let mut e = engine(EngineOptions::default());
    let d = check(&mut e, "d", &[hits(desc("tokens", "x"), 4)]);
    assert_eq!(
        (d.statuses[0].remaining, d.statuses[0].reset_ms),
        (0, Some(2000))
    );
    let d = check(&mut e, "d", &[desc("tokens", "x")]);
    assert_eq!(
        (
            d.overall,
            d.statuses[0].reset_ms,
            d.statuses[0].reset_seconds
        ),
        (OVER, Some(500), 1)
    );
}

#[test]
fn charge_always_goes_into_debt() {
    let mut e = engine(EngineOptions::default());
    let req = Request {
        domain: "d",
        descriptors: &[hits(desc("tokens", "x"), 6)],
        hits_addend: 0,
        now_ms: NOW_MS,
        charge_always: true,
        explicit: &[],
        options: None,
    };
    assert_eq!(e.decide(&req).unwrap().overall, OVER);
    // 2 tokens owed: 1.5 s until one is back
    let d = check(&mut e, "d", &[desc("tokens", "x")]);
    assert_eq!(d.statuses[0].reset_ms, Some(1500));
}

// -- the Redis batch, with replies written by hand (tests/native runs it on a real Redis) -----

fn script() -> Arc<RedisScript> {
    Arc::new(RedisScript {
        sha: "0123".into(),
        source: "return 1".into(),
    })
}

#[test]
fn redis_batch_sends_incrby_expire_and_decides_from_the_replies() {
    let mut e = engine(EngineOptions::default());
    let descs = [desc("three", "x")];
    let reqs = [Request {
        domain: "d",
        descriptors: &descs,
        hits_addend: 2,
        now_ms: NOW_MS,
        charge_always: false,
        explicit: &[],
        options: None,
    }];
    let mut batch = e.redis_batch(&reqs, script());
    assert_eq!(
        batch.commands().unwrap(),
        b"*3\r\n$6\r\nINCRBY\r\n$16\r\nd_three_x_999960\r\n$1\r\n2\r\n*3\r\n$6\r\nEXPIRE\r\n$16\r\nd_three_x_999960\r\n$2\r\n60\r\n"
    );
    assert_eq!(batch.expected(), 2);
    batch.feed(&mut e, b":4\r\n:1\r\n");
    assert!(batch.commands().is_none());
    let d = batch.results().remove(0).unwrap();
    assert_eq!(codes(&d), (OVER, vec![OVER]));
}

#[test]
fn redis_batch_evalsha_layout_and_noscript_retry() {
    let mut e = engine(EngineOptions::default());
    let descs = [desc("tokens", "x")];
    let reqs = [Request {
        domain: "d",
        descriptors: &descs,
        hits_addend: 0,
        now_ms: NOW_MS,
        charge_always: false,
        explicit: &[],
        options: None,
    }];
    let mut batch = e.redis_batch(&reqs, script());
    let sent = String::from_utf8(batch.commands().unwrap().to_vec()).unwrap();
    let args: Vec<&str> = sent.split("\r\n").skip(2).step_by(2).collect();
    assert_eq!(
        args,
        vec![
            "EVALSHA",
            "0123",
            "1",
            "d_tokens_x_token_bucket",
            "1000000000",
            "0",
            "token_bucket",
            "2",
            "1000",
            "4",
            "1",
            "0",
            "3500",
            "1000001000"
        ]
    );
    batch.feed(
        &mut e,
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    );
    let retry = String::from_utf8(batch.commands().unwrap().to_vec()).unwrap();
    assert!(retry
        .starts_with("*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$8\r\nreturn 1\r\n*14\r\n$7\r\nEVALSHA"));
    batch.feed(
        &mut e,
        b"$4\r\n0123\r\n*4\r\n:1\r\n:3\r\n$3\r\n500\r\n:1\r\n",
    );
    let d = batch.results().remove(0).unwrap();
    assert_eq!(
        (d.statuses[0].remaining, d.statuses[0].reset_ms),
        (3, Some(500))
    );
}

#[test]
fn redis_failures_answer_by_the_failure_policy() {
    let descs = [desc("three", "x")];
    let reqs = [Request {
        domain: "d",
        descriptors: &descs,
        hits_addend: 0,
        now_ms: NOW_MS,
        charge_always: false,
        explicit: &[],
        options: None,
    }];
    let mut e = engine(EngineOptions::default());
    let mut batch = e.redis_batch(&reqs, script());
    batch.fail(&mut e, "redis did not answer within 15 ms", true);
    assert_eq!(
        batch.results().remove(0).unwrap_err(),
        EngineError::Storage {
            message: "redis did not answer within 15 ms".into(),
            transient: true
        }
    );
    let mut deny = engine(EngineOptions {
        failure_policy: FailurePolicy::Deny,
        ..EngineOptions::default()
    });
    let mut batch = deny.redis_batch(&reqs, script());
    batch.feed(
        &mut deny,
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n:1\r\n",
    );
    assert_eq!(batch.results().remove(0).unwrap().overall, OVER);
    assert_eq!(
        deny.take_stats().policy_decisions,
        vec![("d".to_string(), "deny", 1)]
    );
    let mut local = engine(EngineOptions {
        failure_policy: FailurePolicy::Local,
        ..EngineOptions::default()
    });
    for expected in [2, 1, 0] {
        let mut batch = local.redis_batch(&reqs, script());
        batch.feed(
            &mut local,
            b"-LOADING Redis is loading the dataset in memory\r\n:1\r\n",
        );
        assert!(batch.endpoint_failed);
        assert_eq!(
            batch.results().remove(0).unwrap().statuses[0].remaining,
            expected
        );
    }
    let mut garbled = engine(EngineOptions::default());
    let mut batch = garbled.redis_batch(&reqs, script());
    batch.feed(&mut garbled, b"?\r\n");
    let err = batch.results().remove(0).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Storage {
                transient: false,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn redis_stop_increment_reads_the_counters_first() {
    let mut e = engine(EngineOptions {
        stop_increment_when_over_limit: true,
        ..EngineOptions::default()
    });
    let descs = [desc("key2", "r"), desc("three", "r")];
    let reqs = [Request {
        domain: "d",
        descriptors: &descs,
        hits_addend: 0,
        now_ms: NOW_MS,
        charge_always: false,
        explicit: &[],
        options: None,
    }];
    let mut batch = e.redis_batch(&reqs, script());
    assert!(batch
        .commands()
        .unwrap()
        .starts_with(b"*3\r\n$4\r\nMGET\r\n"));
    batch.feed(&mut e, b"*2\r\n$1\r\n5\r\n$1\r\n3\r\n");
    let charge = String::from_utf8(batch.commands().unwrap().to_vec()).unwrap();
    // key2 keeps its quota: INCRBY 0
    assert!(
        charge.contains("INCRBY\r\n$15\r\nd_key2_r_999960\r\n$1\r\n0\r\n"),
        "{charge}"
    );
    batch.feed(&mut e, b":5\r\n:1\r\n:4\r\n:1\r\n");
    let d = batch.results().remove(0).unwrap();
    assert_eq!((d.overall, d.statuses[0].remaining), (OVER, 15));
}

#[test]
fn node_spec_defaults_compile() {
    let mut b = RuleSetBuilder::new();
    let root = b.add_node(NodeSpec::default());
    b.add_domain(DomainSpec {
        name: "x".into(),
        root,
        ..DomainSpec::default()
    });
    assert!(b.build().is_ok());
}

#[test]
fn decisions_become_envoy_responses() {
    let mut e = engine(EngineOptions::default());
    let d = check(
        &mut e,
        "d",
        &[
            desc("three", "x"),
            desc("tokens", "y"),
            desc("free", "z"),
            desc("nomatch", "v"),
        ],
    );
    let r = d.to_response();
    assert_eq!(r.overall_code, OK);
    let three = &r.statuses[0];
    assert_eq!((three.limit_remaining, three.reset_ms), (2, 20_000));
    assert_eq!(
        three
            .current_limit
            .as_ref()
            .map(|l| (l.requests_per_unit, l.unit)),
        Some((3, Unit::Minute))
    );
    assert_eq!(r.statuses[1].reset_ms, 500); // the token bucket knows it to the millisecond
    assert_eq!(
        (
            r.statuses[2].limit_remaining,
            r.statuses[2].current_limit.is_none()
        ),
        (u32::MAX, true)
    );
    assert_eq!(
        (r.statuses[3].limit_remaining, r.statuses[3].reset_ms),
        (0, 0)
    );
}

#[test]
fn explicit_limits_are_applied_as_they_are() {
    let mut e = engine(EngineOptions::default());
    let spec = LimitSpec {
        algorithm: "token_bucket".into(),
        shadow_mode: true,
        count_rejected: false,
        ..limit(1, Unit::Minute, "d.plan")
    };
    let plan = Some(Arc::new(spec.compile(None).unwrap()));
    let descs = [desc("nomatch", "x")];
    let req = |explicit| Request {
        domain: "d",
        descriptors: &descs,
        hits_addend: 0,
        now_ms: NOW_MS,
        charge_always: false,
        explicit,
        options: None,
    };
    let d = e.decide(&req(std::slice::from_ref(&plan))).unwrap();
    assert_eq!(
        (d.statuses[0].remaining, d.statuses[0].reset_ms),
        (0, Some(60_000))
    );
    let d = e.decide(&req(std::slice::from_ref(&plan))).unwrap();
    assert_eq!(codes(&d), (OK, vec![OK])); // refused, but shadowed
    assert_eq!(e.take_stats().rules[0].1, "d.plan");
    let no_window = Some(Arc::new(
        limit(1, Unit::Unknown, "d.x").compile(None).unwrap(),
    ));
    assert_eq!(
        e.decide(&req(&[no_window])).unwrap_err(),
        EngineError::Request("descriptors[0].limit.unit: 0 is not a unit; expected SECOND, MINUTE, HOUR, DAY, WEEK, MONTH or YEAR".into())
    );
}
