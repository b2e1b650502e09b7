//! Charging: the store call of a planned request, and turning its counts and verdicts into
//! statuses, stats and local-cache entries; the failure policy when the store fails.

use super::answer::{fixed_window_outcome, near_threshold};
use super::{Engine, EngineError, Pending, PlannedCheck};
use crate::algorithms::{Algorithm, Check, Verdict};
use crate::memory::{Increment, MemoryStore};
use crate::rls::Code;
use crate::rules::FailurePolicy;
use crate::stats::Counts;

impl Engine {
    /// The plain increments of `p` and whether stop-increment mode needs the counters first.
    pub(crate) fn increments(&self, p: &Pending) -> (Vec<Increment>, bool) {
        let incs: Vec<Increment> = plain(p)
            .map(|c| Increment {
                key: c.key.clone(),
                hits: c.hits,
                ttl: c.ttl,
            })
            .collect();
        let stop = !incs.is_empty() && self.options.stop_increment_when_over_limit && !p.always;
        if stop && p.cached {
            // As the reference: a local-cache hit means charge nothing else.
            return (
                incs.into_iter()
                    .map(|i| Increment { hits: 0, ..i })
                    .collect(),
                false,
            );
        }
        (incs, stop)
    }

    /// Charge `p` on a memory store (the built-in one, or the `local` policy's fallback).
    pub(crate) fn charge_memory(&mut self, store: &mut MemoryStore, p: &mut Pending) {
        let now = p.now_ms.div_euclid(1000);
        let (mut incs, stop) = self.increments(p);
        if stop {
            let keys: Vec<&str> = incs.iter().map(|i| i.key.as_str()).collect();
            let current = store.get(&keys, now);
            stop_increment(p, &mut incs, &current);
        }
        let values = if incs.is_empty() {
            Vec::new()
        } else {
            store.increment(&incs, now)
        };
        let scripted: Vec<Check> = p
            .checks
            .iter()
            .filter_map(|c| c.algorithm.clone())
            .collect();
        let verdicts = if scripted.is_empty() {
            Vec::new()
        } else {
            store.run_checks(&scripted, p.now_ms, p.atomic)
        };
        self.settle(p, &values, &verdicts);
    }

    /// Statuses and stats from what the store answered, then the local cache.
    pub(crate) fn settle(&mut self, p: &mut Pending, values: &[i64], verdicts: &[Verdict]) {
        let checks = std::mem::take(&mut p.checks);
        let plain_checks = checks.iter().filter(|c| c.algorithm.is_none());
        for (check, &after) in plain_checks.zip(values) {
            self.judge_plain(p, check, after);
        }
        let scripted = checks.iter().filter(|c| c.algorithm.is_some());
        for (check, verdict) in scripted.zip(verdicts) {
            self.apply(p, check, verdict);
        }
        if self.cache.is_some() {
            self.remember_over(p, &checks, values, verdicts);
        }
        p.checks = checks;
    }

    fn judge_plain(&mut self, p: &mut Pending, check: &PlannedCheck, after: i64) {
        let limit = &check.limit;
        let rpu = i64::from(limit.requests_per_unit);
        // As the reference: the decision reads the counter as it is after the store call, even
        // when stop-increment mode charged 0; "before" (for the stats) assumes the full addend.
        let hits = check.hits as i64;
        let outcome = fixed_window_outcome(after, hits, rpu, self.near(limit.requests_per_unit));
        let status = &mut p.statuses[check.index];
        let mut shadow = 0;
        if outcome.over {
            status.code = Code::OverLimit;
            if limit.shadow_mode {
                status.code = Code::Ok;
                shadow = outcome.over_hits;
            }
        } else {
            status.remaining = outcome.remaining;
        }
        let counts = Counts {
            total: hits,
            over: outcome.over_hits,
            near: outcome.near_hits,
            within: outcome.within_hits,
            shadow,
            cache_hits: 0,
        };
        self.stats
            .record(&p.rules, &p.domain, &check.stats, &counts);
    }

