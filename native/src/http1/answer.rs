//! The REST answer (`sidecar/transports/rest/answers.py`): the engine's decision as a Result
//! per descriptor and for the request as a whole, the JSON body and the rate-limit headers,
//! with the same arithmetic, choices and text.

use std::fmt::Write;

use super::text::{push_json_string, rfc3339};
use crate::rls::Descriptor;

/// A limit as an answer shows it.
#[derive(Clone, Copy, Debug)]
pub struct LimitView<'a> {
    pub name: &'a str,
    pub requests_per_unit: u32,
    /// `RateLimitResponse.RateLimit.Unit` (for /json).
    pub unit: u8,
    pub window_ms: i64,
}

/// One descriptor's status (`model.DescriptorStatus`).
#[derive(Clone, Copy, Debug)]
pub struct StatusView<'a> {
    /// `RateLimitResponse.Code`: 0 unknown, 1 OK, 2 OVER_LIMIT.
    pub code: u8,
    pub limit: Option<LimitView<'a>>,
    pub remaining: i64,
    pub reset_seconds: i64,
    pub reset_ms: Option<i64>,
}

pub const OVER_LIMIT: u8 = 2;

/// The header families of VIVA_RATELIMIT_HEADERS.
#[derive(Clone, Copy, Debug, Default)]
pub struct Families {
    pub ietf: bool,
    pub x: bool,
    pub retry_after: bool,
}

/// answers.py's Result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    pub limit: Option<u32>,
    pub remaining: Option<i64>,
    pub reset_after: Option<i64>,
    pub reset_at: Option<i64>,
    pub window: Option<i64>,
    pub policy: Option<String>,
    pub retry_after: Option<i64>,
}

impl Outcome {
    fn bare(allowed: bool) -> Outcome {
        Outcome {
            allowed,
            limit: None,
            remaining: None,
            reset_after: None,
            reset_at: None,
            window: None,
            policy: None,
            retry_after: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Answer {
    pub overall: Outcome,
    pub results: Vec<Outcome>,
}

/// answers.py's `make_answer`: `descriptors` are the request's, `now` the clock in seconds.
pub fn make_answer(
    overall_code: u8,
    statuses: &[StatusView<'_>],
    descriptors: &[Descriptor],
    now: f64,
) -> Answer {
    let mut results: Vec<Outcome> = statuses
        .iter()
        .zip(descriptors)
        .map(|(status, d)| result(status, &d.entries, now))
        .collect();
    unique_policies(&mut results);
    let allowed = overall_code != OVER_LIMIT;
    let limited = || results.iter().filter(|r| r.limit.is_some());
    let refused: Vec<&Outcome> = limited().filter(|r| !r.allowed).collect();
    let overall = if let (false, Some(last)) = (allowed, refused.last()) {
        // Allowed again only once every refusing limit has reset: the longest wait.
        let wait = refused.iter().map(|r| r.retry_after.unwrap_or(1)).max();
        Outcome {
            retry_after: wait,
            ..(*last).clone()
        }
    } else if let Some(chosen) = limited().fold(None::<&Outcome>, |best, r| match best {
        Some(b) if b.remaining.unwrap_or(0) <= r.remaining.unwrap_or(0) => Some(b),
        _ => Some(r),
    }) {
        Outcome {
            allowed,
            retry_after: (!allowed).then(|| chosen.reset_after.unwrap_or(0).max(1)),
            ..chosen.clone()
        }
    } else {
        Outcome {
            retry_after: (!allowed).then_some(1),
            ..Outcome::bare(allowed)
        }
    };
    Answer { overall, results }
}

fn result(status: &StatusView<'_>, entries: &[(String, String)], now: f64) -> Outcome {
    let allowed = status.code != OVER_LIMIT;
    let Some(limit) = status.limit else {
        return Outcome::bare(allowed);
    };
    let reset_at = match status.reset_ms {
        Some(ms) => (now + ms as f64 / 1000.0).ceil() as i64,
        None => now.floor() as i64 + status.reset_seconds,
    };
    let window = ((limit.window_ms + 999).div_euclid(1000)).max(1);
    let policy = if limit.name.is_empty() {
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        sf_safe(&keys.join("."))
    } else {
        sf_safe(limit.name)
    };
    Outcome {
        allowed,
        limit: Some(limit.requests_per_unit),
        remaining: Some(status.remaining),
        reset_after: Some(status.reset_seconds),
        reset_at: Some(reset_at),
        window: Some(window),
        policy: Some(policy),
        retry_after: (!allowed).then(|| status.reset_seconds.max(1)),
    }
}

/// What a Structured Field String may hold: printable ASCII, the rest as `_`.
fn sf_safe(text: &str) -> String {
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '_' })
        .collect()
}

/// Two descriptors may resolve to one policy name; the repeats are numbered (name.2, …).
fn unique_policies(results: &mut [Outcome]) {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for r in results.iter_mut() {
        let Some(policy) = &r.policy else { continue };
        let n = match seen.iter_mut().find(|(p, _)| p == policy) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                seen.push((policy.clone(), 1));
                1
            }
        };
        if n > 1 {
            r.policy = Some(format!("{policy}.{n}"));
        }
    }
}

