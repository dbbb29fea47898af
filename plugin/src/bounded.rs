//! A capped map that forgets its least recently used entries and counts what
//! it forgot, so every structure fed by untrusted input has bounded memory.
//!
//! Its entries are most of the engine's memory (an agent has a dozen or so:
//! its registry entry, activity, DNS answers, windows, incidents), so they
//! are stored densely: in chunks of [`CHUNK`] slots, linked in recency order
//! by slot numbers, and found through a table of slot numbers. Boxed
//! entries linked by pointers and indexed by pointer pairs (as the `lru`
//! crate keeps them) cost an active agent 411 bytes more (4,560 against
//! 4,149, `clawwatch bench` built with `--features bench-heap`).

use crate::changes::{ApplyChanges, Saving, saving};
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::num::NonZeroUsize;

/// Slots per chunk of storage. Chunks never move or grow once full, so a map
/// grows a chunk at a time rather than by doubling (which leaves up to half
/// of the storage unused), and its slot numbers stay small.
const CHUNK: usize = 64;

/// No slot: the end of the recency list.
const NONE: u32 = u32::MAX;

/// A capped map from `K` to `V`, least recently used entries forgotten first,
/// with a fixed-seed hasher (deterministic replays, no need for the guest to
/// ask WASI for randomness) and an eviction counter. It also remembers what
/// changed since it was last saved (see [`crate::changes`]).
pub struct BoundedMap<K: Hash + Eq, V> {
    /// Slot numbers, by the hash of their key.
    index: HashTable<u32>,
    slots: Slots<K, V>,
    /// Each slot's neighbours in recency order, by slot number: apart from
    /// the slots, so a lookup's move to the front touches only this small,
    /// flat list.
    links: Vec<Link>,
    /// The most and least recently used slots.
    newest: u32,
    oldest: u32,
    /// Memory follows use, up to the cap: nothing is allocated up front.
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

/// An entry and when it was last touched: `epoch` the save period, `moved`
/// whether it became the most recently used in it (not just modified in place).
struct Slot<K, V> {
    key: K,
    value: V,
    epoch: u32,
    moved: bool,
}

/// A slot's neighbours in recency order ([`NONE`] at either end).
#[derive(Clone, Copy)]
struct Link {
    newer: u32,
    older: u32,
}

/// The slots, numbered from 0 with no gaps: a removed slot is filled by the last.
struct Slots<K, V> {
    chunks: Vec<Vec<Slot<K, V>>>,
    len: usize,
}

impl<K, V> Slots<K, V> {
    #[inline]
    fn get(&self, i: u32) -> &Slot<K, V> {
        let i = i as usize;
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    #[inline]
    fn get_mut(&mut self, i: u32) -> &mut Slot<K, V> {
        let i = i as usize;
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }

    /// Adds a slot at the end; returns its number.
    fn push(&mut self, slot: Slot<K, V>) -> u32 {
        let last_full = self.chunks.last().is_none_or(|c| c.len() == CHUNK);
        if last_full {
            // The first chunk grows as a small map needs; later ones are whole.
            let size = if self.chunks.is_empty() { 0 } else { CHUNK };
            self.chunks.push(Vec::with_capacity(size));
        }
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        chunk.push(slot);
        self.len += 1;
        (self.len - 1) as u32
    }

    /// Takes out slot `i`, moving the last slot into its place.
    fn swap_remove(&mut self, i: u32) -> Slot<K, V> {
        let chunk = self.chunks.last_mut().expect("a slot to remove");
        let last = chunk.pop().expect("chunks are never left empty");
        if chunk.is_empty() {
            self.chunks.pop();
        }
        self.len -= 1;
        if i as usize == self.len {
            last
        } else {
            std::mem::replace(self.get_mut(i), last)
        }
    }
}

fn hash_of<Q: Hash + ?Sized>(key: &Q) -> u64 {
    FxBuildHasher.hash_one(key)
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("capacity is at least 1");
        BoundedMap {
            index: HashTable::new(),
            slots: Slots {
                chunks: Vec::new(),
                len: 0,
            },
            links: Vec::new(),
            newest: NONE,
            oldest: NONE,
            cap,
            evictions: 0,
            epoch: Cell::new(1),
            removed: RefCell::new(None),
            read_as: Saving::Whole,
        }
    }

    #[inline(always)]
    fn find<Q>(&self, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slots = &self.slots;
        (self.index)
            .find(hash_of(key), |&i| slots.get(i).key.borrow() == key)
            .copied()
    }

