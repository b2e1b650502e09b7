//! Request descriptor → configured limit, as envoyproxy/ratelimit walks its tree (the twin of
//! `sidecar/rules/matcher.py`), and the stats keys the match resolves to.
//!
//! At each entry: exact `key_value` child > first wildcard child in config order > key-only
//! child. Only the node where the request descriptor ends may give a limit, and a chosen node is
//! never abandoned for a sibling (no backtracking).

use std::sync::{Arc, OnceLock};

use regex::Regex;

use crate::rules::{Node, NodeId, RateLimit, RuleSet};

pub type Entry = (String, String);

/// How an entry matched its node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    Exact,
    Wildcard,
    KeyOnly,
}

/// A matched limit with the names the request resolves it to.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub limit: Arc<RateLimit>,
    /// `None`: the limit's own stats key.
    pub stats_key: Option<String>,
    /// Per entry, the wildcard pattern that replaces the request value in the counter key when
    /// that entry matched a share_threshold node; empty when none applies.
    pub shared_values: Vec<Option<String>>,
}

impl Match {
    pub fn stats_key(&self) -> &str {
        self.stats_key.as_deref().unwrap_or(&self.limit.stats_key)
    }
}

/// Whether `text` matches the pattern whose literal pieces (split on '*') are `parts`.
pub fn wildcard_match(parts: &[String], text: &str) -> bool {
    let (first, last) = match (parts.first(), parts.last()) {
        (Some(f), Some(l)) => (f.as_str(), l.as_str()),
        _ => return false,
    };
    if !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    if parts.iter().map(String::len).sum::<usize>() > text.len() {
        return false;
    }
    let (mut pos, end) = (first.len(), text.len() - last.len());
    for middle in &parts[1..parts.len() - 1] {
        match text[pos..end].find(middle.as_str()) {
            Some(found) => pos += found + middle.len(),
            None => return false,
        }
    }
    true
}

/// The limit for one request descriptor in the tree under `root`, or `None` (no limit).
/// `scratch` is a reusable buffer for the `key_value` lookups.
pub fn match_descriptor(
    rules: &RuleSet,
    root: NodeId,
    domain: &str,
    entries: &[Entry],
    scratch: &mut String,
) -> Option<Match> {
    let mut parent = rules.node(root);
    let mut chosen: Vec<(&Node, How)> = Vec::with_capacity(entries.len());
    let mut special = false;
    let last = entries.len().checked_sub(1)?;
    for (i, (key, value)) in entries.iter().enumerate() {
        scratch.clear();
        scratch.push_str(key);
        scratch.push('_');
        scratch.push_str(value);
        let (node, how) = find_child(rules, parent, key, scratch)?;
        chosen.push((node, how));
        special = special || node.value_to_metric || (how == How::Wildcard && node.share_threshold);
        if i == last {
            let limit = node.limit.as_ref()?;
            if special || limit.detailed_metric {
                return Some(resolve(limit, domain, entries, &chosen));
            }
            return Some(Match {
                limit: limit.clone(),
                stats_key: None,
                shared_values: Vec::new(),
            });
        }
        if node.children.is_empty() {
            return None;
        }
        parent = node;
    }
    None
}

fn find_child<'r>(
    rules: &'r RuleSet,
    parent: &Node,
    key: &str,
    final_key: &str,
) -> Option<(&'r Node, How)> {
    if let Some(&id) = parent.children.get(final_key) {
        return Some((rules.node(id), How::Exact));
    }
    for (parts, id) in &parent.wildcards {
        if wildcard_match(parts, final_key) {
            return Some((rules.node(*id), How::Wildcard));
        }
    }
    parent
        .children
        .get(key)
        .map(|&id| (rules.node(id), How::KeyOnly))
}

fn resolve(
    limit: &Arc<RateLimit>,
    domain: &str,
    entries: &[Entry],
    chosen: &[(&Node, How)],
) -> Match {
    let shared = shared_values(entries, chosen);
    let names: Vec<String> = if limit.detailed_metric {
        let any_shared = !shared.is_empty();
        entries
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let pattern = shared.get(i).and_then(|s| s.as_deref());
                detailed_name(k, v, pattern, any_shared)
            })
            .collect()
    } else if chosen.iter().any(|(node, _)| node.value_to_metric) {
        chosen
            .iter()
            .zip(entries)
            .map(|(&(node, how), (k, v))| level_name(node, how, k, v))
            .collect()
    } else {
        return Match {
            limit: limit.clone(),
            stats_key: None,
            shared_values: shared,
        };
    };
    let mut joined = String::from(domain);
    for name in &names {
        joined.push('.');
        joined.push_str(name);
    }
    Match {
        limit: limit.clone(),
        stats_key: Some(sanitize_stat_name(&joined)),
        shared_values: shared,
    }
}