/// answers.py's `rate_limit_headers`.
pub fn rate_limit_headers(answer: &Answer, families: Families) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let limited: Vec<&Outcome> = answer
        .results
        .iter()
        .filter(|r| r.limit.is_some())
        .collect();
    if families.ietf && !limited.is_empty() {
        let policy = |r: &Outcome| sf_string(r.policy.as_deref().unwrap_or(""));
        let join = |f: &dyn Fn(&Outcome) -> String| {
            limited.iter().map(|r| f(r)).collect::<Vec<_>>().join(", ")
        };
        out.push((
            "RateLimit-Policy",
            join(&|r| format!("{};q={};w={}", policy(r), opt(r.limit), opt(r.window))),
        ));
        out.push((
            "RateLimit",
            join(&|r| {
                format!(
                    "{};r={};t={}",
                    policy(r),
                    opt(r.remaining),
                    opt(r.reset_after)
                )
            }),
        ));
    }
    let overall = &answer.overall;
    if let (true, Some(limit)) = (families.x, overall.limit) {
        out.push(("X-RateLimit-Limit", limit.to_string()));
        out.push(("X-RateLimit-Remaining", opt(overall.remaining)));
        out.push(("X-RateLimit-Reset", opt(overall.reset_after)));
    }
    if let (true, Some(wait)) = (families.retry_after, overall.retry_after) {
        out.push(("Retry-After", wait.to_string()));
    }
    out
}

/// Python's `str()` of an optional number.
fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "None".to_owned(), |v| v.to_string())
}

/// An RFC 8941 String: backslash and double quote escaped.
fn sf_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The JSON of `r` (ResultBody; DecisionBody with `results` when given), as `json.dumps`
/// writes `msgspec.to_builtins` of it.
pub fn push_result_json(out: &mut String, r: &Outcome, results: Option<&[Outcome]>) {
    out.push_str("{\"allowed\": ");
    out.push_str(if r.allowed { "true" } else { "false" });
    push_number(out, ", \"limit\": ", r.limit.map(i64::from));
    push_number(out, ", \"remaining\": ", r.remaining);
    out.push_str(", \"reset_at\": ");
    match r.reset_at {
        Some(at) => push_json_string(out, &rfc3339(at)),
        None => out.push_str("null"),
    }
    push_number(out, ", \"reset_after_seconds\": ", r.reset_after);
    push_number(out, ", \"retry_after_seconds\": ", r.retry_after);
    push_number(out, ", \"window_seconds\": ", r.window);
    out.push_str(", \"policy\": ");
    match &r.policy {
        Some(policy) => push_json_string(out, policy),
        None => out.push_str("null"),
    }
    if let Some(results) = results {
        out.push_str(", \"results\": [");
        for (i, item) in results.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            push_result_json(out, item, None);
        }
        out.push(']');
    }
    out.push('}');
}

