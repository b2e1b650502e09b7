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
pub fn leaf(b: &mut RuleSetBuilder, key: &str, value: &str, limit: Option<LimitSpec>) -> NodeId {
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
