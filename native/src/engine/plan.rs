//! Planning: match each descriptor, drop unlimited and replaced limits, build the counter keys
//! and what each check charges; answer what the local over-limit cache already knows.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use super::{Engine, EngineError, Request, Status, UNLIMITED_REMAINING};
use crate::algorithms::{Algorithm, Check, Limit};
use crate::matcher::{descriptor_key, match_descriptor, override_stats_key, Match};
use crate::rls::{Code, Descriptor, LimitOverride, Unit};
use crate::rules::{DomainOptions, FailurePolicy, RateLimit, RuleSet};
use crate::stats::{Counts, StatsKey};
use crate::tz::Zone;
use crate::windows::{aligned_window, calendar_window};

/// A descriptor that reaches the store.
#[derive(Clone, Debug)]
pub struct PlannedCheck {
    pub index: usize,
    pub limit: Arc<RateLimit>,
    pub stats: StatsKey,
    /// The counter key of a plain check (an algorithm check holds its own in `algorithm`).
    pub key: String,
    pub hits: u64,
    /// The reset in whole seconds until charged.
    pub window: i64,
    /// `None`: a plain INCRBY + EXPIRE (the reference's way).
    pub algorithm: Option<Check>,
    /// Seconds, for the plain INCRBY + EXPIRE.
    pub ttl: i64,
}

impl PlannedCheck {
    pub fn key(&self) -> &str {
        match &self.algorithm {
            Some(check) => &check.key,
            None => &self.key,
        }
    }
}

/// A request planned against one rules snapshot, waiting for (or done with) its store call.
pub struct Pending {
    pub rules: Arc<RuleSet>,
    pub domain: String,
    pub now_ms: i64,
    /// The domain's failure policy (`None`: the service's).
    pub policy: Option<FailurePolicy>,
    pub statuses: Vec<Status>,
    /// Per descriptor: the limit it is checked against (`None` when it has none, is unlimited
    /// or was replaced) and whether it is unlimited.
    pub limits: Vec<Option<Arc<RateLimit>>>,
    pub unlimited: Vec<bool>,
    /// What goes to the store.
    pub checks: Vec<PlannedCheck>,
    /// Charge all checks or none.
    pub atomic: bool,
    /// Some checks were answered by the local cache.
    pub cached: bool,
    /// Usage reported after the fact: every hit charged.
    pub always: bool,
}

impl Engine {
    pub(crate) fn plan(&mut self, request: &Request<'_>) -> Result<Pending, EngineError> {
        if request.domain.is_empty() {
            return Err(EngineError::Request(
                "rate limit domain must not be empty".into(),
            ));
        }
        if request.descriptors.is_empty() {
            return Err(EngineError::Request(
                "rate limit descriptor list must not be empty".into(),
            ));
        }
        check_hits(request.descriptors)?;
        let (rules, options, matches) = match request.options {
            Some(options) => {
                let rules = self.rules.clone().unwrap_or_else(no_rules);
                (rules, options.clone(), explicit_matches(request)?)
            }
            None => {
                let rules = self.rules.clone().ok_or(EngineError::NoRules)?;
                let domain = rules.domains.get(request.domain);
                let options = domain.map(|d| d.options.clone()).unwrap_or_default();
                let matches = self.match_all(&rules, request)?;
                (rules, options, matches)
            }
        };
        let mut pending = Pending {
            domain: request.domain.to_string(),
            now_ms: request.now_ms,
            policy: options.failure_policy,
            statuses: Vec::with_capacity(matches.len()),
            limits: Vec::with_capacity(matches.len()),
            unlimited: Vec::with_capacity(matches.len()),
            checks: Vec::new(),
            atomic: options.atomic && !request.charge_always,
            cached: false,
            always: request.charge_always,
            rules,
        };
        self.plan_checks(&mut pending, request, matches, &options);
        if request.charge_always {
            for check in &mut pending.checks {
                if let Some(c) = &mut check.algorithm {
                    c.limit.always = true;
                }
            }
        } else if !pending.checks.is_empty() && self.cache.is_some() {
            self.skip_cached(&mut pending, options.atomic);
        }
        Ok(pending)
    }