/// Per entry, the pattern a share_threshold wildcard puts in place of the request value.
fn shared_values(entries: &[Entry], chosen: &[(&Node, How)]) -> Vec<Option<String>> {
    let is_shared = |node: &Node, how: How| how == How::Wildcard && node.share_threshold;
    if !chosen.iter().any(|&(node, how)| is_shared(node, how)) {
        return Vec::new();
    }
    chosen
        .iter()
        .zip(entries)
        .map(|(&(node, how), (key, _))| {
            is_shared(node, how).then(|| pattern_value(node, key).to_string())
        })
        .collect()
}

/// The reference trims "<request key>_" off the pattern: a key with '_' must stay whole.
fn pattern_value<'n>(node: &'n Node, key: &str) -> &'n str {
    let fk = node.final_key.as_str();
    match fk.strip_prefix(key).and_then(|rest| rest.strip_prefix('_')) {
        Some(rest) => rest,
        None => fk,
    }
}

fn detailed_name(key: &str, value: &str, pattern: Option<&str>, any_shared: bool) -> String {
    if let Some(p) = pattern {
        return format!("{key}_{p}");
    }
    // Without share_threshold the reference always writes "key_value", even for an empty
    // value; with it, entries that are not shared drop the '_' of an empty value.
    if !value.is_empty() || !any_shared {
        format!("{key}_{value}")
    } else {
        key.to_string()
    }
}

fn level_name(node: &Node, how: How, key: &str, value: &str) -> String {
    if how == How::Wildcard && (node.share_threshold || !node.value_to_metric) {
        return format!("{key}_{}", pattern_value(node, key));
    }
    if !value.is_empty() && (how == How::Exact || node.value_to_metric) {
        format!("{key}_{value}")
    } else {
        key.to_string()
    }
}

fn dotted_quad() -> &'static Regex {
    static QUAD: OnceLock<Regex> = OnceLock::new();
    // \d is Unicode's decimal digits here, as in Python's `re` on text.
    QUAD.get_or_init(|| Regex::new(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}").expect("valid pattern"))
}

/// The reference's stat-name clean-up: ':' and '|' → '_', the dots of IPv4-like quads → '_'.
pub fn sanitize_stat_name(name: &str) -> String {
    let name = name.replace([':', '|'], "_");
    if !name.chars().any(char::is_numeric) {
        return name;
    }
    dotted_quad()
        .replace_all(&name, |caps: &regex::Captures<'_>| {
            caps[0].replace('.', "_")
        })
        .into_owned()
}

/// Stats key for a limit Envoy supplied in the request (values included, as the reference).
pub fn override_stats_key(domain: &str, entries: &[Entry]) -> String {
    let mut joined = String::from(domain);
    for (k, v) in entries {
        joined.push('.');
        joined.push_str(k);
        if !v.is_empty() {
            joined.push('_');
            joined.push_str(v);
        }
    }
    sanitize_stat_name(&joined)
}

