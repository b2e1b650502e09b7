//! The compiled rules: a frozen copy of Python's validated `RuleSet`, built on every reload.
//!
//! Python walks its model (descriptor trees, limits, domain options) and hands plain data to a
//! [`RuleSetBuilder`]; the crate never reads YAML. The builder checks what the engine relies on
//! (known algorithms and units, node references in range, a time zone wherever a calendar window
//! needs one) and names what is wrong, so a bad hand-over fails the reload instead of a request.

mod build;
#[cfg(test)]
pub mod testing;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::algorithms::Algorithm;
use crate::rls::Unit;
use crate::tz::Zone;

pub use build::{domain_options, DomainSpec, LimitSpec, NodeSpec, RuleSetBuilder};

/// Windows are kept exact in `f64` milliseconds (Python's floats), so they stay below 2^53.
pub const MAX_WINDOW_MS: i64 = 1 << 53;

pub fn unit_seconds(unit: Unit) -> i64 {
    match unit {
        Unit::Unknown => 0,
        Unit::Second => 1,
        Unit::Minute => 60,
        Unit::Hour => 3600,
        Unit::Day => 86_400,
        Unit::Week => 604_800,
        Unit::Month => 2_592_000,
        Unit::Year => 31_536_000,
    }
}

/// A reload that cannot be compiled; the message names the item and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError(pub String);

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The store failure policy of a domain (`limiter/policy.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    Allow,
    Deny,
    Unavailable,
    Local,
}

impl FailurePolicy {
    pub fn from_name(name: &str) -> Option<FailurePolicy> {
        Some(match name {
            "allow" => FailurePolicy::Allow,
            "deny" => FailurePolicy::Deny,
            "unavailable" => FailurePolicy::Unavailable,
            "local" => FailurePolicy::Local,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FailurePolicy::Allow => "allow",
            FailurePolicy::Deny => "deny",
            FailurePolicy::Unavailable => "unavailable",
            FailurePolicy::Local => "local",
        }
    }
}

/// One `rate_limit` block with the flags of its descriptor (`rules/model.py` RateLimit).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Position in the rule set (`None` for a limit Envoy sent with the request).
    pub id: Option<u32>,
    pub requests_per_unit: u32,
    pub unit: Unit,
    pub stats_key: String,
    pub name: String,
    pub unlimited: bool,
    pub shadow_mode: bool,
    pub quota_mode: bool,
    pub detailed_metric: bool,
    pub replaces: Vec<String>,
    pub algorithm: Algorithm,
    /// 0: the unit's length.
    pub window_ms: i64,
    /// 0: the algorithm's default.
    pub burst: u32,
    pub count_rejected: bool,
    pub calendar: bool,
}

impl RateLimit {
    /// A limit with the defaults of every extension (the reference's fixed window).
    pub fn new(requests_per_unit: u32, unit: Unit, stats_key: String) -> RateLimit {
        RateLimit {
            id: None,
            requests_per_unit,
            unit,
            stats_key,
            name: String::new(),
            unlimited: false,
            shadow_mode: false,
            quota_mode: false,
            detailed_metric: false,
            replaces: Vec::new(),
            algorithm: Algorithm::FixedWindow,
            window_ms: 0,
            burst: 0,
            count_rejected: true,
            calendar: false,
        }
    }

    pub fn window_seconds(&self) -> i64 {
        if self.window_ms != 0 {
            self.window_ms / 1000
        } else {
            unit_seconds(self.unit)
        }
    }

    pub fn window_length_ms(&self) -> i64 {
        if self.window_ms != 0 {
            self.window_ms
        } else {
            unit_seconds(self.unit) * 1000
        }
    }

    /// Counted exactly as envoyproxy/ratelimit counts (INCRBY + EXPIRE on its keys).
    pub fn reference_compatible(&self) -> bool {
        self.algorithm == Algorithm::FixedWindow && self.count_rejected && !self.calendar
    }
}

pub type NodeId = u32;

/// A descriptor entry of a domain's tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// `key_value`, or `key` when the value is empty.
    pub final_key: String,
    pub limit: Option<Arc<RateLimit>>,
    /// Children by final key (wildcard children too, literally).
    pub children: HashMap<String, NodeId>,
    /// Wildcard children in config order: the pattern's literal parts (split on '*') and the node.
    pub wildcards: Vec<(Vec<String>, NodeId)>,
    pub value_to_metric: bool,
    pub share_threshold: bool,
}

/// Domain-level options the engine reads per request.
#[derive(Debug, Clone, Default)]
pub struct DomainOptions {
    pub atomic: bool,
    /// `None`: the service-wide default.
    pub failure_policy: Option<FailurePolicy>,
    /// For calendar windows; present whenever the domain has a calendar limit.
    pub zone: Option<Arc<Zone>>,
}

#[derive(Debug, Clone)]
pub struct Domain {
    pub root: NodeId,
    pub options: DomainOptions,
}

/// Every domain of one load.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub nodes: Vec<Node>,
    pub limits: Vec<Arc<RateLimit>>,
    /// The domain whose tree holds each limit (by limit id), for the per-rule stats.
    pub limit_domains: Vec<Arc<str>>,
    pub domains: HashMap<String, Domain>,
}

impl RuleSet {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }
}
