//! In-process counters (the twin of `sidecar/storage/memory.py`), each with an expiry; expired
//! ones are swept as time passes, so memory follows the live keys.
//!
//! Plain counters (the reference's INCRBY + EXPIRE) live in whole seconds, as in Redis with the
//! reference's second-granularity clock: a counter set to live `ttl` seconds at second `now`
//! expires at second `now + ttl`. Algorithm states live to the millisecond, as `SET … PX` /
//! `PEXPIRE` give them in Redis: written at `now_ms` with `ttl_ms`, they are gone from
//! `now_ms + max(1, ttl_ms)` on.

use std::collections::HashMap;
use std::sync::Arc;

use crate::algorithms::{run_checks, Algorithm, Check, State, Verdict};

/// One plain increment: add `hits` to counter `key` and (re)set its life to `ttl` seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Increment {
    pub key: String,
    pub hits: u64,
    pub ttl: i64,
}

struct Slot {
    value: State,
    expires_ms: i64,
    /// The second this key is registered to be looked at by the sweep.
    due: i64,
}

#[derive(Default)]
pub struct MemoryStore {
    counters: HashMap<Arc<str>, Slot>,
    /// second → keys registered to be looked at then. Each live key has exactly one
    /// registration: extending its life does not add another, the sweep moves it instead, so a
    /// hot key costs O(1) memory however often it is hit.
    expiries: HashMap<i64, Vec<Arc<str>>>,
    swept_until: i64,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// Apply every increment at second `now`; each counter's value afterwards.
    pub fn increment(&mut self, increments: &[Increment], now: i64) -> Vec<i64> {
        self.sweep_to(now);
        increments
            .iter()
            .map(|inc| {
                let slot = self.touch(&inc.key, now * 1000, (now + inc.ttl) * 1000);
                let count = match slot.value {
                    State::Count(n) => n,
                    _ => 0,
                };
                let after = count.saturating_add(inc.hits as i64);
                slot.value = State::Count(after);
                after
            })
            .collect()
    }

    /// Current values (0 when absent or expired) of `keys` at second `now`.
    pub fn get(&self, keys: &[&str], now: i64) -> Vec<i64> {
        keys.iter()
            .map(|key| match self.counters.get(*key) {
                Some(Slot {
                    value: State::Count(n),
                    expires_ms,
                    ..
                }) if *expires_ms > now * 1000 => *n,
                _ => 0,
            })
            .collect()
    }

    /// Run the algorithm checks at `now_ms` (all charged or none when `atomic`), the same
    /// algorithms the Lua scripts run in Redis.
    pub fn run_checks(&mut self, checks: &[Check], now_ms: i64, atomic: bool) -> Vec<Verdict> {
        let (new, verdicts) = {
            let states: Vec<Option<&State>> =
                checks.iter().map(|c| self.state(&c.key, now_ms)).collect();
            run_checks(&states, checks, now_ms as f64, atomic)
        };
        for (check, state) in checks.iter().zip(new) {
            if let Some(state) = state {
                self.put_state(check, state, now_ms);
            }
        }
        verdicts
    }

    fn state(&self, key: &str, now_ms: i64) -> Option<&State> {
        match self.counters.get(key) {
            Some(slot) if slot.expires_ms > now_ms => Some(&slot.value),
            _ => None,
        }
    }

    fn put_state(&mut self, check: &Check, state: State, now_ms: i64) {
        let ttl_ms = (check.ttl_ms as i64).max(1);
        self.sweep_to(now_ms.div_euclid(1000));
        let value = match (check.algorithm, state) {
            (Algorithm::FixedWindow, State::Count(n)) => State::Count(n),
            (_, s) => s,
        };
        self.touch(&check.key, now_ms, now_ms.saturating_add(ttl_ms))
            .value = value;
    }

