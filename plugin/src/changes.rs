//! Saving only what changed since the last save.
//!
//! A fleet's state is mostly agents that did nothing since the last
//! checkpoint; writing all of them every time makes a checkpoint cost the
//! fleet's size rather than its activity. So the containers that grow with
//! the fleet (the bounded maps and the deadline heaps) remember what changed
//! since they were last saved, and can be saved in two ways:
//!
//! - whole: everything, the base a restore starts from;
//! - changes: only what changed since the last save of either kind.
//!
//! The way is chosen by [`save_as`] around one serialisation; containers read
//! it while saving. Reading back needs no mode: each container's saved shape
//! says which it is, and [`ApplyChanges`] folds a saved set of changes into
//! the state it followed. Small state (clocks, counters, settings) is simply
//! written whole either way.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::BinaryHeap;
use std::fmt;
use std::marker::PhantomData;

/// How the containers are being saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saving {
    Whole,
    Changes,
    /// Written whole to be measured, not a save: what changed since the
    /// last save stays marked as changed.
    Measured,
}

thread_local! {
    static SAVING: Cell<Saving> = const { Cell::new(Saving::Whole) };
}

/// Runs one serialisation with the containers saving in `how`; whole is the
/// default outside it. Names are written once each (see [`crate::name`]).
pub fn save_as<R>(how: Saving, save: impl FnOnce() -> R) -> R {
    let before = SAVING.with(|s| s.replace(how));
    let result = crate::name::with_table(save);
    SAVING.with(|s| s.set(before));
    result
}

pub(crate) fn saving() -> Saving {
    SAVING.with(|s| s.get())
}

/// Folds a later save into the state it followed: a container saved as
/// changes applies them, anything saved whole replaces what was there.
pub trait ApplyChanges {
    fn apply_changes(&mut self, later: Self);
}

/// State saved whole either way: the later value simply replaces it.
macro_rules! replaced_by_later {
    ($($ty:ty),* $(,)?) => {$(
        impl $crate::changes::ApplyChanges for $ty {
            fn apply_changes(&mut self, later: Self) {
                *self = later;
            }
        }
    )*};
}
pub(crate) use replaced_by_later;

replaced_by_later!(i64, u64, u32, usize, bool);

impl<T> ApplyChanges for Option<T> {
    fn apply_changes(&mut self, later: Self) {
        *self = later;
    }
}

impl<T> ApplyChanges for Vec<T> {
    fn apply_changes(&mut self, later: Self) {
        *self = later;
    }
}

impl<T> ApplyChanges for std::collections::VecDeque<T> {
    fn apply_changes(&mut self, later: Self) {
        *self = later;
    }
}

/// A save holds no interning table: the one in use is kept.
impl ApplyChanges for crate::name::Interner {
    fn apply_changes(&mut self, _saved: Self) {}
}

/// A structure whose fields each apply their own changes. Every field is
/// named (the destructuring is exhaustive), so a field added later and not
/// listed here fails to compile instead of being silently left stale.
macro_rules! apply_changes_by_field {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl $crate::changes::ApplyChanges for $ty {
            fn apply_changes(&mut self, later: Self) {
                let $ty { $($field),* } = later;
                $( $crate::changes::ApplyChanges::apply_changes(&mut self.$field, $field); )*
            }
        }
    };
}
pub(crate) use apply_changes_by_field;

/// A binary heap that logs what was pushed and popped since it was last
/// saved, so its changes are those two lists rather than the whole heap.
pub struct LoggedHeap<T: Ord> {
    heap: BinaryHeap<T>,
    log: RefCell<HeapLog<T>>,
    /// `Changes` only for a heap read back from a save of changes, whose log
    /// holds them until they are applied.
    read_as: Saving,
}

struct HeapLog<T> {
    pushed: Vec<T>,
    popped: Vec<T>,
    /// The next save is whole, so nothing is logged: the log outgrew the
    /// heap (whole is smaller), or nothing was saved yet (an engine never
    /// saved keeps no log).
    overflowed: bool,
}

/// Beyond this many logged operations past the heap's own size the log is
/// dropped and the heap saved whole, so the log's memory stays bounded.
const HEAP_LOG_SLACK: usize = 1024;

impl<T: Ord + Clone> LoggedHeap<T> {
    pub fn new() -> Self {
        LoggedHeap {
            heap: BinaryHeap::new(),
            log: RefCell::new(HeapLog {
                pushed: Vec::new(),
                popped: Vec::new(),
                overflowed: true,
            }),
            read_as: Saving::Whole,
        }
    }

    pub fn push(&mut self, item: T) {
        self.record(|log| log.pushed.push(item.clone()));
        self.heap.push(item);
    }

    pub fn pop(&mut self) -> Option<T> {
        let item = self.heap.pop()?;
        self.record(|log| log.popped.push(item.clone()));
        Some(item)
    }

