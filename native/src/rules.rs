//! The compiled rules: a frozen copy of Python's validated `RuleSet`, built on every reload.
//!
//! Python walks its model (descriptor trees, limits, domain options) and hands plain data to a
//! [`RuleSetBuilder`]; the crate never reads YAML. The builder checks what the engine relies on
//! (known algorithms and units, node references in range, a time zone wherever a calendar window
//! needs one) and names what is wrong, so a bad hand-over fails the reload instead of a request.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::algorithms::Algorithm;
use crate::rls::Unit;
use crate::tz::Zone;

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

/// What Python hands over for one limit.
#[derive(Debug, Clone)]
pub struct LimitSpec {
    pub requests_per_unit: u32,
    pub unit: u64,
    pub stats_key: String,
    pub name: String,
    pub unlimited: bool,
    pub shadow_mode: bool,
    pub quota_mode: bool,
    pub detailed_metric: bool,
    pub replaces: Vec<String>,
    pub algorithm: String,
    pub window_ms: i64,
    pub burst: u32,
    pub count_rejected: bool,
    pub calendar: bool,
}

/// What Python hands over for one node: children as (dict key, node id) in dict order, and
/// wildcards as (pattern parts, node id) in config order.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    pub key: String,
    pub value: String,
    pub limit: Option<u32>,
    pub children: Vec<(String, NodeId)>,
    pub wildcards: Vec<(Vec<String>, NodeId)>,
    pub value_to_metric: bool,
    pub share_threshold: bool,
}

/// What Python hands over for one domain; `tzif` is the time zone's TZif file when the domain
/// has calendar windows.
#[derive(Debug, Clone, Default)]
pub struct DomainSpec {
    pub name: String,
    pub root: NodeId,
    pub atomic: bool,
    pub failure_policy: Option<String>,
    pub time_zone: String,
    pub tzif: Option<Vec<u8>>,
}

#[derive(Default)]
pub struct RuleSetBuilder {
    limits: Vec<Arc<RateLimit>>,
    nodes: Vec<NodeSpec>,
    domains: Vec<DomainSpec>,
}

impl RuleSetBuilder {
    pub fn new() -> RuleSetBuilder {
        RuleSetBuilder::default()
    }

    pub fn add_limit(&mut self, spec: LimitSpec) -> Result<u32, RulesError> {
        let id = self.limits.len() as u32;
        let at = || format!("limits[{id}] ({})", spec.stats_key);
        let unit = Unit::from_wire(spec.unit).ok_or_else(|| {
            RulesError(format!(
                "{}: unit {} is not a unit; expected 0..7",
                at(),
                spec.unit
            ))
        })?;
        if unit == Unit::Unknown && !spec.unlimited {
            return Err(RulesError(format!("{}: a limited rule needs a unit", at())));
        }
        let algorithm = Algorithm::from_name(&spec.algorithm).ok_or_else(|| {
            RulesError(format!("{}: unknown algorithm '{}'", at(), spec.algorithm))
        })?;
        if !(0..MAX_WINDOW_MS).contains(&spec.window_ms) || spec.window_ms % 1000 != 0 {
            return Err(RulesError(format!(
                "{}: window of {} ms; expected whole seconds below 2^53 ms",
                at(),
                spec.window_ms
            )));
        }
        if spec.calendar && !matches!(unit, Unit::Day | Unit::Week | Unit::Month | Unit::Year) {
            return Err(RulesError(format!(
                "{}: calendar windows are a day, week, month or year",
                at()
            )));
        }
        self.limits.push(Arc::new(RateLimit {
            id: Some(id),
            requests_per_unit: spec.requests_per_unit,
            unit,
            stats_key: spec.stats_key,
            name: spec.name,
            unlimited: spec.unlimited,
            shadow_mode: spec.shadow_mode,
            quota_mode: spec.quota_mode,
            detailed_metric: spec.detailed_metric,
            replaces: spec.replaces,
            algorithm,
            window_ms: spec.window_ms,
            burst: spec.burst,
            count_rejected: spec.count_rejected,
            calendar: spec.calendar,
        }));
        Ok(id)
    }