    fn match_all(
        &mut self,
        rules: &RuleSet,
        request: &Request<'_>,
    ) -> Result<Vec<Option<Match>>, EngineError> {
        let Some(domain) = rules.domains.get(request.domain) else {
            for _ in request.descriptors {
                self.stats.domain_not_found(request.domain);
            }
            return Ok(vec![None; request.descriptors.len()]);
        };
        let mut scratch = String::new();
        let mut out = Vec::with_capacity(request.descriptors.len());
        for (i, desc) in request.descriptors.iter().enumerate() {
            out.push(if let Some(Some(limit)) = request.explicit.get(i) {
                Some(explicit_match(limit, i)?)
            } else if let Some(limit) = &desc.limit {
                Some(override_match(request.domain, desc, limit, i)?)
            } else if !desc.entries.is_empty() {
                match_descriptor(
                    rules,
                    domain.root,
                    request.domain,
                    &desc.entries,
                    &mut scratch,
                )
            } else {
                None
            });
        }
        Ok(out)
    }

    fn plan_checks(
        &mut self,
        p: &mut Pending,
        request: &Request<'_>,
        matches: Vec<Option<Match>>,
        options: &DomainOptions,
    ) {
        // As the reference: every matched limit (unlimited ones too) contributes its replaces;
        // unlimited wins over being replaced; a replaced limit is dropped (status OK, no limit).
        let replaced: HashSet<&str> = matches
            .iter()
            .flatten()
            .flat_map(|m| m.limit.replaces.iter().map(String::as_str))
            .collect();
        let request_hits = u64::from(request.hits_addend.max(1));
        let mut checks = Vec::new();
        for (i, found) in matches.iter().enumerate() {
            let Some(found) = found else {
                p.push(Status::ok(), None, false);
                continue;
            };
            let limit = &found.limit;
            if limit.unlimited {
                p.push(
                    Status {
                        remaining: UNLIMITED_REMAINING,
                        ..Status::ok()
                    },
                    None,
                    true,
                );
                continue;
            }
            if !replaced.is_empty()
                && !limit.name.is_empty()
                && replaced.contains(limit.name.as_str())
            {
                p.push(Status::ok(), None, false);
                continue;
            }
            let desc = &request.descriptors[i];
            let hits = desc.hits_addend.unwrap_or(request_hits);
            let check = self.check(i, p, desc, found, hits, options);
            let status = Status {
                limit: Some(limit.clone()),
                reset_seconds: check.window,
                ..Status::ok()
            };
            p.push(status, Some(limit.clone()), false);
            checks.push(check);
        }
        p.checks = checks;
    }