fn push_number(out: &mut String, label: &str, value: Option<i64>) {
    out.push_str(label);
    match value {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

/// handlers.py's error answer: `{"error": …, "field": …}`.
pub fn error_json(message: &str, field: Option<&str>) -> String {
    let mut out = String::from("{\"error\": ");
    push_json_string(&mut out, message);
    out.push_str(", \"field\": ");
    match field {
        Some(field) => push_json_string(&mut out, field),
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Families = Families {
        ietf: true,
        x: true,
        retry_after: true,
    };

    fn limit(name: &str, rpu: u32, window_ms: i64) -> Option<LimitView<'_>> {
        Some(LimitView {
            name,
            requests_per_unit: rpu,
            unit: 2,
            window_ms,
        })
    }

    fn ids(n: usize) -> Vec<Descriptor> {
        (0..n)
            .map(|i| Descriptor {
                entries: vec![("identifier".into(), format!("u{i}"))],
                ..Descriptor::default()
            })
            .collect()
    }

    #[test]
    fn one_allowed_limit() {
        let statuses = [StatusView {
            code: 1,
            limit: limit("", 3, 60_000),
            remaining: 2,
            reset_seconds: 20,
            reset_ms: None,
        }];
        let answer = make_answer(1, &statuses, &ids(1), 1000.5);
        let mut body = String::new();
        push_result_json(&mut body, &answer.overall, None);
        assert_eq!(
            body,
            r#"{"allowed": true, "limit": 3, "remaining": 2, "reset_at": "1970-01-01T00:17:00Z", "reset_after_seconds": 20, "retry_after_seconds": null, "window_seconds": 60, "policy": "identifier"}"#
        );
        let headers = rate_limit_headers(&answer, ALL);
        assert_eq!(
            headers,
            vec![
                ("RateLimit-Policy", "\"identifier\";q=3;w=60".to_owned()),
                ("RateLimit", "\"identifier\";r=2;t=20".to_owned()),
                ("X-RateLimit-Limit", "3".to_owned()),
                ("X-RateLimit-Remaining", "2".to_owned()),
                ("X-RateLimit-Reset", "20".to_owned()),
            ]
        );
    }

    #[test]
    fn refused_takes_the_longest_wait_and_names_repeat() {
        let statuses = [
            StatusView {
                code: 2,
                limit: limit("per\"user\u{e9}", 5, 1500),
                remaining: 0,
                reset_seconds: 2,
                reset_ms: Some(1200),
            },
            StatusView {
                code: 2,
                limit: limit("per\"user\u{e9}", 2, 3_600_000),
                remaining: 0,
                reset_seconds: 300,
                reset_ms: None,
            },
            StatusView {
                code: 1,
                limit: None,
                remaining: 4_294_967_295,
                reset_seconds: 0,
                reset_ms: None,
            },
        ];
        let answer = make_answer(2, &statuses, &ids(3), 10.25);
        assert_eq!(answer.results[0].reset_at, Some(12));
        assert_eq!(answer.results[0].window, Some(2));
        assert_eq!(answer.results[1].policy.as_deref(), Some("per\"user_.2"));
        assert_eq!(answer.overall.retry_after, Some(300));
        assert_eq!(answer.overall.limit, Some(2));
        let mut body = String::new();
        push_result_json(&mut body, &answer.overall, Some(&answer.results));
        assert!(body.contains(r#""policy": "per\"user_.2", "results": [{"allowed": false"#));
        assert!(body.ends_with(r#"{"allowed": true, "limit": null, "remaining": null, "reset_at": null, "reset_after_seconds": null, "retry_after_seconds": null, "window_seconds": null, "policy": null}]}"#));
        let headers = rate_limit_headers(&answer, ALL);
        assert_eq!(
            headers[0].1,
            "\"per\\\"user_\";q=5;w=2, \"per\\\"user_.2\";q=2;w=3600"
        );
        assert_eq!(headers.last().unwrap(), &("Retry-After", "300".to_owned()));
    }

    #[test]
    fn no_limit_applies() {
        let statuses = [StatusView {
            code: 1,
            limit: None,
            remaining: 0,
            reset_seconds: 0,
            reset_ms: None,
        }];
        let answer = make_answer(1, &statuses, &ids(1), 0.0);
        assert_eq!(answer.overall, Outcome::bare(true));
        assert!(rate_limit_headers(&answer, ALL).is_empty());
        let refused = make_answer(2, &statuses, &ids(1), 0.0);
        assert_eq!(
            rate_limit_headers(&refused, ALL),
            vec![("Retry-After", "1".to_owned())]
        );
    }

    #[test]
    fn lowest_remaining_is_chosen_first_on_ties() {
        let s = |name, remaining| StatusView {
            code: 1,
            limit: limit(name, 10, 1000),
            remaining,
            reset_seconds: 1,
            reset_ms: None,
        };
        let answer = make_answer(1, &[s("a", 5), s("b", 3), s("c", 3)], &ids(3), 0.0);
        assert_eq!(answer.overall.policy.as_deref(), Some("b"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            error_json("x: \"bad\"", Some("x")),
            r#"{"error": "x: \"bad\"", "field": "x"}"#
        );
        assert_eq!(error_json("e", None), r#"{"error": "e", "field": null}"#);
    }
}