    pub fn peek(&self) -> Option<&T> {
        self.heap.peek()
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    fn record(&mut self, note: impl FnOnce(&mut HeapLog<T>)) {
        let len = self.heap.len();
        let log = self.log.get_mut();
        if log.overflowed {
            return;
        }
        if log.pushed.len() + log.popped.len() > len + HEAP_LOG_SLACK {
            log.overflowed = true;
            log.pushed = Vec::new();
            log.popped = Vec::new();
            return;
        }
        note(log);
    }
}

impl<T: Ord + Clone> Default for LoggedHeap<T> {
    fn default() -> Self {
        LoggedHeap::new()
    }
}

/// Saved whole as `[items]`; as changes as `[pushed, popped]`.
impl<T: Ord + Clone + Serialize> Serialize for LoggedHeap<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut log = self.log.borrow_mut();
        let saved = if saving() == Saving::Changes && !log.overflowed {
            let mut seq = s.serialize_seq(Some(2))?;
            seq.serialize_element(&log.pushed)?;
            seq.serialize_element(&log.popped)?;
            seq.end()
        } else {
            let mut seq = s.serialize_seq(Some(1))?;
            seq.serialize_element(self.heap.as_slice())?;
            seq.end()
        };
        if saved.is_ok() && saving() != Saving::Measured {
            log.pushed.clear();
            log.popped.clear();
            log.overflowed = false;
        }
        saved
    }
}

impl<'de, T: Ord + Clone + Deserialize<'de>> Deserialize<'de> for LoggedHeap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HeapVisitor<T>(PhantomData<T>);
        impl<'de, T: Ord + Clone + Deserialize<'de>> Visitor<'de> for HeapVisitor<T> {
            type Value = LoggedHeap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a heap saved as [items] or its changes as [pushed, popped]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first: Vec<T> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let mut heap = LoggedHeap::new();
                match seq.next_element::<Vec<T>>()? {
                    // Changes travel in the log until applied.
                    Some(popped) => {
                        let log = heap.log.get_mut();
                        log.pushed = first;
                        log.popped = popped;
                        heap.read_as = Saving::Changes;
                    }
                    None => heap.heap = BinaryHeap::from(first),
                }
                // Read back, the heap is a save: changes are logged from here.
                heap.log.get_mut().overflowed = false;
                Ok(heap)
            }
        }
        d.deserialize_seq(HeapVisitor(PhantomData))
    }
}

impl<T: Ord + Clone> ApplyChanges for LoggedHeap<T> {
    fn apply_changes(&mut self, later: Self) {
        let mut later = later;
        if later.read_as == Saving::Whole {
            *self = later;
            return;
        }
        let log = later.log.get_mut();
        // The heap now holds what it held, plus what was pushed, less what
        // was popped (each pop took an item that was there): a multiset sum.
        let mut items = std::mem::take(&mut self.heap).into_vec();
        items.append(&mut log.pushed);
        items.sort_unstable();
        let mut popped = std::mem::take(&mut log.popped);
        popped.sort_unstable();
        let mut gone = popped.into_iter().peekable();
        items.retain(|item| {
            while gone.peek().is_some_and(|g| g < item) {
                gone.next();
            }
            if gone.peek() == Some(item) {
                gone.next();
                false
            } else {
                true
            }
        });
        self.heap = BinaryHeap::from(items);
        *self.log.get_mut() = HeapLog {
            pushed: Vec::new(),
            popped: Vec::new(),
            overflowed: false,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save<T: Serialize>(how: Saving, value: &T) -> Vec<u8> {
        save_as(how, || rmp_serde::to_vec(value).unwrap())
    }

    fn drain(mut heap: LoggedHeap<i32>) -> Vec<i32> {
        std::iter::from_fn(|| heap.pop()).collect()
    }

    #[test]
    fn a_heap_rebuilt_from_its_base_and_changes_pops_the_same() {
        let mut heap = LoggedHeap::new();
        for i in [5, 3, 9, 3, 7] {
            heap.push(i);
        }
        let base = save(Saving::Whole, &heap);
        heap.pop(); // 9
        heap.push(1);
        heap.push(3);
        heap.pop(); // 7
        heap.push(8);
        heap.pop(); // 8: pushed and popped within the same changes
        let first = save(Saving::Changes, &heap);
        heap.pop(); // 5
        heap.push(4);
        let second = save(Saving::Changes, &heap);

        let mut rebuilt: LoggedHeap<i32> = rmp_serde::from_slice(&base).unwrap();
        for changes in [&first, &second] {
            rebuilt.apply_changes(rmp_serde::from_slice(changes).unwrap());
        }
        assert_eq!(drain(rebuilt), drain(heap));
    }

    #[test]
    fn changes_are_smaller_than_the_whole_and_a_long_log_falls_back_to_whole() {
        let mut heap = LoggedHeap::new();
        for i in 0..5000 {
            heap.push(i);
        }
        save(Saving::Whole, &heap);
        heap.push(-1);
        let changes = save(Saving::Changes, &heap);
        assert!(changes.len() < 16, "{} bytes", changes.len());

        for i in 0..(5001 + HEAP_LOG_SLACK + 10) as i32 {
            heap.push(i);
            heap.pop();
        }
        assert!(heap.log.borrow().overflowed);
        let whole: LoggedHeap<i32> = rmp_serde::from_slice(&save(Saving::Changes, &heap)).unwrap();
        assert_eq!(
            whole.len(),
            heap.len(),
            "saved whole after the log overflowed"
        );
    }
}
