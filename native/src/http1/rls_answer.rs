//! /json's answer: the decision as `json_format.MessageToJson(response, indent=None)` writes
//! the RateLimitResponse that `rls_proto.ResponseBuilder` builds (fields in field-number
//! order, defaults left out, enums by name, durations as protobuf's JSON text).

use std::fmt::Write;

use super::answer::StatusView;
use super::text::push_json_string;

const CODES: [&str; 3] = ["UNKNOWN", "OK", "OVER_LIMIT"];
const UNITS: [&str; 8] = [
    "UNKNOWN", "SECOND", "MINUTE", "HOUR", "DAY", "MONTH", "YEAR", "WEEK",
];

pub fn rls_json(overall: u8, statuses: &[StatusView<'_>], headers: &[(String, String)]) -> String {
    let mut out = String::from("{");
    let mut fields = Fields::default();
    if overall != 0 {
        fields.next(&mut out, "overallCode");
        push_json_string(
            &mut out,
            CODES.get(usize::from(overall)).unwrap_or(&"UNKNOWN"),
        );
    }
    if !statuses.is_empty() {
        fields.next(&mut out, "statuses");
        out.push('[');
        for (i, status) in statuses.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            push_status(&mut out, status);
        }
        out.push(']');
    }
    if !headers.is_empty() {
        fields.next(&mut out, "responseHeadersToAdd");
        out.push('[');
        for (i, (key, value)) in headers.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let mut header = Fields::default();
            out.push('{');
            if !key.is_empty() {
                header.next(&mut out, "key");
                push_json_string(&mut out, key);
            }
            if !value.is_empty() {
                header.next(&mut out, "value");
                push_json_string(&mut out, value);
            }
            out.push('}');
        }
        out.push(']');
    }
    out.push('}');
    out
}

fn push_status(out: &mut String, status: &StatusView<'_>) {
    let mut fields = Fields::default();
    out.push('{');
    if status.code != 0 {
        fields.next(out, "code");
        push_json_string(
            out,
            CODES.get(usize::from(status.code)).unwrap_or(&"UNKNOWN"),
        );
    }
    if let Some(limit) = status.limit {
        fields.next(out, "currentLimit");
        let mut inner = Fields::default();
        out.push('{');
        if limit.requests_per_unit != 0 {
            inner.next(out, "requestsPerUnit");
            let _ = write!(out, "{}", limit.requests_per_unit);
        }
        if limit.unit != 0 {
            inner.next(out, "unit");
            push_json_string(
                out,
                UNITS.get(usize::from(limit.unit)).unwrap_or(&"UNKNOWN"),
            );
        }
        if !limit.name.is_empty() {
            inner.next(out, "name");
            push_json_string(out, limit.name);
        }
        out.push('}');
    }
    // uint32 on the wire: rls_proto.py sets it as it is (the engine keeps it in range)
    if status.remaining != 0 {
        fields.next(out, "limitRemaining");
        let _ = write!(out, "{}", status.remaining);
    }
    if status.limit.is_some() {
        fields.next(out, "durationUntilReset");
        let (seconds, nanos) = match status.reset_ms {
            Some(ms) => (ms.div_euclid(1000), ms.rem_euclid(1000) * 1_000_000),
            None => (status.reset_seconds, 0),
        };
        push_json_string(out, &duration(seconds, nanos));
    }
    out.push('}');
}

/// `Duration.ToJsonString`: whole seconds, or 3, 6 or 9 fractional digits.
fn duration(seconds: i64, nanos: i64) -> String {
    let (sign, seconds, nanos) = if seconds < 0 || nanos < 0 {
        (
            "-",
            -seconds + (-nanos).div_euclid(1_000_000_000),
            (-nanos).rem_euclid(1_000_000_000),
        )
    } else {
        ("", seconds + nanos / 1_000_000_000, nanos % 1_000_000_000)
    };
    if nanos == 0 {
        format!("{sign}{seconds}s")
    } else if nanos % 1_000_000 == 0 {
        format!("{sign}{seconds}.{:03}s", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{sign}{seconds}.{:06}s", nanos / 1_000)
    } else {
        format!("{sign}{seconds}.{nanos:09}s")
    }
}

/// Writes `, ` between an object's fields.
#[derive(Default)]
struct Fields {
    any: bool,
}

impl Fields {
    fn next(&mut self, out: &mut String, name: &str) {
        if std::mem::replace(&mut self.any, true) {
            out.push_str(", ");
        }
        out.push('"');
        out.push_str(name);
        out.push_str("\": ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::answer::LimitView;

    #[test]
    fn as_message_to_json_writes_it() {
        // The expected text is json_format.MessageToJson's for the same message.
        let statuses = [
            StatusView {
                code: 1,
                limit: Some(LimitView {
                    name: "n\u{e9}",
                    requests_per_unit: 0,
                    unit: 7,
                    window_ms: 0,
                }),
                remaining: 0,
                reset_seconds: 2,
                reset_ms: Some(1500),
            },
            StatusView {
                code: 2,
                limit: Some(LimitView {
                    name: "",
                    requests_per_unit: 3,
                    unit: 2,
                    window_ms: 60_000,
                }),
                remaining: 5,
                reset_seconds: 0,
                reset_ms: None,
            },
            StatusView {
                code: 0,
                limit: None,
                remaining: 0,
                reset_seconds: 0,
                reset_ms: None,
            },
        ];
        let headers = [
            ("a".to_owned(), String::new()),
            ("b".to_owned(), "1".to_owned()),
        ];
        assert_eq!(
            rls_json(2, &statuses, &headers),
            r#"{"overallCode": "OVER_LIMIT", "statuses": [{"code": "OK", "currentLimit": {"unit": "WEEK", "name": "n\u00e9"}, "durationUntilReset": "1.500s"}, {"code": "OVER_LIMIT", "currentLimit": {"requestsPerUnit": 3, "unit": "MINUTE"}, "limitRemaining": 5, "durationUntilReset": "0s"}, {}], "responseHeadersToAdd": [{"key": "a"}, {"key": "b", "value": "1"}]}"#
        );
        assert_eq!(rls_json(0, &[], &[]), "{}");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(60, 0), "60s");
        assert_eq!(duration(0, 1_000_000), "0.001s");
        assert_eq!(duration(1, 1_000), "1.000001s");
        assert_eq!(duration(1, 1), "1.000000001s");
    }
}
