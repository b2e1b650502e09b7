//! The local over-limit cache (LOCAL_CACHE_SIZE_IN_BYTES): refusals answered without the store.
//!
//! The twin of `sidecar/limiter/local_cache.py` (read its docstring for what is cached and for
//! how long): key → (refused until, in ms; smallest refused size; the limit it was refused
//! under). Memory is bounded by the setting; each entry is charged what it costs here (its key
//! bytes and [`ENTRY_OVERHEAD`]), the oldest entries go first when the budget is full, expired
//! ones when met.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Bytes of one entry besides its key's: the map slot (key pointer and length, the entry, hash
/// control byte and load-factor slack), the key's heap block header and the age queue's slot.
pub const ENTRY_OVERHEAD: usize = 96;

#[derive(Clone, Copy, Debug)]
struct Entry {
    until_ms: i64,
    min_hits: u64,
    limit: u32,
    /// Insertion number: matches the age queue's record while this entry is the live one.
    seq: u64,
}

pub struct LocalCache {
    capacity: usize,
    entries: HashMap<Arc<str>, Entry>,
    /// (seq, key) oldest first; records of dropped or re-added entries are skipped when met.
    order: VecDeque<(u64, Arc<str>)>,
    next_seq: u64,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

fn cost(key: &str) -> usize {
    ENTRY_OVERHEAD + key.len()
}

impl LocalCache {
    pub fn new(capacity: usize) -> LocalCache {
        LocalCache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            bytes: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When `key` is known refused for `hits` under `limit`: until when (ms); otherwise 0.
    pub fn refused_until(&mut self, key: &str, hits: u64, limit: u32, now_ms: i64) -> i64 {
        if let Some(entry) = self.entries.get(key).copied() {
            if entry.until_ms <= now_ms {
                self.drop_key(key);
            } else if hits >= entry.min_hits && entry.limit == limit {
                self.hits += 1;
                return entry.until_ms;
            }
        }
        self.misses += 1;
        0
    }

    /// Remember that `key` refuses requests of `min_hits` or more until `until_ms`.
    pub fn add(&mut self, key: &str, until_ms: i64, limit: u32, min_hits: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.contains_key(key) {
            self.drop_key(key);
        }
        let key: Arc<str> = Arc::from(key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += cost(&key);
        self.entries.insert(
            key.clone(),
            Entry {
                until_ms,
                min_hits,
                limit,
                seq,
            },
        );
        self.order.push_back((seq, key));
        while self.bytes > self.capacity && !self.entries.is_empty() {
            self.evict_oldest();
        }
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(seq, key)| entries.get(key).is_some_and(|e| e.seq == *seq));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((seq, key)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&key);
                self.bytes -= cost(&key);
                self.evictions += 1;
                return;
            }
        }
    }

    fn drop_key(&mut self, key: &str) {
        if self.entries.remove(key).is_some() {
            self.bytes -= cost(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_until_the_time_for_large_enough_requests_under_the_same_limit() {
        let mut cache = LocalCache::new(1 << 20);
        cache.add("k", 2000, 10, 3);
        assert_eq!(cache.refused_until("k", 3, 10, 1000), 2000);
        assert_eq!(cache.refused_until("k", 2, 10, 1000), 0); // smaller requests may fit
        assert_eq!(cache.refused_until("k", 3, 11, 1000), 0); // the limit was raised
        assert_eq!(cache.refused_until("k", 3, 10, 2000), 0); // expired: dropped
        assert!(cache.is_empty());
        assert_eq!((cache.hits, cache.misses, cache.bytes), (1, 3, 0));
    }

    #[test]
    fn the_oldest_entries_go_when_the_budget_is_full() {
        let mut cache = LocalCache::new(3 * cost("k0"));
        for i in 0..5 {
            cache.add(&format!("k{i}"), 10_000, 1, 0);
        }
        assert_eq!((cache.len(), cache.evictions), (3, 2));
        assert_eq!(cache.refused_until("k1", 1, 1, 0), 0);
        assert_eq!(cache.refused_until("k2", 1, 1, 0), 10_000);
        // re-adding moves a key to the young end
        cache.add("k2", 20_000, 1, 0);
        cache.add("k5", 10_000, 1, 0);
        assert_eq!(cache.refused_until("k2", 1, 1, 0), 20_000);
        assert_eq!(cache.refused_until("k3", 1, 1, 0), 0);
        assert!(cache.bytes <= 3 * cost("k0"));
    }

    #[test]
    fn a_zero_budget_caches_nothing_and_the_age_queue_stays_bounded() {
        let mut cache = LocalCache::new(0);
        cache.add("k", 1, 1, 0);
        assert!(cache.is_empty());
        let mut cache = LocalCache::new(1 << 20);
        for _ in 0..10_000 {
            cache.add("hot", 1, 1, 0);
        }
        assert!(cache.order.len() <= 2 * cache.len() + 65);
    }
}