    /// How one descriptor is counted.
    fn check(
        &mut self,
        index: usize,
        p: &Pending,
        desc: &Descriptor,
        found: &Match,
        hits: u64,
        options: &DomainOptions,
    ) -> PlannedCheck {
        let limit = found.limit.clone();
        let stats = match (&found.stats_key, limit.id) {
            (None, Some(id)) => StatsKey::Limit(id),
            _ => StatsKey::Named(found.stats_key().to_string()),
        };
        // Atomic domains put every key in one hash slot, so one script can touch them all.
        let tag = if options.atomic {
            format!("{{{}}}", p.domain)
        } else {
            p.domain.clone()
        };
        let mut base = descriptor_key(
            &self.options.cache_key_prefix,
            &tag,
            &desc.entries,
            &found.shared_values,
        );
        let now_ms = p.now_ms;
        if limit.reference_compatible() && !options.atomic {
            let now = now_ms.div_euclid(1000);
            let window = limit.window_seconds();
            let into = now.rem_euclid(window);
            let jitter = self.options.expiration_jitter_max_seconds;
            let ttl = if jitter > 0 {
                window + self.jitter.below(jitter) as i64
            } else {
                window
            };
            push_int(&mut base, now - into);
            return PlannedCheck {
                index,
                limit,
                stats,
                key: base,
                hits,
                window: window - into,
                algorithm: None,
                ttl,
            };
        }
        let window_ms = limit.window_length_ms();
        let (end, ttl_ms) = if limit.algorithm == Algorithm::FixedWindow {
            let (start, end) = if limit.calendar {
                let zone = options.zone.as_deref().unwrap_or_else(|| utc());
                calendar_window(now_ms, limit.unit, zone)
                    .unwrap_or_else(|| aligned_window(now_ms, window_ms))
            } else {
                aligned_window(now_ms, window_ms)
            };
            push_int(&mut base, start.div_euclid(1000));
            (end, end - now_ms + self.jitter_ms())
        } else {
            base.push_str(limit.algorithm.name());
            (
                now_ms + window_ms,
                state_ttl_ms(
                    limit.algorithm,
                    limit.requests_per_unit,
                    window_ms,
                    limit.burst,
                ),
            )
        };
        let burst = match (limit.burst, limit.algorithm) {
            (0, Algorithm::TokenBucket) => limit.requests_per_unit,
            (0, _) => 1,
            (b, _) => b,
        };
        let lim = Limit {
            limit: limit.requests_per_unit,
            window_ms: window_ms as f64,
            burst,
            count_rejected: limit.count_rejected,
            always: false,
        };
        let algorithm = Check {
            key: base,
            algorithm: limit.algorithm,
            limit: lim,
            hits,
            ttl_ms: ttl_ms as f64,
            window_end_ms: end as f64,
        };
        let window = -(-(end - now_ms)).div_euclid(1000);
        PlannedCheck {
            index,
            limit,
            stats,
            key: String::new(),
            hits,
            window,
            algorithm: Some(algorithm),
            ttl: 0,
        }
    }

    fn jitter_ms(&mut self) -> i64 {
        let jitter = self.options.expiration_jitter_max_seconds;
        if jitter > 0 {
            self.jitter.below(jitter) as i64 * 1000
        } else {
            0
        }
    }

    /// Answer the checks the local cache knows are over; keep the others to charge.
    fn skip_cached(&mut self, p: &mut Pending, atomic: bool) {
        let checks = std::mem::take(&mut p.checks);
        let total = checks.len();
        let mut rest = Vec::with_capacity(total);
        for check in checks {
            let cache = self.cache.as_mut().expect("local cache present");
            let until = cache.refused_until(
                check.key(),
                check.hits,
                check.limit.requests_per_unit,
                p.now_ms,
            );
            if until != 0 {
                self.cached_over(p, &check, until - p.now_ms);
            } else {
                rest.push(check);
            }
        }
        if rest.len() != total {
            p.cached = true;
            if atomic {
                // The request is refused: charge none of the others, only read them.
                for check in &mut rest {
                    if let Some(c) = &mut check.algorithm {
                        c.hits = 0;
                    }
                }
            }
        }
        p.checks = rest;
    }

    /// A refusal from the cache, with the stats a refusal from the store would have, plus the
    /// cache's own `over_limit_with_local_cache` (the reference's TC-27).
    fn cached_over(&mut self, p: &mut Pending, check: &PlannedCheck, reset_ms: i64) {
        let (limit, hits) = (&check.limit, check.hits as i64);
        let status = &mut p.statuses[check.index];
        status.code = if limit.shadow_mode {
            Code::Ok
        } else {
            Code::OverLimit
        };
        status.remaining = 0;
        if check.algorithm.is_some() {
            status.reset_ms = Some(reset_ms);
            status.reset_seconds = -(-reset_ms).div_euclid(1000);
        }
        let shadow = if limit.shadow_mode { hits } else { 0 };
        let counts = Counts {
            total: hits,
            over: hits,
            shadow,
            cache_hits: hits,
            ..Counts::default()
        };
        self.stats
            .record(&p.rules, &p.domain, &check.stats, &counts);
        self.stats.local_cache_hit();
    }
}

impl Pending {
    fn push(&mut self, status: Status, limit: Option<Arc<RateLimit>>, unlimited: bool) {
        self.statuses.push(status);
        self.limits.push(limit);
        self.unlimited.push(unlimited);
    }
}