    /// Points the neighbours of `at` (or the list's ends where it has none):
    /// the newer one's `older` at `newer_sees`, the older one's `newer` at `older_sees`.
    #[inline]
    fn repoint(&mut self, at: Link, newer_sees: u32, older_sees: u32) {
        match at.newer {
            NONE => self.newest = newer_sees,
            n => self.links[n as usize].older = newer_sees,
        }
        match at.older {
            NONE => self.oldest = older_sees,
            o => self.links[o as usize].newer = older_sees,
        }
    }

    /// Takes slot `i` out of the recency list.
    #[inline]
    fn unlink(&mut self, i: u32) {
        let at = self.links[i as usize];
        self.repoint(at, at.older, at.newer);
    }

    /// Puts slot `i` (not in the list) first in the recency list.
    #[inline]
    fn link_newest(&mut self, i: u32) {
        let previous = self.newest;
        self.links[i as usize] = Link {
            newer: NONE,
            older: previous,
        };
        match previous {
            NONE => self.oldest = i,
            p => self.links[p as usize].newer = i,
        }
        self.newest = i;
    }

    #[inline]
    fn move_to_newest(&mut self, i: u32) {
        if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
    }

    /// Adds an entry for a key not held, as the most recently used.
    fn add(&mut self, key: K, value: V, moved: bool) -> u32 {
        let hash = hash_of(&key);
        let i = self.slots.push(Slot {
            key,
            value,
            epoch: self.epoch.get(),
            moved,
        });
        let links = self.links.len();
        if links == self.links.capacity() && links >= CHUNK {
            // By an eighth, not double: at most an eighth of the links unused.
            self.links.reserve_exact(links / 8);
        }
        self.links.push(Link {
            newer: NONE,
            older: NONE,
        });
        let slots = &self.slots;
        (self.index).insert_unique(hash, i, |&j| hash_of(&slots.get(j).key));
        self.link_newest(i);
        i
    }

    /// Takes slot `i` out of the map.
    fn take(&mut self, i: u32) -> (K, V) {
        self.unlink(i);
        let slots = &self.slots;
        let hash = hash_of(&slots.get(i).key);
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        let last = (self.slots.len - 1) as u32;
        let gone = self.slots.swap_remove(i);
        self.links.swap_remove(i as usize);
        if last != i {
            // The last slot is now numbered `i`: its neighbours and index follow.
            self.repoint(self.links[i as usize], i, i);
            let hash = hash_of(&self.slots.get(i).key);
            if let Some(number) = self.index.find_mut(hash, |&j| j == last) {
                *number = i;
            }
        }
        (gone.key, gone.value)
    }

    /// Forgets the least recently used entry.
    fn pop_oldest(&mut self) -> Option<(K, V)> {
        match self.oldest {
            NONE => None,
            i => Some(self.take(i)),
        }
    }

    /// Replaces a held key's value, or adds it (first making room under the
    /// cap when `room`, and handing back what that forgot); either way it
    /// becomes the most recently used, stamped with `epoch` and `moved`.
    fn put(&mut self, key: K, value: V, epoch: u32, moved: bool, room: bool) -> Option<(K, V)> {
        let (i, evicted) = match self.find(&key) {
            Some(i) => {
                self.slots.get_mut(i).value = value;
                (i, None)
            }
            None => {
                let evicted = if room { self.make_room() } else { None };
                (self.add(key, value, moved), evicted)
            }
        };
        let s = self.slots.get_mut(i);
        s.epoch = epoch;
        s.moved = moved;
        self.move_to_newest(i);
        evicted
    }

    /// The keys from least to most recently used, for tests elsewhere.
    #[cfg(test)]
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.oldest_first().map(|s| &s.key)
    }

    /// The slots from least to most recently used.
    fn oldest_first(&self) -> impl Iterator<Item = &Slot<K, V>> {
        let mut at = self.oldest;
        std::iter::from_fn(move || {
            (at != NONE).then(|| {
                let s = self.slots.get(at);
                at = self.links[at as usize].newer;
                s
            })
        })
    }

