//! A capped map that forgets its least recently used entries and counts what
//! it forgot, so every structure fed by untrusted input has bounded memory.

use crate::changes::{ApplyChanges, Saving, saving};
use lru::LruCache;
use rustc_hash::FxBuildHasher;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::num::NonZeroUsize;

/// `lru::LruCache` with a fixed-seed hasher (deterministic replays, no need for
/// the guest to ask WASI for randomness) and an eviction counter. It also
/// remembers what changed since it was last saved (see [`crate::changes`]).
pub struct BoundedMap<K: Hash + Eq, V> {
    inner: LruCache<K, Stamped<V>, FxBuildHasher>,
    /// Enforced here rather than by `LruCache`'s own capacity, which would
    /// allocate the whole table up front: memory follows use, up to the cap.
    cap: NonZeroUsize,
    evictions: u64,
    /// Entries stamped with this were touched since the last save.
    epoch: Cell<u32>,
    /// Keys removed since the last save, until they outnumber the cap
    /// (`None`: the next save is whole, as it is before any save: an engine
    /// never saved keeps no such list).
    removed: RefCell<Option<Vec<K>>>,
    /// `Changes` only for a map read back from a save of changes, not yet applied.
    read_as: Saving,
}

/// A value and when it was last touched: `epoch` the save period, `moved`
/// whether it became the most recently used in it (not just modified in place).
struct Stamped<V> {
    value: V,
    epoch: u32,
    moved: bool,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("capacity is at least 1");
        BoundedMap {
            inner: LruCache::unbounded_with_hasher(FxBuildHasher),
            cap,
            evictions: 0,
            epoch: Cell::new(1),
            removed: RefCell::new(None),
            read_as: Saving::Whole,
        }
    }

    fn stamp(&self, moved: bool, value: V) -> Stamped<V> {
        Stamped {
            value,
            epoch: self.epoch.get(),
            moved,
        }
    }

    fn touched(epoch: u32, entry: &mut Stamped<V>, moved: bool) {
        if entry.epoch != epoch {
            entry.epoch = epoch;
            entry.moved = moved;
        } else {
            entry.moved |= moved;
        }
    }

    fn note_removed(&mut self, key: K) {
        let cap = self.cap.get();
        let removed = self.removed.get_mut();
        if let Some(keys) = removed {
            if keys.len() < cap {
                keys.push(key);
            } else {
                *removed = None;
            }
        }
    }

    /// Makes room for one new key by forgetting the least recently used.
    fn make_room_for<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.inner.len() >= self.cap.get() && !self.inner.contains(key) {
            let (gone, entry) = self.inner.pop_lru()?;
            self.evictions += 1;
            self.note_removed(gone.clone());
            return Some((gone, entry.value));
        }
        None
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.make_room_for(&key);
        let entry = self.stamp(true, value);
        self.inner.put(key, entry);
    }

    /// [`BoundedMap::insert`], handing back the entry forgotten to make room.
    pub fn insert_evicting(&mut self, key: K, value: V) -> Option<(K, V)> {
        let evicted = self.make_room_for(&key);
        let entry = self.stamp(true, value);
        self.inner.put(key, entry);
        evicted
    }

    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.get_or_insert_by(&key, make)
    }

    /// [`BoundedMap::get_or_insert_with`] by a borrowed key: the owned key
    /// is made only when it is not held yet.
    pub fn get_or_insert_by<Q>(&mut self, key: &Q, make: impl FnOnce() -> V) -> &mut V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + ToOwned<Owned = K>,
    {
        self.make_room_for(key);
        let epoch = self.epoch.get();
        let entry = self.inner.get_or_insert_mut_ref(key, || Stamped {
            value: make(),
            epoch,
            moved: true,
        });
        Self::touched(epoch, entry, true);
        &mut entry.value
    }

    /// Looks up and marks as recently used.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_mut(key).map(|v| &*v)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let epoch = self.epoch.get();
        let entry = self.inner.get_mut(key)?;
        Self::touched(epoch, entry, true);
        Some(&mut entry.value)
    }

    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.peek(key).map(|entry| &entry.value)
    }

    pub fn peek_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let epoch = self.epoch.get();
        let entry = self.inner.peek_mut(key)?;
        Self::touched(epoch, entry, false);
        Some(&mut entry.value)
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (gone, entry) = self.inner.pop_entry(key)?;
        self.note_removed(gone);
        Some(entry.value)
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
            if let Some((gone, _)) = self.inner.pop_lru() {
                self.note_removed(gone);
            }
            self.evictions += 1;
        }
    }

    /// Starts a new save period: nothing has changed since the save just made.
    fn saved(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
        *self.removed.borrow_mut() = Some(Vec::new());
    }
}

