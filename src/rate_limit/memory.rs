//! The in-memory store: one 64-bit TAT per key in a sharded table of fixed-size slots.
//!
//! A key's slot lies within a short window of its hash's home position. A slot whose TAT
//! has passed is free (its key has its whole burst again: forgetting it changes nothing),
//! so expired keys are reclaimed on the way by the next key that lands there. Each shard
//! grows by doubling up to its share of the key cap; once there, a new key whose window is
//! full of live keys takes the slot of the one closest to expiry (counted as an eviction).
//! Memory is therefore bounded: [`BYTES_PER_KEY`] bytes per key, never more than the cap.
//! Shards have their own lock and their own cache line, so requests for different keys
//! rarely meet; a single key (a global policy) uses a lock-free word instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::gcra::{Decision, Gcra};

/// Bytes of memory per key: the key's 64-bit hash and its 64-bit TAT.
pub const BYTES_PER_KEY: usize = 16;

/// Slots a key may sit in, from its home position on: two cache lines.
const WINDOW: usize = 8;
const SHARDS: usize = 64;
const INITIAL_SLOTS: usize = 64;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The key's hash; 0 marks a slot never used.
    key: u64,
    tat: u64,
}

#[derive(Debug)]
struct Table {
    slots: Vec<Slot>,
}

/// A shard on a cache line of its own, so two shards' locks never share one.
#[repr(align(64))]
#[derive(Debug)]
struct Shard(Mutex<Table>);

/// The sharded table of every in-memory policy's keys.
pub(crate) struct MemoryStore {
    shards: Box<[Shard]>,
    max_slots_per_shard: usize,
    evicted: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    // Not the table: a million slots is no debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_keys", &(self.max_slots_per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// A store holding at most `max_keys` keys (rounded up to a power of two per shard).
    pub(crate) fn new(max_keys: usize) -> Self {
        let per_shard = max_keys.div_ceil(SHARDS).max(WINDOW).next_power_of_two();
        let initial = INITIAL_SLOTS.min(per_shard);
        let shards = (0..SHARDS)
            .map(|_| {
                Shard(Mutex::new(Table {
                    slots: vec![Slot::default(); initial],
                }))
            })
            .collect();
        MemoryStore {
            shards,
            max_slots_per_shard: per_shard,
            evicted: AtomicU64::new(0),
        }
    }

    #[cfg(test)]
    /// The most keys the store can hold, and so its memory bound over [`BYTES_PER_KEY`].
    pub(crate) fn capacity(&self) -> usize {
        self.max_slots_per_shard * SHARDS
    }

    #[cfg(test)]
    /// Live keys evicted to make room since the store was made.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Decides a request for `key` (a well-mixed, non-zero hash) at `now` (nanoseconds
    /// since the store's clock began), storing the new TAT when it is admitted.
    #[inline]
    pub(crate) fn decide(&self, key: u64, gcra: &Gcra, now: u64) -> Decision {
        self.with_tat(key, now, |tat| gcra.decide(tat, now), true)
    }

    /// What [`decide`](Self::decide) would answer, changing nothing.
    pub(crate) fn peek(&self, key: u64, gcra: &Gcra, now: u64) -> Decision {
        self.with_tat(key, now, |tat| gcra.decide(tat, now), false)
    }

    #[inline]
    fn with_tat(
        &self,
        key: u64,
        now: u64,
        decide: impl FnOnce(u64) -> Decision,
        store: bool,
    ) -> Decision {
        let key = key.max(1);
        // High bits pick the shard, low bits the slot: independent for a mixed hash.
        let shard = &self.shards[(key >> 58) as usize % SHARDS];
        let mut table = shard.0.lock().unwrap_or_else(|e| e.into_inner());
        let found = table.find(key);
        let tat = found.map_or(0, |i| table.slots[i].tat);
        let decision = decide(tat);
        if store && decision.allowed {
            match found {
                Some(i) => table.slots[i].tat = decision.tat,
                None => self.insert(&mut table, key, decision.tat, now),
            }
        }
        decision
    }

    fn insert(&self, table: &mut Table, key: u64, tat: u64, now: u64) {
        loop {
            let (free, oldest) = table.free_or_oldest(key, now);
            if let Some(i) = free {
                table.slots[i] = Slot { key, tat };
                return;
            }
            if table.slots.len() < self.max_slots_per_shard {
                table.grow(now);
                continue;
            }
            // Full at the cap: the live key nearest to expiry makes room.
            if self.evicted.fetch_add(1, Ordering::Relaxed) == 0 {
                let max_keys = self.max_slots_per_shard * SHARDS;
                warning!(
                    target: "tower_observability::rate_limit",
                    { max_keys, },
                    "rate limit key cap ({max_keys}) reached: new keys now take the place of \
                     those nearest to a whole quota (raise RateLimit::max_keys if this is \
                     normal traffic)"
                );
            }
            table.slots[oldest] = Slot { key, tat };
            return;
        }
    }