/// The window-independent part of a counter key, byte for byte as envoyproxy/ratelimit builds
/// it: `<prefix><domain>_<key>_<value>_[…]`; a share_threshold entry uses its pattern.
pub fn descriptor_key(
    prefix: &str,
    domain: &str,
    entries: &[Entry],
    shared: &[Option<String>],
) -> String {
    let size = prefix.len()
        + domain.len()
        + 1
        + entries
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>();
    let mut out = String::with_capacity(size + 20);
    out.push_str(prefix);
    out.push_str(domain);
    out.push('_');
    for (i, (k, v)) in entries.iter().enumerate() {
        out.push_str(k);
        out.push('_');
        match shared.get(i).and_then(|s| s.as_deref()) {
            Some(pattern) => out.push_str(pattern),
            None => out.push_str(v),
        }
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rls::Unit;
    use crate::rules::testing::*;
    use crate::rules::{LimitSpec, NodeSpec, RuleSetBuilder};

    fn parts(p: &str) -> Vec<String> {
        p.split('*').map(String::from).collect()
    }

    fn e(pairs: &[(&str, &str)]) -> Vec<Entry> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn wildcards_as_the_reference() {
        let cases = [
            ("k_foo*", "k_foo", true),
            ("k_foo*", "k_fo", false),
            ("k_*", "k_", true),
            ("k_*x*", "k_x", true),
            ("k_*x*", "k_y", false),
            ("k_a*b*c", "k_abc", true),
            ("k_a*b*c", "k_acb", false),
            ("k_a*b*c", "k_abbc", true),
            ("k_ab*ab", "k_ab", false),
            ("k_**", "k_z", true),
            ("k_é*é", "k_é", false),
            ("k_é*é", "k_éé", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                wildcard_match(&parts(pattern), text),
                expected,
                "{pattern} {text}"
            );
        }
    }

    #[test]
    fn stat_names_are_sanitized_like_the_reference() {
        assert_eq!(
            override_stats_key("d", &e(&[("k1", "v1"), ("k2", "")])),
            "d.k1_v1.k2"
        );
        assert_eq!(
            override_stats_key("d", &e(&[("ip", "1.2.3.4"), ("p", "a:b|c")])),
            "d.ip_1_2_3_4.p_a_b_c"
        );
        assert_eq!(sanitize_stat_name("x.1234.5.6.7"), "x.1234_5_6_7");
        // Unicode decimal digits count, as in Python's `re`.
        assert_eq!(sanitize_stat_name("a.١.٢.٣.٤"), "a.١_٢_٣_٤");
    }

    fn shop() -> RuleSet {
        let mut b = RuleSetBuilder::new();
        let path = leaf(
            &mut b,
            "path",
            "",
            Some(limit(5, Unit::Second, "shop.tenant_acme.path")),
        );
        let tenant = parent(&mut b, "tenant", "acme", &[("path", "", path)]);
        let client = leaf(
            &mut b,
            "client",
            "",
            Some(limit(20, Unit::Minute, "shop.client")),
        );
        let mobile = leaf(
            &mut b,
            "client",
            "mobile",
            Some(limit(30, Unit::Minute, "shop.client_mobile")),
        );
        let img = leaf(
            &mut b,
            "bucket",
            "img*",
            Some(limit(2, Unit::Second, "shop.bucket_img*")),
        );
        let share = LimitSpec {
            ..limit(100, Unit::Minute, "shop.files_files/*")
        };
        let files = leaf(&mut b, "files", "files/*", Some(share));
        let detailed = LimitSpec {
            detailed_metric: true,
            ..limit(7, Unit::Minute, "shop.who")
        };
        let who = leaf(&mut b, "who", "", Some(detailed));
        let mut svc = NodeSpec {
            key: "svc".into(),
            value: "a*".into(),
            share_threshold: true,
            ..NodeSpec::default()
        };
        svc.children.push(("who".into(), who));
        let svc = b.add_node(svc);
        domain(
            &mut b,
            "shop",
            &[
                ("tenant", "acme", tenant),
                ("client", "", client),
                ("client", "mobile", mobile),
                ("bucket", "img*", img),
                ("files", "files/*", files),
                ("svc", "a*", svc),
            ],
        );
        b.build().unwrap()
    }

    fn find(rules: &RuleSet, entries: &[(&str, &str)]) -> Option<Match> {
        let root = rules.domains["shop"].root;
        match_descriptor(rules, root, "shop", &e(entries), &mut String::new())
    }

    #[test]
    fn exact_beats_wildcard_beats_key_only_and_only_the_last_entry_limits() {
        let rules = shop();
        assert_eq!(
            find(&rules, &[("client", "mobile")])
                .unwrap()
                .limit
                .requests_per_unit,
            30
        );
        assert_eq!(
            find(&rules, &[("client", "web")])
                .unwrap()
                .limit
                .requests_per_unit,
            20
        );
        assert_eq!(
            find(&rules, &[("bucket", "img1")])
                .unwrap()
                .limit
                .requests_per_unit,
            2
        );
        assert!(find(&rules, &[("bucket", "other")]).is_none());
        assert_eq!(
            find(&rules, &[("tenant", "acme"), ("path", "/x")])
                .unwrap()
                .stats_key(),
            "shop.tenant_acme.path"
        );
        assert!(find(&rules, &[("tenant", "acme")]).is_none()); // placeholder: no limit
        assert!(find(&rules, &[("client", "web"), ("x", "y")]).is_none());
        assert!(find(&rules, &[]).is_none());
    }

    #[test]
    fn share_threshold_and_detailed_names() {
        let rules = shop();
        let found = find(&rules, &[("svc", "abc"), ("who", "")]).unwrap();
        assert_eq!(found.stats_key(), "shop.svc_a*.who");
        assert_eq!(found.shared_values, vec![Some("a*".to_string()), None]);
        assert_eq!(
            descriptor_key(
                "p",
                "shop",
                &e(&[("svc", "abc"), ("who", "")]),
                &found.shared_values
            ),
            "pshop_svc_a*_who__"
        );
    }
}
