//! The engine: request → match → plan → charge → statuses, overall code and headers, with the
//! exact semantics of `sidecar/limiter/engine.py` (the reference's, plus our extensions).
//!
//! One call decides one request against the rules snapshot it started with. On the built-in
//! memory store [`Engine::decide`] answers at once; on Redis the same plan is charged through a
//! [`crate::redis::RedisBatch`] (the commands to send, then the replies), and settled by the
//! same code. Time comes in as `now_ms`; randomness (the expiration jitter) is injected.

mod answer;
mod charge;
mod plan;

use std::sync::Arc;

use crate::local_cache::LocalCache;
use crate::memory::MemoryStore;
use crate::rls::{Code, CurrentLimit, Descriptor, DescriptorStatus, RateLimitResponse};
use crate::rules::{DomainOptions, FailurePolicy, RateLimit, RuleSet};
use crate::stats::{Snapshot, Stats};

pub use answer::{fixed_window_outcome, near_threshold, Outcome};
pub(crate) use charge::stop_increment;
pub use plan::{Pending, PlannedCheck};

/// `remaining` of an unlimited descriptor (the reference's).
pub const UNLIMITED_REMAINING: i64 = 4_294_967_295;

/// Engine behaviour that comes from settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub cache_key_prefix: String,
    pub near_limit_ratio: f64,
    pub shadow_mode: bool,
    pub quota_mode: bool,
    pub stop_increment_when_over_limit: bool,
    pub expiration_jitter_max_seconds: u64,
    pub response_headers: bool,
    pub limit_header: String,
    pub remaining_header: String,
    pub reset_header: String,
    /// The service-wide failure policy (a domain's own wins).
    pub failure_policy: FailurePolicy,
    /// LOCAL_CACHE_SIZE_IN_BYTES; 0: no local over-limit cache.
    pub local_cache_bytes: usize,
    /// Request-dependent stats names kept between two scrapes at most.
    pub max_stats_keys: usize,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            cache_key_prefix: String::new(),
            near_limit_ratio: 0.8,
            shadow_mode: false,
            quota_mode: false,
            stop_increment_when_over_limit: false,
            expiration_jitter_max_seconds: 300,
            response_headers: false,
            limit_header: "RateLimit-Limit".into(),
            remaining_header: "RateLimit-Remaining".into(),
            reset_header: "RateLimit-Reset".into(),
            failure_policy: FailurePolicy::Unavailable,
            local_cache_bytes: 0,
            max_stats_keys: 65_536,
        }
    }
}

/// One descriptor's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub code: Code,
    pub limit: Option<Arc<RateLimit>>,
    pub remaining: i64,
    /// Whole seconds, rounded up (what the reference reports).
    pub reset_seconds: i64,
    /// Exact, for the algorithms that know it to the millisecond.
    pub reset_ms: Option<i64>,
}

impl Status {
    fn ok() -> Status {
        Status {
            code: Code::Ok,
            limit: None,
            remaining: 0,
            reset_seconds: 0,
            reset_ms: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub overall: Code,
    pub statuses: Vec<Status>,
    pub headers: Vec<(String, String)>,
}

impl Decision {
    /// The decision as Envoy's `RateLimitResponse` (what `server/rls_proto.py` builds): the
    /// reset in milliseconds where the algorithm knows it, else in whole seconds.
    pub fn to_response(&self) -> RateLimitResponse {
        let statuses = self
            .statuses
            .iter()
            .map(|s| DescriptorStatus {
                code: s.code,
                current_limit: s.limit.as_ref().map(|l| CurrentLimit {
                    name: l.name.clone(),
                    requests_per_unit: l.requests_per_unit,
                    unit: l.unit,
                }),
                limit_remaining: u32::try_from(s.remaining.max(0)).unwrap_or(u32::MAX),
                reset_ms: s.reset_ms.unwrap_or(s.reset_seconds * 1000).max(0) as u64,
            })
            .collect();
        RateLimitResponse {
            overall_code: self.overall,
            statuses,
            response_headers_to_add: self.headers.clone(),
        }
    }
}

/// Why a request got no decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineError {
    /// The caller sent something invalid; the message names the field.
    Request(String),
    /// No valid rules have been loaded yet.
    NoRules,
    /// The counter store failed (and the failure policy says to say so).
    Storage { message: String, transient: bool },
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Request(m) => f.write_str(m),
            EngineError::NoRules => f.write_str("no rate limit configuration loaded"),
            EngineError::Storage { message, .. } => f.write_str(message),
        }
    }
}