    #[cfg(test)]
    /// Keys whose TAT is still ahead of `now` (a full scan: for tests and benches).
    pub(crate) fn live_keys(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let t = s.0.lock().unwrap_or_else(|e| e.into_inner());
                t.slots.iter().filter(|s| s.key != 0 && s.tat > now).count()
            })
            .sum()
    }

    #[cfg(test)]
    /// Slots allocated now, in every shard.
    pub(crate) fn allocated_slots(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(|e| e.into_inner()).slots.len())
            .sum()
    }
}

impl Table {
    fn home(&self, key: u64) -> usize {
        key as usize & (self.slots.len() - 1)
    }

    fn find(&self, key: u64) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let home = self.home(key);
        (0..WINDOW.min(self.slots.len()))
            .map(|i| (home + i) & mask)
            .find(|&i| self.slots[i].key == key)
    }

    /// The first free slot of `key`'s window (never used, or its TAT passed), else the
    /// slot whose TAT comes first.
    fn free_or_oldest(&self, key: u64, now: u64) -> (Option<usize>, usize) {
        let mask = self.slots.len() - 1;
        let home = self.home(key);
        let mut oldest = home;
        for i in (0..WINDOW.min(self.slots.len())).map(|i| (home + i) & mask) {
            let slot = self.slots[i];
            if slot.key == 0 || slot.tat <= now {
                return (Some(i), oldest);
            }
            if slot.tat < self.slots[oldest].tat {
                oldest = i;
            }
        }
        (None, oldest)
    }

    /// Doubles the table, keeping the live keys (expired ones are left behind).
    fn grow(&mut self, now: u64) {
        let doubled = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        for slot in old.into_iter().filter(|s| s.key != 0 && s.tat > now) {
            let (free, oldest) = self.free_or_oldest(slot.key, now);
            // A window full even after doubling: keep the fresher of the two.
            let i = free.unwrap_or(oldest);
            if free.is_some() || self.slots[i].tat < slot.tat {
                self.slots[i] = slot;
            }
        }
    }
}

/// A single key's TAT without a table: global policies, where every request meets on one
/// word and a lock would make them queue.
#[derive(Debug, Default)]
pub(crate) struct SingleKey(AtomicU64);

impl SingleKey {
    #[inline]
    pub(crate) fn decide(&self, gcra: &Gcra, now: u64, store: bool) -> Decision {
        let mut tat = self.0.load(Ordering::Acquire);
        loop {
            let decision = gcra.decide(tat, now);
            if !decision.allowed || !store {
                return decision;
            }
            match self.0.compare_exchange_weak(
                tat,
                decision.tat,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return decision,
                Err(current) => tat = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::quota::Quota;
    use super::*;

    fn gcra(q: &str) -> Gcra {
        Gcra::nanos(&Quota::parse(q).unwrap())
    }

    /// A well-mixed key, as the key hashing makes them.
    fn key(i: u64) -> u64 {
        super::super::key::mix(i)
    }

    #[test]
    fn keys_are_limited_independently() {
        let store = MemoryStore::new(1000);
        let g = gcra("1/s;burst=2");
        let now = 1_000;
        for k in 1..=100 {
            assert!(store.decide(key(k), &g, now).allowed);
            assert!(store.decide(key(k), &g, now).allowed);
            assert!(!store.decide(key(k), &g, now).allowed, "key {k}");
        }
        assert!(!store.peek(key(7), &g, now).allowed);
        assert!(store.peek(key(7000), &g, now).allowed);
        assert_eq!(store.live_keys(now), 100);
    }

    #[test]
    fn expired_keys_free_their_slots_and_memory_stays_under_the_cap() {
        let store = MemoryStore::new(10_000);
        let g = gcra("1/s;burst=1");
        let cap = store.capacity();
        assert!((10_000..=16_384).contains(&cap), "{cap}");
        // A flood of 200,000 distinct keys within one second: the table stops at the cap.
        for k in 0..200_000 {
            store.decide(key(k), &g, 1_000);
        }
        assert!(store.allocated_slots() <= cap);
        assert!(store.evicted() > 0);
        // A second later they have all expired: new keys reuse the slots, nothing grows.
        let before = store.allocated_slots();
        for k in 200_000..400_000 {
            assert!(store.decide(key(k), &g, 3_000_000_000).allowed);
        }
        assert_eq!(store.allocated_slots(), before);
    }

    #[test]
    fn a_limited_key_survives_a_flood_of_others_below_the_cap() {
        let store = MemoryStore::new(100_000);
        let g = gcra("1/min;burst=1");
        assert!(store.decide(key(u64::MAX / 3), &g, 1).allowed);
        for k in 0..50_000 {
            store.decide(key(k), &g, 2);
        }
        assert!(!store.decide(key(u64::MAX / 3), &g, 3).allowed);
    }

    #[test]
    fn a_single_key_counts_every_thread() {
        let word = std::sync::Arc::new(SingleKey::default());
        let g = gcra("1000/s;burst=1000");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let word = word.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| word.decide(&g, 10, true).allowed)
                        .count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, 1000);
    }
}