    /// The live slot of `key` with its expiry set to `expires_ms` (as EXPIRE / PEXPIRE do);
    /// an expired one starts over at 0.
    fn touch(&mut self, key: &str, now_ms: i64, expires_ms: i64) -> &mut Slot {
        if !self.counters.contains_key(key) {
            // Never register in the past (a clock that stepped back) or the sweep misses it.
            let due = second_of(expires_ms).max(self.swept_until + 1);
            let key: Arc<str> = Arc::from(key);
            self.expiries.entry(due).or_default().push(key.clone());
            return self.counters.entry(key).or_insert(Slot {
                value: State::Count(0),
                expires_ms,
                due,
            });
        }
        let slot = self.counters.get_mut(key).expect("present");
        if slot.expires_ms <= now_ms {
            // expired, not swept yet: start over, keep its registration
            slot.value = State::Count(0);
        }
        slot.expires_ms = expires_ms;
        slot
    }

    fn sweep_to(&mut self, now: i64) {
        if now <= self.swept_until {
            return;
        }
        let start = std::mem::replace(&mut self.swept_until, now);
        let due: Vec<i64> = if (now - start) as usize > self.expiries.len() {
            self.expiries
                .keys()
                .copied()
                .filter(|s| *s <= now)
                .collect()
        } else {
            (start..=now)
                .filter(|s| self.expiries.contains_key(s))
                .collect()
        };
        for second in due {
            for key in self.expiries.remove(&second).unwrap_or_default() {
                let Some(slot) = self.counters.get_mut(&key) else {
                    continue;
                };
                if slot.due != second {
                    continue;
                }
                if slot.expires_ms <= now * 1000 {
                    self.counters.remove(&key);
                } else {
                    // extended since it was registered: look again when it is due
                    slot.due = second_of(slot.expires_ms);
                    self.expiries.entry(slot.due).or_default().push(key);
                }
            }
        }
    }
}

/// The second by whose end `ms` has passed (ceiling).
fn second_of(ms: i64) -> i64 {
    -((-ms).div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::Limit;

    fn inc(key: &str, hits: u64, ttl: i64) -> Increment {
        Increment {
            key: key.into(),
            hits,
            ttl,
        }
    }

    #[test]
    fn plain_counters_expire_on_whole_seconds() {
        let mut store = MemoryStore::new();
        assert_eq!(
            store.increment(&[inc("a", 2, 2), inc("a", 1, 2)], 100),
            vec![2, 3]
        );
        assert_eq!(store.get(&["a", "b"], 101), vec![3, 0]);
        assert_eq!(store.get(&["a"], 102), vec![0]);
        assert_eq!(store.increment(&[inc("a", 1, 2)], 102), vec![1]); // expired: starts over
    }

    #[test]
    fn algorithm_states_expire_to_the_millisecond() {
        let mut store = MemoryStore::new();
        let check = Check {
            key: "k".into(),
            algorithm: Algorithm::TokenBucket,
            limit: Limit {
                limit: 1,
                window_ms: 10_000.0,
                burst: 1,
                count_rejected: false,
                always: false,
            },
            hits: 1,
            ttl_ms: 1500.0,
            window_end_ms: 0.0,
        };
        let at = 1_999;
        assert!(store.run_checks(std::slice::from_ref(&check), at, false)[0].allowed);
        assert!(!store.run_checks(std::slice::from_ref(&check), at + 1499, false)[0].allowed);
        // gone at 1999 + 1500, though that is past the second the write was made in + 2
        assert!(store.run_checks(&[check], at + 1500, false)[0].allowed);
    }

    #[test]
    fn the_sweep_drops_expired_keys_and_keeps_extended_ones() {
        let mut store = MemoryStore::new();
        store.increment(&[inc("short", 1, 1), inc("long", 1, 1)], 10);
        store.increment(&[inc("long", 1, 5)], 10);
        store.increment(&[], 12);
        assert_eq!(store.len(), 1);
        store.increment(&[], 15);
        assert!(store.is_empty());
        assert!(store.expiries.is_empty());
    }

    #[test]
    fn a_hot_key_keeps_one_registration() {
        let mut store = MemoryStore::new();
        for now in 0..1000 {
            store.increment(&[inc("hot", 1, 60)], now);
        }
        assert_eq!(store.expiries.values().map(Vec::len).sum::<usize>(), 1);
    }
}