    pub fn add_node(&mut self, spec: NodeSpec) -> NodeId {
        self.nodes.push(spec);
        (self.nodes.len() - 1) as NodeId
    }

    pub fn add_domain(&mut self, spec: DomainSpec) {
        self.domains.push(spec);
    }

    pub fn build(self) -> Result<RuleSet, RulesError> {
        let count = self.nodes.len();
        let node_ref = |id: NodeId, at: &str| {
            if (id as usize) < count {
                Ok(id)
            } else {
                Err(RulesError(format!(
                    "{at}: node {id} does not exist ({count} nodes)"
                )))
            }
        };
        let mut nodes = Vec::with_capacity(count);
        for (i, spec) in self.nodes.into_iter().enumerate() {
            let at = format!("nodes[{i}]");
            let limit = match spec.limit {
                Some(l) => Some(
                    self.limits
                        .get(l as usize)
                        .cloned()
                        .ok_or_else(|| RulesError(format!("{at}: limit {l} does not exist")))?,
                ),
                None => None,
            };
            let mut children = HashMap::with_capacity(spec.children.len());
            for (key, child) in spec.children {
                children.insert(key, node_ref(child, &at)?);
            }
            let mut wildcards = Vec::with_capacity(spec.wildcards.len());
            for (parts, child) in spec.wildcards {
                if parts.len() < 2 {
                    return Err(RulesError(format!(
                        "{at}: a wildcard pattern has at least two parts"
                    )));
                }
                wildcards.push((parts, node_ref(child, &at)?));
            }
            let final_key = if spec.value.is_empty() {
                spec.key
            } else {
                format!("{}_{}", spec.key, spec.value)
            };
            nodes.push(Node {
                final_key,
                limit,
                children,
                wildcards,
                value_to_metric: spec.value_to_metric,
                share_threshold: spec.share_threshold,
            });
        }
        let mut rules = RuleSet {
            nodes,
            limit_domains: vec![Arc::from(""); self.limits.len()],
            limits: self.limits,
            domains: HashMap::new(),
        };
        for spec in self.domains {
            compile_domain(&mut rules, spec)?;
        }
        Ok(rules)
    }
}

fn compile_domain(rules: &mut RuleSet, spec: DomainSpec) -> Result<(), RulesError> {
    let at = format!("domain '{}'", spec.name);
    if spec.root as usize >= rules.nodes.len() {
        return Err(RulesError(format!(
            "{at}: root node {} does not exist",
            spec.root
        )));
    }
    let failure_policy = match spec.failure_policy.as_deref() {
        None | Some("") => None,
        Some(name) => Some(
            FailurePolicy::from_name(name)
                .ok_or_else(|| RulesError(format!("{at}: unknown failure policy '{name}'")))?,
        ),
    };
    let zone = match &spec.tzif {
        Some(data) => Some(Arc::new(Zone::from_tzif(data).map_err(|e| {
            RulesError(format!("{at}: time zone '{}': {e}", spec.time_zone))
        })?)),
        None => None,
    };
    let name: Arc<str> = Arc::from(spec.name.as_str());
    let calendar = mark_domain(rules, spec.root, &name);
    if calendar && zone.is_none() {
        return Err(RulesError(format!(
            "{at}: has calendar windows but no data for time zone '{}'",
            spec.time_zone
        )));
    }
    let options = DomainOptions {
        atomic: spec.atomic,
        failure_policy,
        zone,
    };
    if rules
        .domains
        .insert(
            spec.name,
            Domain {
                root: spec.root,
                options,
            },
        )
        .is_some()
    {
        return Err(RulesError(format!("{at}: given twice")));
    }
    Ok(())
}

/// Record `domain` as the owner of every limit under `root`; whether any is a calendar window.
fn mark_domain(rules: &mut RuleSet, root: NodeId, domain: &Arc<str>) -> bool {
    let mut calendar = false;
    let mut stack = vec![root];
    let mut seen = vec![false; rules.nodes.len()];
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id as usize], true) {
            continue;
        }
        let node = &rules.nodes[id as usize];
        if let Some(limit) = &node.limit {
            calendar |= limit.calendar;
            if let Some(l) = limit.id {
                rules.limit_domains[l as usize] = domain.clone();
            }
        }
        stack.extend(node.children.values().copied());
        stack.extend(node.wildcards.iter().map(|w| w.1));
    }
    calendar
}