/// A domain the caller owns: only the descriptors' explicit limits count.
fn explicit_matches(request: &Request<'_>) -> Result<Vec<Option<Match>>, EngineError> {
    (0..request.descriptors.len())
        .map(|i| match request.explicit.get(i) {
            Some(Some(limit)) => explicit_match(limit, i).map(Some),
            _ => Ok(None),
        })
        .collect()
}

/// The rule set of a request in a domain its caller owns while no rules are loaded.
fn no_rules() -> Arc<RuleSet> {
    static EMPTY: OnceLock<Arc<RuleSet>> = OnceLock::new();
    EMPTY
        .get_or_init(|| {
            Arc::new(RuleSet {
                nodes: Vec::new(),
                limits: Vec::new(),
                limit_domains: Vec::new(),
                domains: Default::default(),
            })
        })
        .clone()
}

/// A limit the caller sent with the descriptor, applied as it is; it must have a window.
fn explicit_match(limit: &Arc<RateLimit>, index: usize) -> Result<Match, EngineError> {
    if !limit.unlimited && limit.window_length_ms() <= 0 {
        return Err(not_a_unit(index, limit.unit as i64));
    }
    Ok(Match {
        limit: limit.clone(),
        stats_key: None,
        shared_values: Vec::new(),
    })
}

fn not_a_unit(index: usize, unit: i64) -> EngineError {
    EngineError::Request(format!(
        "descriptors[{index}].limit.unit: {unit} is not a unit; expected SECOND, MINUTE, HOUR, DAY, WEEK, MONTH or YEAR"
    ))
}

/// A wire number that names no unit at all, in the words of `transports/rls_proto.py` (which
/// refuses it before the engine sees it); UNKNOWN (0) is a unit there, refused by the engine.
fn not_a_wire_unit(index: usize, unit: i32) -> EngineError {
    EngineError::Request(format!(
        "descriptors[{index}].limit.unit: {unit} is not a unit; expected SECOND..YEAR"
    ))
}

/// The limit Envoy sent with the descriptor (`rls_proto.envoy_override`): a fixed window,
/// never shadowed, counted under a stats key made of the request's values.
fn override_match(
    domain: &str,
    desc: &Descriptor,
    limit: &LimitOverride,
    index: usize,
) -> Result<Match, EngineError> {
    let unit = match u64::try_from(limit.unit).ok().and_then(Unit::from_wire) {
        None => return Err(not_a_wire_unit(index, limit.unit)),
        Some(Unit::Unknown) => return Err(not_a_unit(index, 0)),
        Some(unit) => unit,
    };
    let key = override_stats_key(domain, &desc.entries);
    let rate_limit = RateLimit::new(limit.requests_per_unit, unit, key.clone());
    Ok(Match {
        limit: Arc::new(rate_limit),
        stats_key: Some(key),
        shared_values: Vec::new(),
    })
}

fn check_hits(descriptors: &[Descriptor]) -> Result<(), EngineError> {
    for (i, desc) in descriptors.iter().enumerate() {
        if let Some(hits) = desc.hits_addend.filter(|&h| h > u64::from(u32::MAX)) {
            return Err(EngineError::Request(format!(
                "descriptors[{i}].hits_addend: {hits} is too large; expected at most 4294967295"
            )));
        }
    }
    Ok(())
}

/// How long an algorithm's state matters; past it, a missing key means the same thing.
pub(crate) fn state_ttl_ms(algorithm: Algorithm, rpu: u32, window_ms: i64, burst: u32) -> i64 {
    match algorithm {
        Algorithm::SlidingWindow => 2 * window_ms,
        Algorithm::SlidingLog | Algorithm::FixedWindow => window_ms,
        Algorithm::TokenBucket | Algorithm::LeakyBucket => {
            let per_request = window_ms as f64 / f64::from(rpu.max(1));
            let size = if burst != 0 { burst } else { rpu }.max(1);
            (per_request * f64::from(size) + per_request) as i64 + 1000
        }
    }
}

fn push_int(out: &mut String, n: i64) {
    use std::fmt::Write;
    let _ = write!(out, "{n}");
}

fn utc() -> &'static Zone {
    static UTC: OnceLock<Zone> = OnceLock::new();
    UTC.get_or_init(Zone::utc)
}
