//! A capped map that forgets its least recently used entries and counts what
//! it forgot, so every structure fed by untrusted input has bounded memory.

use lru::LruCache;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::hash::Hash;
use std::num::NonZeroUsize;

/// `lru::LruCache` with a fixed-seed hasher (deterministic replays, no need for
/// the guest to ask WASI for randomness) and an eviction counter.
pub struct BoundedMap<K: Hash + Eq, V> {
    inner: LruCache<K, V, FxBuildHasher>,
    /// Enforced here rather than by `LruCache`'s own capacity, which would
    /// allocate the whole table up front: memory follows use, up to the cap.
    cap: NonZeroUsize,
    evictions: u64,
}

impl<K: Hash + Eq, V> BoundedMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("capacity is at least 1");
        BoundedMap {
            inner: LruCache::unbounded_with_hasher(FxBuildHasher),
            cap,
            evictions: 0,
        }
    }

    /// Makes room for one new key by forgetting the least recently used.
    fn make_room_for(&mut self, key: &K) {
        if self.inner.len() >= self.cap.get() && !self.inner.contains(key) {
            self.inner.pop_lru();
            self.evictions += 1;
        }
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.make_room_for(&key);
        self.inner.put(key, value);
    }

    /// [`BoundedMap::insert`], handing back the entry forgotten to make room.
    pub fn insert_evicting(&mut self, key: K, value: V) -> Option<(K, V)> {
        let evicted = if self.inner.len() >= self.cap.get() && !self.inner.contains(&key) {
            self.evictions += 1;
            self.inner.pop_lru()
        } else {
            None
        };
        self.inner.put(key, value);
        evicted
    }

    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.make_room_for(&key);
        self.inner.get_or_insert_mut(key, make)
    }

    /// Looks up and marks as recently used.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.get(key)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.get_mut(key)
    }

    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.peek(key)
    }

    pub fn peek_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.peek_mut(key)
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.pop(key)
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Sets a new cap, forgetting the least recently used entries beyond it
    /// (restored state meets the running policy's caps).
    pub fn recap(&mut self, capacity: usize) {
        self.cap = NonZeroUsize::new(capacity.max(1)).expect("capacity is at least 1");
        while self.inner.len() > self.cap.get() {
            self.inner.pop_lru();
            self.evictions += 1;
        }
    }
}

/// Saved as its cap, its eviction count and its entries from least to most
/// recently used, so a restore rebuilds the same recency order.
impl<K: Hash + Eq + Serialize, V: Serialize> Serialize for BoundedMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let entries: Vec<(&K, &V)> = self.inner.iter().rev().collect();
        (self.cap.get(), self.evictions, entries).serialize(s)
    }
}

impl<'de, K: Hash + Eq + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de>
    for BoundedMap<K, V>
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (cap, evictions, entries): (usize, u64, Vec<(K, V)>) = Deserialize::deserialize(d)?;
        let mut map = BoundedMap::new(cap);
        for (k, v) in entries {
            map.insert(k, v);
        }
        map.evictions += evictions;
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_and_counts() {
        let mut m = BoundedMap::new(2);
        m.insert(1, "a");
        m.insert(2, "b");
        m.get(&1);
        m.insert(3, "c");
        assert!(m.peek(&2).is_none());
        assert!(m.peek(&1).is_some());
        assert_eq!(m.evictions(), 1);
        m.insert(3, "c2");
        assert_eq!(m.evictions(), 1, "replacing a key is not an eviction");
        *m.get_or_insert_with(4, || "d") = "d";
        assert_eq!(m.evictions(), 2);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_restored_map_keeps_recency_order_and_meets_a_smaller_cap() {
        let mut m = BoundedMap::new(3);
        m.insert(1, 10);
        m.insert(2, 20);
        m.insert(3, 30);
        m.get(&1);
        let bytes = rmp_serde::to_vec(&m).unwrap();
        let mut restored: BoundedMap<i32, i32> = rmp_serde::from_slice(&bytes).unwrap();
        restored.recap(2);
        assert_eq!(restored.peek(&2), None, "2 was least recently used");
        assert_eq!(restored.peek(&1), Some(&10));
        assert_eq!(restored.peek(&3), Some(&30));
        assert_eq!(restored.evictions(), 1);
    }
}