/// Saved whole as `[cap, evictions, entries]`, the entries from least to most
/// recently used, so a restore rebuilds the same recency order. Saved as
/// changes as `[cap, evictions, touched, removed]`: the entries touched since
/// the last save, in the same order, each with whether it moved up.
impl<K: Hash + Eq + Clone + Serialize, V: Serialize> Serialize for BoundedMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let removed = self.removed.borrow();
        let saved = match (saving(), removed.as_ref()) {
            (Saving::Changes, Some(removed)) => {
                let epoch = self.epoch.get();
                let touched: Vec<(&K, &V, bool)> = (self.inner.iter().rev())
                    .filter(|(_, e)| e.epoch == epoch)
                    .map(|(k, e)| (k, &e.value, e.moved))
                    .collect();
                let mut t = s.serialize_tuple(4)?;
                t.serialize_element(&self.cap.get())?;
                t.serialize_element(&self.evictions)?;
                t.serialize_element(&touched)?;
                t.serialize_element(removed)?;
                t.end()
            }
            _ => {
                let entries: Vec<(&K, &V)> = (self.inner.iter().rev())
                    .map(|(k, e)| (k, &e.value))
                    .collect();
                (self.cap.get(), self.evictions, entries).serialize(s)
            }
        };
        drop(removed);
        if saved.is_ok() && saving() != Saving::Measured {
            self.saved();
        }
        saved
    }
}

impl<'de, K, V> Deserialize<'de> for BoundedMap<K, V>
where
    K: Hash + Eq + Clone + Deserialize<'de>,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
        where
            K: Hash + Eq + Clone + Deserialize<'de>,
            V: Deserialize<'de>,
        {
            type Value = BoundedMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map saved as [cap, evictions, entries] or [cap, evictions, touched, removed]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let cap: usize = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let evictions: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let entries: Vec<SavedEntry<K, V>> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                let removed: Option<Vec<K>> = seq.next_element()?;
                let mut map = BoundedMap::new(cap);
                map.evictions = evictions;
                for SavedEntry(key, value, moved) in entries {
                    let entry = map.stamp(moved.unwrap_or(true), value);
                    map.inner.put(key, entry);
                }
                if removed.is_some() {
                    map.read_as = Saving::Changes;
                }
                // Read back, the map is a save: changes are tracked from here.
                *map.removed.get_mut() = Some(removed.unwrap_or_default());
                // Read back, nothing has changed since: the next save period begins.
                map.epoch.set(2);
                Ok(map)
            }
        }
        d.deserialize_seq(MapVisitor(PhantomData))
    }
}

/// `(key, value)` when saved whole, `(key, value, moved)` as changes.
struct SavedEntry<K, V>(K, V, Option<bool>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for SavedEntry<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for EntryVisitor<K, V> {
            type Value = SavedEntry<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an entry saved as [key, value] or [key, value, moved]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let key = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let value = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                Ok(SavedEntry(key, value, seq.next_element()?))
            }
        }
        d.deserialize_seq(EntryVisitor(PhantomData))
    }
}

impl<K: Hash + Eq + Clone, V> ApplyChanges for BoundedMap<K, V> {
    /// Removals first, then the touched entries in their order: those that
    /// moved up become the most recent (as they did), those changed in place
    /// keep their place. Untouched entries were all older than every moved
    /// one, so the recency order comes out as it was.
    fn apply_changes(&mut self, later: Self) {
        let mut later = later;
        if later.read_as == Saving::Whole {
            *self = later;
            return;
        }
        for key in later.removed.get_mut().take().unwrap_or_default() {
            self.inner.pop(&key);
        }
        let settled = self.epoch.get().wrapping_sub(1);
        while let Some((key, entry)) = later.inner.pop_lru() {
            let moved = entry.moved;
            let entry = Stamped {
                value: entry.value,
                epoch: settled,
                moved: false,
            };
            match self.inner.peek_mut(&key) {
                Some(place) if !moved => *place = entry,
                _ => {
                    self.inner.put(key, entry);
                }
            }
        }
        self.cap = later.cap;
        self.evictions = later.evictions;
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