    fn touched(epoch: u32, slot: &mut Slot<K, V>, moved: bool) {
        if slot.epoch != epoch {
            slot.epoch = epoch;
            slot.moved = moved;
        } else {
            slot.moved |= moved;
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

    /// Makes room for one key not held by forgetting the least recently used.
    fn make_room(&mut self) -> Option<(K, V)> {
        if self.slots.len >= self.cap.get() {
            let (gone, value) = self.pop_oldest()?;
            self.evictions += 1;
            self.note_removed(gone.clone());
            return Some((gone, value));
        }
        None
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.insert_evicting(key, value);
    }

    /// [`BoundedMap::insert`], handing back the entry forgotten to make room.
    pub fn insert_evicting(&mut self, key: K, value: V) -> Option<(K, V)> {
        self.put(key, value, self.epoch.get(), true, true)
    }

    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let found = self.find(&key);
        self.found_or_added(found, || (key, make()))
    }

    /// [`BoundedMap::get_or_insert_with`] by a borrowed key: the owned key,
    /// `own()`, is made only when it is not held yet (and may share what the
    /// caller already holds, as an agent's id).
    pub fn get_or_insert_by<Q>(
        &mut self,
        key: &Q,
        own: impl FnOnce() -> K,
        make: impl FnOnce() -> V,
    ) -> &mut V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = self.find(key);
        self.found_or_added(found, || (own(), make()))
    }