/// One rate-limit call: what the engine is asked.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub domain: &'a str,
    pub descriptors: &'a [Descriptor],
    pub hits_addend: u32,
    pub now_ms: i64,
    /// Usage reported after the fact (/v1/report): every hit is charged, even past the limit.
    pub charge_always: bool,
    /// Per descriptor, a limit the caller computed itself (`model.Descriptor.limit`), applied
    /// as it is instead of the rules; empty when there are none. Envoy's override arrives in
    /// the descriptor (`limit`) and is made into such a limit here.
    pub explicit: &'a [Option<Arc<RateLimit>>],
    /// The caller owns the domain (full mode's key verification): the descriptors' explicit
    /// limits apply with these options, and the rules are not consulted (none need be loaded;
    /// a descriptor without an explicit limit has none).
    pub options: Option<&'a DomainOptions>,
}

/// The expiration jitter's source: random, or fixed values (taken in turn) for tests.
pub enum Jitter {
    Random(fastrand::Rng),
    Fixed { values: Vec<u64>, next: usize },
}

impl Jitter {
    /// A number in `0..n` (`random.randrange(n)`), `n > 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        match self {
            Jitter::Random(rng) => rng.u64(0..n),
            Jitter::Fixed { values, next } => {
                let v = values
                    .get(*next % values.len().max(1))
                    .copied()
                    .unwrap_or(0);
                *next += 1;
                v % n
            }
        }
    }
}

pub struct Engine {
    pub options: EngineOptions,
    rules: Option<Arc<RuleSet>>,
    store: MemoryStore,
    /// The `local` failure policy's counters: made on first use, kept across outages.
    fallback: Option<MemoryStore>,
    cache: Option<LocalCache>,
    stats: Stats,
    jitter: Jitter,
}

impl Engine {
    pub fn new(options: EngineOptions, jitter: Jitter) -> Engine {
        let cache =
            (options.local_cache_bytes > 0).then(|| LocalCache::new(options.local_cache_bytes));
        let stats = Stats::new(options.max_stats_keys);
        Engine {
            options,
            rules: None,
            store: MemoryStore::new(),
            fallback: None,
            cache,
            stats,
            jitter,
        }
    }

    /// Swap in new rules; calls already planned keep the ones they started with.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.stats.set_rules(rules.clone());
        self.rules = Some(rules);
    }

    pub fn rules(&self) -> Option<&Arc<RuleSet>> {
        self.rules.as_ref()
    }

    /// Decide one request on the built-in memory store.
    pub fn decide(&mut self, request: &Request<'_>) -> Result<Decision, EngineError> {
        let mut pending = self.plan(request)?;
        if !pending.checks.is_empty() {
            let mut store = std::mem::take(&mut self.store);
            self.charge_memory(&mut store, &mut pending);
            self.store = store;
        }
        Ok(self.finish(pending))
    }

    /// Keys held by the memory store (live or not yet swept).
    pub fn store_len(&self) -> usize {
        self.store.len()
    }

    pub fn local_cache(&self) -> Option<&LocalCache> {
        self.cache.as_ref()
    }

    /// Everything counted since the last call; the counters start over.
    pub fn take_stats(&mut self) -> Snapshot {
        self.stats.take()
    }
}

#[cfg(test)]
mod tests;
