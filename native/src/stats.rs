//! Per-rule counters (the reference's stats), kept here and read and reset by Python on scrape.
//!
//! Limits of the current rules count into a slot each (no hashing on the hot path); names that
//! depend on the request (detailed_metric, value_to_metric, Envoy's overrides) and counts that
//! arrive for rules already replaced by a reload count by (domain, stats key). That map is
//! bounded: past `max_keys` names, new ones fold into one entry per domain with an empty stats
//! key, counted in `folded`, until the next scrape empties it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::rules::RuleSet;

/// The counters of one (domain, stats key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub over: i64,
    pub near: i64,
    pub within: i64,
    pub shadow: i64,
    /// Hits answered from the local over-limit cache (`over_limit_with_local_cache`).
    pub cache_hits: i64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.total += other.total;
        self.over += other.over;
        self.near += other.near;
        self.within += other.within;
        self.shadow += other.shadow;
        self.cache_hits += other.cache_hits;
    }

    fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// Where a decision's counts go: the limit's own slot, or a name of the request's.
#[derive(Clone, Debug, PartialEq)]
pub enum StatsKey {
    Limit(u32),
    Named(String),
}

/// Everything the engine counts between two scrapes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// (domain, stats key, counts), merged over slots and names, non-zero only.
    pub rules: Vec<(String, String, Counts)>,
    pub domain_not_found: Vec<(String, u64)>,
    pub global_shadow: u64,
    /// Descriptors answered from the local cache.
    pub local_cache_hits: u64,
    /// (domain, policy) → decisions taken by the failure policy.
    pub policy_decisions: Vec<(String, &'static str, u64)>,
    /// Names folded into their domain's overflow entry since the last scrape.
    pub folded: u64,
}

pub struct Stats {
    rules: Option<Arc<RuleSet>>,
    slots: Vec<Counts>,
    /// domain → stats key → counts.
    named: HashMap<String, HashMap<String, Counts>>,
    named_len: usize,
    max_keys: usize,
    folded: u64,
    not_found: HashMap<String, u64>,
    global_shadow: u64,
    local_cache_hits: u64,
    policy: HashMap<(String, &'static str), u64>,
}

impl Stats {
    pub fn new(max_keys: usize) -> Stats {
        Stats {
            rules: None,
            slots: Vec::new(),
            named: HashMap::new(),
            named_len: 0,
            max_keys,
            folded: 0,
            not_found: HashMap::new(),
            global_shadow: 0,
            local_cache_hits: 0,
            policy: HashMap::new(),
        }
    }

    /// New rules: what the old slots counted moves to the names, the slots start over.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.fold_slots();
        self.slots = vec![Counts::default(); rules.limits.len()];
        self.rules = Some(rules);
    }

    fn fold_slots(&mut self) {
        let Some(old) = self.rules.take() else { return };
        let slots = std::mem::take(&mut self.slots);
        for (id, counts) in slots.iter().enumerate() {
            if !counts.is_zero() {
                self.add_named(&old.limit_domains[id], &old.limits[id].stats_key, counts);
            }
        }
        self.rules = Some(old);
    }

    /// Count one decision of a request in `domain` planned under `rules`.
    pub fn record(&mut self, rules: &Arc<RuleSet>, domain: &str, key: &StatsKey, counts: &Counts) {
        match key {
            StatsKey::Limit(id) => {
                let current = self.rules.as_ref().is_some_and(|r| Arc::ptr_eq(r, rules));
                if current {
                    self.slots[*id as usize].add(counts);
                } else {
                    self.add_named(domain, &rules.limits[*id as usize].stats_key, counts);
                }
            }
            StatsKey::Named(name) => self.add_named(domain, name, counts),
        }
    }

    fn add_named(&mut self, domain: &str, key: &str, counts: &Counts) {
        if let Some(c) = self
            .named
            .get_mut(domain)
            .and_then(|keys| keys.get_mut(key))
        {
            c.add(counts);
            return;
        }
        let key = if self.named_len >= self.max_keys {
            self.folded += 1;
            ""
        } else {
            key
        };
        let keys = self.named.entry(domain.to_string()).or_default();
        if !keys.contains_key(key) {
            self.named_len += 1;
        }
        keys.entry(key.to_string()).or_default().add(counts);
    }

