//! A capped map that forgets its least recently used entries and counts what
//! it forgot, so every structure fed by untrusted input has bounded memory.

use lru::LruCache;
use rustc_hash::FxBuildHasher;
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
}
