//! The answer: the overall code (quota descriptors fail a request only all together), global
//! shadow mode and the response headers; and the fixed-window arithmetic every check's stats
//! use (`sidecar/limiter/fixed_window.py`).

use super::{Decision, Engine, Pending, Status};
use crate::rls::Code;

/// floor(float32(limit) * float32(ratio)): the reference's near-limit line, in float32.
pub fn near_threshold(limit: u32, ratio: f64) -> i64 {
    (limit as f32 * ratio as f32) as i64
}

/// What one hit on a fixed window means for the caller and for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub over: bool,
    pub remaining: i64,
    pub over_hits: i64,
    pub near_hits: i64,
    pub within_hits: i64,
}

/// Outcome of adding `hits` that took a counter to `after` under `limit`. Over the limit is
/// strict: the N-th hit of an N limit is allowed with 0 left.
pub fn fixed_window_outcome(after: i64, hits: i64, limit: i64, near: i64) -> Outcome {
    let before = after - hits;
    if after > limit {
        if before >= limit {
            return Outcome {
                over: true,
                remaining: 0,
                over_hits: hits,
                near_hits: 0,
                within_hits: 0,
            };
        }
        let near_hits = limit - near.max(before);
        return Outcome {
            over: true,
            remaining: 0,
            over_hits: after - limit,
            near_hits,
            within_hits: 0,
        };
    }
    let mut near_hits = 0;
    if after > near {
        near_hits = if before >= near { hits } else { after - near };
    }
    Outcome {
        over: false,
        remaining: limit - after,
        over_hits: 0,
        near_hits,
        within_hits: hits,
    }
}

impl Engine {
    pub(crate) fn finish(&mut self, p: Pending) -> Decision {
        let quota_mode = self.options.quota_mode;
        let (mut failed, mut quota_total, mut quota_failed) = (0, 0, 0);
        for ((status, limit), unlimited) in p.statuses.iter().zip(&p.limits).zip(&p.unlimited) {
            if *unlimited {
                continue;
            }
            let over = status.code == Code::OverLimit;
            if quota_mode || limit.as_ref().is_some_and(|l| l.quota_mode) {
                quota_total += 1;
                quota_failed += usize::from(over);
            } else if over {
                failed += 1;
            }
        }
        // Quota descriptors fail the request only when every one of them is over.
        let over = failed > 0 || (quota_total > 0 && quota_failed == quota_total);
        let headers = if self.options.response_headers {
            self.headers(&p)
        } else {
            Vec::new()
        };
        let mut overall = if over { Code::OverLimit } else { Code::Ok };
        if over && self.options.shadow_mode {
            overall = Code::Ok;
            self.stats.global_shadow();
        }
        Decision {
            overall,
            statuses: p.statuses,
            headers,
        }
    }

    /// Headers from the most constrained status: the last non-quota OVER_LIMIT one, else the
    /// first with the lowest remaining (the reference's choice).
    fn headers(&self, p: &Pending) -> Vec<(String, String)> {
        let mut lowest: Option<&Status> = None;
        let mut over: Option<&Status> = None;
        for (status, limit) in p.statuses.iter().zip(&p.limits) {
            let (Some(_), Some(limit)) = (&status.limit, limit) else {
                continue;
            };
            if lowest.is_none_or(|l| status.remaining < l.remaining) {
                lowest = Some(status);
            }
            if status.code == Code::OverLimit && !(self.options.quota_mode || limit.quota_mode) {
                over = Some(status);
            }
        }
        let Some(chosen) = over.or(lowest) else {
            return Vec::new();
        };
        let Some(limit) = &chosen.limit else {
            return Vec::new();
        };
        let o = &self.options;
        vec![
            (o.limit_header.clone(), limit.requests_per_unit.to_string()),
            (o.remaining_header.clone(), chosen.remaining.to_string()),
            (o.reset_header.clone(), chosen.reset_seconds.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_threshold_is_float32() {
        assert_eq!(near_threshold(8, 0.8), 6);
        assert_eq!(near_threshold(100, 0.29), 29);
        assert_eq!(near_threshold(300, 0.21), 62);
        assert_eq!(near_threshold(10, 0.7), 7);
    }

    #[test]
    fn fixed_window_arithmetic_tc25() {
        let o = |after, hits, limit| {
            fixed_window_outcome(after, hits, limit, near_threshold(limit as u32, 0.8))
        };
        assert_eq!(
            o(5, 3, 20),
            Outcome {
                over: false,
                remaining: 15,
                over_hits: 0,
                near_hits: 0,
                within_hits: 3
            }
        );
        assert_eq!(o(7, 2, 8).near_hits, 1);
        assert_eq!(o(19, 3, 20).near_hits, 3);
        assert_eq!(
            o(22, 3, 20),
            Outcome {
                over: true,
                remaining: 0,
                over_hits: 2,
                near_hits: 1,
                within_hits: 0
            }
        );
        assert_eq!(o(22, 7, 20).near_hits, 4);
        assert_eq!(
            o(30, 3, 10),
            Outcome {
                over: true,
                remaining: 0,
                over_hits: 3,
                near_hits: 0,
                within_hits: 0
            }
        );
    }
}