    pub fn domain_not_found(&mut self, domain: &str) {
        if let Some(n) = self.not_found.get_mut(domain) {
            *n += 1;
        } else if self.not_found.len() < self.max_keys {
            self.not_found.insert(domain.to_string(), 1);
        } else {
            self.folded += 1;
            *self.not_found.entry(String::new()).or_default() += 1;
        }
    }

    pub fn global_shadow(&mut self) {
        self.global_shadow += 1;
    }

    pub fn local_cache_hit(&mut self) {
        self.local_cache_hits += 1;
    }

    pub fn policy_decision(&mut self, domain: &str, policy: &'static str) {
        *self.policy.entry((domain.to_string(), policy)).or_default() += 1;
    }

    /// Everything counted since the last call, and start over.
    pub fn take(&mut self) -> Snapshot {
        self.fold_slots();
        if let Some(rules) = &self.rules {
            self.slots = vec![Counts::default(); rules.limits.len()];
        }
        self.named_len = 0;
        let mut rules: Vec<(String, String, Counts)> = self
            .named
            .drain()
            .flat_map(|(d, keys)| keys.into_iter().map(move |(k, c)| (d.clone(), k, c)))
            .filter(|(_, _, c)| !c.is_zero())
            .collect();
        rules.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut domain_not_found: Vec<(String, u64)> = self.not_found.drain().collect();
        domain_not_found.sort();
        let mut policy_decisions: Vec<(String, &'static str, u64)> =
            self.policy.drain().map(|((d, p), n)| (d, p, n)).collect();
        policy_decisions.sort();
        Snapshot {
            rules,
            domain_not_found,
            global_shadow: std::mem::take(&mut self.global_shadow),
            local_cache_hits: std::mem::take(&mut self.local_cache_hits),
            policy_decisions,
            folded: std::mem::take(&mut self.folded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rls::Unit;
    use crate::rules::testing::*;
    use crate::rules::RuleSetBuilder;

    fn rules() -> Arc<RuleSet> {
        let mut b = RuleSetBuilder::new();
        let n = leaf(&mut b, "k", "", Some(limit(5, Unit::Second, "d.k")));
        domain(&mut b, "d", &[("k", "", n)]);
        Arc::new(b.build().unwrap())
    }

    fn hits(n: i64) -> Counts {
        Counts {
            total: n,
            within: n,
            ..Counts::default()
        }
    }

    #[test]
    fn slots_and_names_merge_on_scrape_and_start_over() {
        let r = rules();
        let mut stats = Stats::new(10);
        stats.set_rules(r.clone());
        stats.record(&r, "d", &StatsKey::Limit(0), &hits(2));
        stats.record(&r, "d", &StatsKey::Named("d.k".into()), &hits(1));
        stats.record(&r, "d", &StatsKey::Named("d.k_v".into()), &hits(1));
        let snap = stats.take();
        assert_eq!(
            snap.rules,
            vec![
                ("d".into(), "d.k".into(), hits(3)),
                ("d".into(), "d.k_v".into(), hits(1))
            ]
        );
        assert_eq!(stats.take().rules, vec![]);
    }

    #[test]
    fn counts_of_replaced_rules_keep_their_names() {
        let (old, new) = (rules(), rules());
        let mut stats = Stats::new(10);
        stats.set_rules(old.clone());
        stats.record(&old, "d", &StatsKey::Limit(0), &hits(1));
        stats.set_rules(new.clone());
        stats.record(&old, "d", &StatsKey::Limit(0), &hits(1)); // a call planned before the reload
        stats.record(&new, "d", &StatsKey::Limit(0), &hits(1));
        assert_eq!(
            stats.take().rules,
            vec![("d".into(), "d.k".into(), hits(3))]
        );
    }

    #[test]
    fn names_are_bounded() {
        let r = rules();
        let mut stats = Stats::new(2);
        for name in ["a", "b", "c", "d"] {
            stats.record(&r, "d", &StatsKey::Named(name.into()), &hits(1));
        }
        let snap = stats.take();
        assert_eq!(snap.folded, 2);
        assert_eq!(snap.rules[0], ("d".into(), "".into(), hits(2)));
    }
}
