//! The builder: plain data from Python, checked, into a [`RuleSet`].

use std::collections::HashMap;
use std::sync::Arc;

use super::{
    Domain, DomainOptions, FailurePolicy, Node, NodeId, RateLimit, RuleSet, RulesError,
    MAX_WINDOW_MS,
};
use crate::algorithms::Algorithm;
use crate::rls::Unit;
use crate::tz::Zone;

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

impl LimitSpec {
    /// The limit, numbered `id` in its rule set (`None`: one a caller sent with a request);
    /// the error says what is wrong with it.
    pub fn compile(self, id: Option<u32>) -> Result<RateLimit, String> {
        let unit = Unit::from_wire(self.unit)
            .ok_or_else(|| format!("unit {} is not a unit; expected 0..7", self.unit))?;
        let algorithm = Algorithm::from_name(&self.algorithm)
            .ok_or_else(|| format!("unknown algorithm '{}'", self.algorithm))?;
        if !(0..MAX_WINDOW_MS).contains(&self.window_ms) || self.window_ms % 1000 != 0 {
            return Err(format!(
                "window of {} ms; expected whole seconds below 2^53 ms",
                self.window_ms
            ));
        }
        if self.calendar && !matches!(unit, Unit::Day | Unit::Week | Unit::Month | Unit::Year) {
            return Err("calendar windows are a day, week, month or year".into());
        }
        Ok(RateLimit {
            id,
            requests_per_unit: self.requests_per_unit,
            unit,
            stats_key: self.stats_key,
            name: self.name,
            unlimited: self.unlimited,
            shadow_mode: self.shadow_mode,
            quota_mode: self.quota_mode,
            detailed_metric: self.detailed_metric,
            replaces: self.replaces,
            algorithm,
            window_ms: self.window_ms,
            burst: self.burst,
            count_rejected: self.count_rejected,
            calendar: self.calendar,
        })
    }
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
        let at = format!("limits[{id}] ({})", spec.stats_key);
        if spec.unit == Unit::Unknown as u64 && !spec.unlimited {
            return Err(RulesError(format!("{at}: a limited rule needs a unit")));
        }
        let limit = spec
            .compile(Some(id))
            .map_err(|e| RulesError(format!("{at}: {e}")))?;
        self.limits.push(Arc::new(limit));
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

/// A domain's options; `at` names the domain in errors.
pub fn domain_options(
    at: &str,
    atomic: bool,
    failure_policy: Option<&str>,
    time_zone: &str,
    tzif: Option<&[u8]>,
) -> Result<DomainOptions, RulesError> {
    let failure_policy = match failure_policy {
        None | Some("") => None,
        Some(name) => Some(
            FailurePolicy::from_name(name)
                .ok_or_else(|| RulesError(format!("{at}: unknown failure policy '{name}'")))?,
        ),
    };
    let zone = match tzif {
        Some(data) => Some(Arc::new(Zone::from_tzif(data).map_err(|e| {
            RulesError(format!("{at}: time zone '{time_zone}': {e}"))
        })?)),
        None => None,
    };
    Ok(DomainOptions {
        atomic,
        failure_policy,
        zone,
    })
}

fn compile_domain(rules: &mut RuleSet, spec: DomainSpec) -> Result<(), RulesError> {
    let at = format!("domain '{}'", spec.name);
    if spec.root as usize >= rules.nodes.len() {
        return Err(RulesError(format!(
            "{at}: root node {} does not exist",
            spec.root
        )));
    }
    let options = domain_options(
        &at,
        spec.atomic,
        spec.failure_policy.as_deref(),
        &spec.time_zone,
        spec.tzif.as_deref(),
    )?;
    let name: Arc<str> = Arc::from(spec.name.as_str());
    let calendar = mark_domain(rules, spec.root, &name);
    if calendar && options.zone.is_none() {
        return Err(RulesError(format!(
            "{at}: has calendar windows but no data for time zone '{}'",
            spec.time_zone
        )));
    }
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
mod tests {
    use super::super::testing::*;
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