#[cfg(test)]
pub mod testing {
    //! Small rule sets for the crate's own tests.
    use super::*;

    pub fn limit(rpu: u32, unit: Unit, stats_key: &str) -> LimitSpec {
        LimitSpec {
            requests_per_unit: rpu,
            unit: unit as u64,
            stats_key: stats_key.into(),
            name: String::new(),
            unlimited: false,
            shadow_mode: false,
            quota_mode: false,
            detailed_metric: false,
            replaces: vec![],
            algorithm: "fixed_window".into(),
            window_ms: 0,
            burst: 0,
            count_rejected: true,
            calendar: false,
        }
    }

    /// A leaf node `key[=value]` holding `limit`.
    pub fn leaf(
        b: &mut RuleSetBuilder,
        key: &str,
        value: &str,
        limit: Option<LimitSpec>,
    ) -> NodeId {
        let limit = limit.map(|l| b.add_limit(l).unwrap());
        b.add_node(NodeSpec {
            key: key.into(),
            value: value.into(),
            limit,
            ..NodeSpec::default()
        })
    }

    pub fn final_key(key: &str, value: &str) -> String {
        if value.is_empty() {
            key.into()
        } else {
            format!("{key}_{value}")
        }
    }

    /// A domain whose root holds `children` (key, value, node), wildcards registered as the
    /// loader registers them.
    pub fn domain(b: &mut RuleSetBuilder, name: &str, children: &[(&str, &str, NodeId)]) {
        let root = parent(b, name, "", children);
        b.add_domain(DomainSpec {
            name: name.into(),
            root,
            time_zone: "UTC".into(),
            ..DomainSpec::default()
        });
    }

    pub fn parent(
        b: &mut RuleSetBuilder,
        key: &str,
        value: &str,
        children: &[(&str, &str, NodeId)],
    ) -> NodeId {
        let mut spec = NodeSpec {
            key: key.into(),
            value: value.into(),
            ..NodeSpec::default()
        };
        for &(k, v, id) in children {
            let fk = final_key(k, v);
            if fk.contains('*') {
                spec.wildcards
                    .push((fk.split('*').map(String::from).collect(), id));
            }
            spec.children.push((fk, id));
        }
        b.add_node(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn builds_domains_and_records_limit_owners() {
        let mut b = RuleSetBuilder::new();
        let n = leaf(&mut b, "k", "", Some(limit(5, Unit::Second, "d.k")));
        domain(&mut b, "d", &[("k", "", n)]);
        let rules = b.build().unwrap();
        assert_eq!(&*rules.limit_domains[0], "d");
        let root = rules.domains["d"].root;
        assert_eq!(rules.node(root).children["k"], n);
        assert_eq!(rules.limits[0].window_seconds(), 1);
        assert!(rules.limits[0].reference_compatible());
    }

    #[test]
    fn refuses_bad_hand_overs_with_the_reason() {
        let mut b = RuleSetBuilder::new();
        let bad = LimitSpec {
            algorithm: "nope".into(),
            ..limit(1, Unit::Second, "d.x")
        };
        assert_eq!(
            b.add_limit(bad).unwrap_err().0,
            "limits[0] (d.x): unknown algorithm 'nope'"
        );
        let cal = LimitSpec {
            calendar: true,
            ..limit(1, Unit::Day, "d.c")
        };
        let n = leaf(&mut b, "c", "", Some(cal));
        domain(&mut b, "d", &[("c", "", n)]);
        let err = b.build().unwrap_err();
        assert_eq!(
            err.0,
            "domain 'd': has calendar windows but no data for time zone 'UTC'"
        );
        let mut b = RuleSetBuilder::new();
        b.add_node(NodeSpec {
            children: vec![("x".into(), 7)],
            ..NodeSpec::default()
        });
        assert!(b.build().unwrap_err().0.contains("node 7 does not exist"));
    }
}