    /// Status and stats from an algorithm's verdict.
    fn apply(&mut self, p: &mut Pending, check: &PlannedCheck, verdict: &Verdict) {
        let (limit, hits) = (&check.limit, check.hits as i64);
        let reset_ms = (verdict.reset_ms.round_ties_even() as i64).max(0);
        let status = &mut p.statuses[check.index];
        status.reset_ms = Some(reset_ms);
        status.reset_seconds = -(-reset_ms).div_euclid(1000);
        let counts = if verdict.allowed {
            status.remaining = verdict.remaining;
            let rpu = i64::from(limit.requests_per_unit);
            let outcome = fixed_window_outcome(
                rpu - verdict.remaining,
                hits,
                rpu,
                self.near(limit.requests_per_unit),
            );
            Counts {
                total: hits,
                near: outcome.near_hits,
                within: hits,
                ..Counts::default()
            }
        } else {
            status.code = if limit.shadow_mode {
                Code::Ok
            } else {
                Code::OverLimit
            };
            let shadow = if limit.shadow_mode { hits } else { 0 };
            Counts {
                total: hits,
                over: hits,
                shadow,
                ..Counts::default()
            }
        };
        self.stats
            .record(&p.rules, &p.domain, &check.stats, &counts);
    }

    /// Cache the keys this request found over their limit (see local_cache.rs).
    fn remember_over(
        &mut self,
        p: &Pending,
        checks: &[PlannedCheck],
        values: &[i64],
        verdicts: &[Verdict],
    ) {
        let cache = self.cache.as_mut().expect("local cache present");
        let now = p.now_ms.div_euclid(1000);
        for (check, &after) in checks.iter().filter(|c| c.algorithm.is_none()).zip(values) {
            let rpu = check.limit.requests_per_unit;
            if after > i64::from(rpu) {
                // until the end of the window the key names
                cache.add(&check.key, (now + check.window) * 1000, rpu, 0);
            }
        }
        for (check, verdict) in checks
            .iter()
            .filter(|c| c.algorithm.is_some())
            .zip(verdicts)
        {
            let limit = &check.limit;
            if verdict.allowed
                || verdict.reset_ms <= 0.0
                || (limit.count_rejected && limit.algorithm != Algorithm::FixedWindow)
            {
                continue;
            }
            let until = p.now_ms + verdict.reset_ms.ceil() as i64;
            cache.add(check.key(), until, limit.requests_per_unit, check.hits);
        }
    }

    fn near(&self, rpu: u32) -> i64 {
        near_threshold(rpu, self.options.near_limit_ratio)
    }

    /// The store failed for `p`: answer by the domain's failure policy (see
    /// `limiter/policy.py`); `unavailable` hands the error back, so the transport answers
    /// UNAVAILABLE and Envoy decides.
    pub(crate) fn store_failed(
        &mut self,
        p: &mut Pending,
        error: EngineError,
    ) -> Result<(), EngineError> {
        let policy = p.policy.unwrap_or(self.options.failure_policy);
        self.stats.policy_decision(&p.domain, policy.name());
        match policy {
            FailurePolicy::Unavailable => return Err(error),
            FailurePolicy::Local => {
                let mut store = self.fallback.take().unwrap_or_default();
                self.charge_memory(&mut store, p);
                self.fallback = Some(store);
            }
            FailurePolicy::Deny | FailurePolicy::Allow => {
                let deny = policy == FailurePolicy::Deny;
                for check in &p.checks {
                    let status = &mut p.statuses[check.index];
                    if deny {
                        status.code = if check.limit.shadow_mode {
                            Code::Ok
                        } else {
                            Code::OverLimit
                        };
                        status.remaining = 0;
                    } else {
                        // as if this were the first request of its window
                        status.remaining =
                            (i64::from(check.limit.requests_per_unit) - check.hits as i64).max(0);
                    }
                }
            }
        }
        Ok(())
    }
}

fn plain(p: &Pending) -> impl Iterator<Item = &PlannedCheck> {
    p.checks.iter().filter(|c| c.algorithm.is_none())
}

/// STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT: when some counters would go over, charge only those
/// (the reference's rule), so the others keep their quota.
pub(crate) fn stop_increment(p: &Pending, incs: &mut [Increment], current: &[i64]) {
    let flagged: Vec<bool> = plain(p)
        .zip(current)
        .map(|(c, &v)| v + c.hits as i64 > i64::from(c.limit.requests_per_unit))
        .collect();
    if flagged.iter().any(|&f| f) {
        for (inc, flag) in incs.iter_mut().zip(flagged) {
            if !flag {
                inc.hits = 0;
            }
        }
    }
}