    /// The entry found, marked as the most recently used, or a new one.
    #[inline(always)]
    fn found_or_added(&mut self, found: Option<u32>, entry: impl FnOnce() -> (K, V)) -> &mut V {
        let i = match found {
            Some(i) => {
                let epoch = self.epoch.get();
                Self::touched(epoch, self.slots.get_mut(i), true);
                self.move_to_newest(i);
                i
            }
            None => {
                self.make_room();
                let (key, value) = entry();
                self.add(key, value, true)
            }
        };
        &mut self.slots.get_mut(i).value
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
        let i = self.find(key)?;
        let epoch = self.epoch.get();
        Self::touched(epoch, self.slots.get_mut(i), true);
        self.move_to_newest(i);
        Some(&mut self.slots.get_mut(i).value)
    }

    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(key).map(|i| &self.slots.get(i).value)
    }

    pub fn peek_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.find(key)?;
        let epoch = self.epoch.get();
        let slot = self.slots.get_mut(i);
        Self::touched(epoch, slot, false);
        Some(&mut slot.value)
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.find(key)?;
        let (gone, value) = self.take(i);
        self.note_removed(gone);
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.slots.len
    }

    pub fn is_empty(&self) -> bool {
        self.slots.len == 0
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Sets a new cap, forgetting the least recently used entries beyond it
    /// (restored state meets the running policy's caps).
    pub fn recap(&mut self, capacity: usize) {
        self.cap = NonZeroUsize::new(capacity.max(1)).expect("capacity is at least 1");
        while self.slots.len > self.cap.get() {
            if let Some((gone, _)) = self.pop_oldest() {
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
                let touched: Vec<(&K, &V, bool)> = (self.oldest_first())
                    .filter(|s| s.epoch == epoch)
                    .map(|s| (&s.key, &s.value, s.moved))
                    .collect();
                let mut t = s.serialize_tuple(4)?;
                t.serialize_element(&self.cap.get())?;
                t.serialize_element(&self.evictions)?;
                t.serialize_element(&touched)?;
                t.serialize_element(removed)?;
                t.end()
            }
            _ => {
                let entries: Vec<(&K, &V)> =
                    (self.oldest_first()).map(|s| (&s.key, &s.value)).collect();
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
                let epoch = map.epoch.get();
                for SavedEntry(key, value, moved) in entries {
                    map.put(key, value, epoch, moved.unwrap_or(true), false);
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
            if let Some(i) = self.find(&key) {
                self.take(i);
            }
        }
        let settled = self.epoch.get().wrapping_sub(1);
        while let Some(i) = (later.oldest != NONE).then_some(later.oldest) {
            let moved = later.slots.get(i).moved;
            let (key, value) = later.take(i);
            match self.find(&key) {
                Some(j) if !moved => {
                    let place = self.slots.get_mut(j);
                    place.value = value;
                    place.epoch = settled;
                    place.moved = false;
                }
                _ => {
                    self.put(key, value, settled, false, false);
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
    use crate::changes::save_as;

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

    /// The map's entries oldest first, checked against its recency links
    /// walked the other way and against its index.
    fn entries(m: &BoundedMap<u32, u64>) -> Vec<(u32, u64)> {
        let forward: Vec<(u32, u64)> = m.oldest_first().map(|s| (s.key, s.value)).collect();
        let mut backward = Vec::new();
        let mut at = m.newest;
        while at != NONE {
            let s = m.slots.get(at);
            backward.push((s.key, s.value));
            at = m.links[at as usize].older;
        }
        backward.reverse();
        assert_eq!(forward, backward, "links disagree");
        assert_eq!(forward.len(), m.len());
        assert_eq!(m.index.len(), m.len());
        for (k, v) in &forward {
            assert_eq!(m.peek(k), Some(v), "key {k} not found through the index");
        }
        forward
    }

    /// Random operations on the map and on a plain list kept oldest first,
    /// over more keys than the cap and more entries than a chunk holds, so
    /// evictions, removals from the middle and slots moving between chunks
    /// all happen; after each the two must hold the same, in the same order.
    #[test]
    fn behaves_as_a_list_in_recency_order() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut cap = 150;
        let mut m: BoundedMap<u32, u64> = BoundedMap::new(cap);
        let mut model: Vec<(u32, u64)> = Vec::new();
        let mut evictions = 0;
        let at = |model: &Vec<(u32, u64)>, k: u32| model.iter().position(|e| e.0 == k);
        for step in 0..40_000u64 {
            let k = next(400) as u32;
            match next(8) {
                0 | 1 => {
                    let evicted = m.insert_evicting(k, step);
                    let expected = match at(&model, k) {
                        Some(i) => {
                            model.remove(i);
                            None
                        }
                        None if model.len() >= cap => {
                            evictions += 1;
                            Some(model.remove(0))
                        }
                        None => None,
                    };
                    model.push((k, step));
                    assert_eq!(evicted, expected, "step {step}");
                }
                2 => {
                    let v = *m.get_or_insert_with(k, || step);
                    let entry = match at(&model, k) {
                        Some(i) => model.remove(i),
                        None => {
                            if model.len() >= cap {
                                evictions += 1;
                                model.remove(0);
                            }
                            (k, step)
                        }
                    };
                    model.push(entry);
                    assert_eq!(v, entry.1, "step {step}");
                }
                3 => {
                    let got = m.get(&k).copied();
                    let expected = at(&model, k).map(|i| {
                        let e = model.remove(i);
                        model.push(e);
                        e.1
                    });
                    assert_eq!(got, expected, "step {step}");
                }
                4 => {
                    if let Some(v) = m.peek_mut(&k) {
                        *v += 1;
                    }
                    if let Some(i) = at(&model, k) {
                        model[i].1 += 1;
                    }
                }
                5 | 6 => {
                    let expected = at(&model, k).map(|i| model.remove(i).1);
                    assert_eq!(m.remove(&k), expected, "step {step}");
                }
                _ if step % 997 == 0 => {
                    cap = 50 + next(200) as usize;
                    m.recap(cap);
                    while model.len() > cap {
                        evictions += 1;
                        model.remove(0);
                    }
                }
                _ => assert_eq!(m.peek(&k), at(&model, k).map(|i| &model[i].1)),
            }
            assert_eq!(entries(&m), model, "step {step}");
        }
        assert_eq!(m.evictions(), evictions);
        assert!(evictions > 100, "the test must evict");
        // Saved and read back, the same entries in the same order.
        let restored: BoundedMap<u32, u64> =
            rmp_serde::from_slice(&rmp_serde::to_vec(&m).unwrap()).unwrap();
        assert_eq!(entries(&restored), model);
    }

    /// Changes since a save, applied to that save, give the map as it is.
    #[test]
    fn changes_applied_to_the_save_they_follow_give_the_same_map() {
        let mut m: BoundedMap<u32, u64> = BoundedMap::new(100);
        for k in 0..90 {
            m.insert(k, u64::from(k));
        }
        let whole = rmp_serde::to_vec(&m).unwrap();
        for k in (0..90).step_by(7) {
            m.remove(&k);
        }
        for k in 90..110 {
            m.insert(k, u64::from(k));
        }
        for k in (1..90).step_by(5) {
            if let Some(v) = m.peek_mut(&k) {
                *v += 1000;
            }
        }
        m.get(&3);
        let changes = save_as(Saving::Changes, || rmp_serde::to_vec(&m).unwrap());
        let mut restored: BoundedMap<u32, u64> = rmp_serde::from_slice(&whole).unwrap();
        let later: BoundedMap<u32, u64> = rmp_serde::from_slice(&changes).unwrap();
        restored.apply_changes(later);
        assert_eq!(entries(&restored), entries(&m));
        assert_eq!(restored.evictions(), m.evictions());
    }
}
