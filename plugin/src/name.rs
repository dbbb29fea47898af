//! Names the state holds many times over (agent ids, agent types, profiles,
//! incident ids): one shared string each, written once per save.
//!
//! An agent's id is the key of its registry entry, its activity, its rate and
//! tunnel windows and its deadlines, and is copied into each of its
//! incidents; its type and profile are shared by thousands of agents. Saved
//! as plain strings they were a third of a snapshot, and read back each copy
//! became a string of its own. Inside a save ([`with_table`]) a [`Name`] is
//! written as its text the first time and as that text's number after, and
//! a restore reads each text once and hands out the same shared string for
//! every later mention: a restored engine shares its names as the one that
//! saved them did.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use std::alloc::Layout;
use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::rc::Rc;

/// An immutable shared string: cloning it copies a pointer. One pointer,
/// not `Rc<str>`'s two: an agent's id alone is held by a dozen keys and
/// deadlines, and a fleet's state is mostly such keys.
pub struct Name(NonNull<Header>, PhantomData<Rc<str>>);

/// The start of a [`Name`]'s block, its text following: one block per text,
/// as `Rc<str>` has, with the length here rather than beside each pointer.
#[repr(C)]
struct Header {
    holders: Cell<u32>,
    len: u32,
}

const HEADER: usize = std::mem::size_of::<Header>();

/// A block holding `len` bytes of text.
fn block(len: usize) -> Layout {
    Layout::from_size_align(HEADER + len, std::mem::align_of::<Header>())
        .expect("a name's block fits in memory")
}

impl Name {
    fn header(&self) -> &Header {
        // SAFETY: the block lives while any `Name` holds it.
        unsafe { self.0.as_ref() }
    }

    pub fn as_str(&self) -> &str {
        let len = self.header().len as usize;
        // SAFETY: the block holds `len` bytes of UTF-8 after its header,
        // written once by `From<&str>` and never changed.
        unsafe {
            let text = self.0.as_ptr().cast::<u8>().add(HEADER);
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(text, len))
        }
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        let len = u32::try_from(s.len()).expect("a name shorter than 4 GiB");
        let layout = block(s.len());
        // SAFETY: the layout is never empty (it holds the header).
        let Some(start) = NonNull::new(unsafe { std::alloc::alloc(layout) }.cast::<Header>())
        else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: the block is fresh, aligned for the header and long enough for the text.
        unsafe {
            start.as_ptr().write(Header {
                holders: Cell::new(1),
                len,
            });
            let text = start.as_ptr().cast::<u8>().add(HEADER);
            std::ptr::copy_nonoverlapping(s.as_ptr(), text, s.len());
        }
        Name(start, PhantomData)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name::from(s.as_str())
    }
}

impl Clone for Name {
    fn clone(&self) -> Name {
        let holders = &self.header().holders;
        // As `Rc` does: a count about to wrap means leaked clones; stop.
        let Some(more) = holders.get().checked_add(1) else {
            std::process::abort()
        };
        holders.set(more);
        Name(self.0, PhantomData)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let header = self.header();
        let left = header.holders.get() - 1;
        if left > 0 {
            header.holders.set(left);
            return;
        }
        let layout = block(header.len as usize);
        // SAFETY: this was the block's last holder; it was allocated with this layout.
        unsafe { std::alloc::dealloc(self.0.as_ptr().cast(), layout) }
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Compared, ordered and hashed as its text, so a map keyed by names is
/// searched by `&str`.
impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.0 == other.0 || self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One shared [`Name`] per text for things many hold the same (agent types
/// and profiles, the names a fleet resolves), so each text is held once live
/// as it is after a restore. At most `cap` texts; past that the table starts
/// again (what holds a name keeps it). Never saved.
pub struct Interner {
    names: FxHashSet<Name>,
    cap: usize,
}

impl Interner {
    pub fn new(cap: usize) -> Interner {
        Interner {
            names: FxHashSet::default(),
            cap,
        }
    }

    pub fn get(&mut self, text: &str) -> Name {
        if let Some(name) = self.names.get(text) {
            return name.clone();
        }
        if self.names.len() >= self.cap {
            self.names.clear();
        }
        let name = Name::from(text);
        self.names.insert(name.clone());
        name
    }
}

/// A key of two names (an agent and a domain, say), looked up by borrowed
/// text: finding a key that exists allocates nothing, and only a key not held
/// yet is made into names.
pub trait NamePair {
    fn first(&self) -> &str;
    fn second(&self) -> &str;
}

impl NamePair for (Name, Name) {
    fn first(&self) -> &str {
        &self.0
    }
    fn second(&self) -> &str {
        &self.1
    }
}

impl NamePair for (&str, &str) {
    fn first(&self) -> &str {
        self.0
    }
    fn second(&self) -> &str {
        self.1
    }
}

impl<'a> Borrow<dyn NamePair + 'a> for (Name, Name) {
    fn borrow(&self) -> &(dyn NamePair + 'a) {
        self
    }
}

/// Hashes as the `(Name, Name)` tuple does: each text in turn.
impl std::hash::Hash for dyn NamePair + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.first().hash(h);
        self.second().hash(h);
    }
}

impl PartialEq for dyn NamePair + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.first() == other.first() && self.second() == other.second()
    }
}

impl Eq for dyn NamePair + '_ {}

/// The names of one save: numbered in the order first written (or read).
#[derive(Default)]
struct Table {
    numbers: FxHashMap<Name, u32>,
    names: Vec<Name>,
}

thread_local! {
    static TABLE: RefCell<Option<Table>> = const { RefCell::new(None) };
}

/// Runs one save's serialisation, or one restore's deserialisation, with a
/// fresh table of names: a name after its first mention is its number.
/// Outside it names are plain strings.
pub(crate) fn with_table<R>(run: impl FnOnce() -> R) -> R {
    let before = TABLE.with(|t| t.replace(Some(Table::default())));
    let result = run();
    TABLE.with(|t| *t.borrow_mut() = before);
    result
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_str(self, s)
    }
}

/// Writes `text` as a [`Name`] is written: inside a save, as its number
/// after its first mention. A first mention with a `/` is written as its
/// `/`-separated parts, each a name: an incident key
/// (`agent/rule/target`) then costs the numbers of an agent id and a rule
/// id already written, and only its target as text.
pub(crate) fn serialize_str<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    let first = TABLE.with(|t| {
        let mut t = t.borrow_mut();
        let table = t.as_mut()?;
        Some(table.numbers.get(text).copied().ok_or(()))
    });
    match first {
        None => s.serialize_str(text),
        Some(Ok(n)) => s.serialize_u32(n),
        Some(Err(())) if text.contains('/') => {
            let mut parts = s.serialize_seq(Some(text.split('/').count()))?;
            for part in text.split('/') {
                parts.serialize_element(&Part(part))?;
            }
            // Numbered after its parts, as the reader numbers it.
            TABLE.with(|t| t.borrow_mut().as_mut().map(|table| table.add(text)));
            parts.end()
        }
        Some(Err(())) => {
            TABLE.with(|t| t.borrow_mut().as_mut().map(|table| table.add(text)));
            s.serialize_str(text)
        }
    }
}

/// Text written as a name: a part of a name written in parts, a word.
struct Part<'a>(&'a str);

impl Serialize for Part<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_str(self.0, s)
    }
}

impl Table {
    /// Numbers `text` next (a writer's table never holds a text twice).
    fn add(&mut self, text: &str) {
        let Ok(next) = u32::try_from(self.names.len()) else {
            return;
        };
        let name = Name::from(text);
        self.numbers.insert(name.clone(), next);
        self.names.push(name);
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        d.deserialize_any(NameVisitor)
    }
}

struct NameVisitor;

impl NameVisitor {
    /// The shared name for `text`, numbered if inside a table.
    fn named(text: &str) -> Name {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            let Some(table) = t.as_mut() else {
                return Name::from(text);
            };
            // The writer numbered only a name's first mention; an equal text
            // again (a writer without a table) still shares one string.
            let name = match table.numbers.get_key_value(text) {
                Some((name, _)) => name.clone(),
                None => Name::from(text),
            };
            let next = table.names.len() as u32;
            table.numbers.entry(name.clone()).or_insert(next);
            table.names.push(name.clone());
            name
        })
    }
}

impl<'de> Visitor<'de> for NameVisitor {
    type Value = Name;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a name, its parts, or the number of a name already read in this save")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
        Ok(NameVisitor::named(v))
    }

    /// A name written in its `/`-separated parts.
    fn visit_seq<A: SeqAccess<'de>>(self, mut parts: A) -> Result<Name, A::Error> {
        let mut text = String::new();
        let mut first = true;
        while let Some(part) = parts.next_element::<Name>()? {
            if !first {
                text.push('/');
            }
            first = false;
            text.push_str(&part);
        }
        if first || !text.contains('/') {
            return Err(de::Error::custom("a name in parts needs two parts or more"));
        }
        Ok(NameVisitor::named(&text))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Name, E> {
        TABLE.with(|t| {
            let t = t.borrow();
            let names = t.as_ref().map_or(&[][..], |table| &table.names[..]);
            usize::try_from(n)
                .ok()
                .and_then(|n| names.get(n))
                .cloned()
                .ok_or_else(|| {
                    E::custom(format!(
                        "name number {n}, but only {} names were read before it",
                        names.len()
                    ))
                })
        })
    }
}

/// A `String` field saved as a [`Name`] is: an agent id or host name the
/// state holds as plain text (in a heartbeat, a finding) costs a number
/// where the save already wrote it.
pub(crate) mod text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        super::serialize_str(text, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(super::Name::deserialize(d)?.to_string())
    }
}

/// Text saved as its words, each written as a name: summaries repeat their
/// rule's phrasing (and the agent's type) in every incident, so most words
/// are a number after the first incident. Splitting on single spaces and
/// joining with them gives the text back exactly.
pub(crate) mod words {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(text.split(' ').count()))?;
        for word in text.split(' ') {
            seq.serialize_element(&super::Part(word))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<T, D::Error> {
        let words = Vec::<super::Name>::deserialize(d)?;
        let spaces = words.len().saturating_sub(1);
        let mut text = String::with_capacity(words.iter().map(|w| w.len()).sum::<usize>() + spaces);
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(word);
        }
        Ok(T::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_pointer_and_reads_as_its_text() {
        use std::hash::BuildHasher;
        assert_eq!(std::mem::size_of::<Name>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Option<Name>>(),
            std::mem::size_of::<usize>()
        );
        let long = "é".repeat(5000);
        for text in ["", "a", "agent-7", "data_collector_v1", long.as_str()] {
            let name = Name::from(text);
            assert_eq!(&*name, text);
            assert_eq!(name.len(), text.len());
            let hasher = rustc_hash::FxBuildHasher;
            assert_eq!(hasher.hash_one(&name), hasher.hash_one(text), "{text:?}");
            assert_eq!(Name::from(text.to_string()), name);
        }
        let a = Name::from("agent-1");
        let clones: Vec<Name> = (0..1000).map(|_| a.clone()).collect();
        assert_eq!(a.header().holders.get(), 1001);
        assert!(clones.iter().all(|c| c.as_ptr() == a.as_ptr() && *c == a));
        drop(clones);
        assert_eq!(a.header().holders.get(), 1);
        // Ordered as text, not by where it lives.
        let mut names = ["b", "a", "ab", ""].map(Name::from);
        names.sort();
        assert_eq!(names.each_ref().map(|n| n.as_str()), ["", "a", "ab", "b"]);
        assert_ne!(Name::from("a"), Name::from("b"));
    }

    #[test]
    fn an_interner_shares_each_text_and_stays_within_its_cap() {
        let mut table = Interner::new(3);
        let first = table.get("research_agent");
        assert!(std::ptr::eq(
            first.as_ptr(),
            table.get("research_agent").as_ptr()
        ));
        for i in 0..10 {
            let text = format!("type-{i}");
            assert_eq!(&*table.get(&text), text);
            assert!(table.names.len() <= 3);
        }
        // Past the cap the table started again: the text is held anew, and
        // what held the old copy keeps it.
        let again = table.get("research_agent");
        assert_eq!((&*again, &*first), ("research_agent", "research_agent"));
        assert!(!std::ptr::eq(again.as_ptr(), first.as_ptr()));
    }

    #[test]
    fn a_pair_of_names_is_found_by_borrowed_text() {
        let mut map = crate::bounded::BoundedMap::<(Name, Name), u32>::new(8);
        map.insert((Name::from("agent-1"), Name::from("example.org")), 1);
        let key: &dyn NamePair = &("agent-1", "example.org");
        let owned = |a: &'static str, b: &'static str| move || (Name::from(a), Name::from(b));
        *map.get_or_insert_by(key, owned("agent-1", "example.org"), || 100) += 1;
        assert_eq!(map.len(), 1, "found, not added beside it");
        assert_eq!(map.peek(key), Some(&2));
        // Nor is a pair whose texts only run together the same way.
        let other: &dyn NamePair = &("agent-1e", "xample.org");
        *map.get_or_insert_by(other, owned("agent-1e", "xample.org"), || 100) += 1;
        assert_eq!(map.len(), 2);
        assert_eq!(
            map.peek(&(Name::from("agent-1e"), Name::from("xample.org"))),
            Some(&101)
        );
    }

    fn save<T: Serialize>(value: &T) -> Vec<u8> {
        with_table(|| rmp_serde::to_vec(value).unwrap())
    }

    fn restore<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
        with_table(|| rmp_serde::from_slice(bytes))
    }

    #[test]
    fn a_name_is_written_once_per_save_and_comes_back_shared() {
        let agent = Name::from("agent-7f3c2a9e-1b4d-4c8e-9f21-6a0d5e4b3c2f");
        let kind = Name::from("data_collector_v1");
        let value = vec![
            (agent.clone(), kind.clone()),
            (Name::from(&*agent), kind.clone()),
            (Name::from("other"), kind.clone()),
        ];
        let bytes = save(&value);
        let plain = rmp_serde::to_vec(&value).unwrap();
        // The second agent id and the second and third type are one-byte
        // numbers instead of strings (the 43-byte id has a two-byte header).
        assert_eq!(
            plain.len() - bytes.len(),
            (agent.len() + 1) + 2 * kind.len(),
            "{} bytes with the table, {} without",
            bytes.len(),
            plain.len()
        );
        let back: Vec<(Name, Name)> = restore(&bytes).unwrap();
        assert_eq!(back, value);
        assert!(
            back[0].0.as_ptr() == back[1].0.as_ptr(),
            "one string per name"
        );
        assert!(back[0].1.as_ptr() == back[2].1.as_ptr());
    }

    #[test]
    fn text_saved_as_words_comes_back_exactly_and_repeats_cost_numbers() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Summary(#[serde(with = "words")] String);
        let texts = [
            "data_collector_v1 a-0 connected to cdn-0.example.net:443/tcp (93.184.1.0), not in allowed_outbound",
            "data_collector_v1 a-1 connected to cdn-1.example.net:443/tcp (93.184.1.1), not in allowed_outbound",
            "",
            " two  spaces, and one at each end ",
        ]
        .map(|t| Summary(t.to_string()));
        let bytes = save(&texts);
        let back: [Summary; 4] = restore(&bytes).unwrap();
        assert_eq!(back, texts);
        let first = save(&&texts[..1]).len();
        let two = save(&&texts[..2]).len();
        // The second differs in three words; the other seven are one byte each.
        let unique = "a-1 cdn-1.example.net:443/tcp (93.184.1.1),".len();
        assert!(two - first <= unique + 3 + 7 + 1, "{}", two - first);
    }

    #[test]
    fn outside_a_save_names_are_plain_strings() {
        let value = (Name::from("a"), Name::from("a"));
        let bytes = rmp_serde::to_vec(&value).unwrap();
        assert_eq!(bytes, rmp_serde::to_vec(&("a", "a")).unwrap());
        let back: (Name, Name) = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, value);
        // A number means nothing outside a save's table.
        let numbered = rmp_serde::to_vec(&("a", 0u32)).unwrap();
        assert!(rmp_serde::from_slice::<(Name, Name)>(&numbered).is_err());
    }

    #[test]
    fn a_number_not_yet_read_is_refused_naming_it() {
        let bytes = rmp_serde::to_vec(&("a", 5u32)).unwrap();
        let err = restore::<(Name, Name)>(&bytes).unwrap_err().to_string();
        assert!(err.contains("name number 5"), "{err}");
        // Each save has its own table: numbers do not carry over.
        let first = save(&(Name::from("a"), Name::from("a")));
        assert!(restore::<(Name, Name)>(&first).is_ok());
        let alone = rmp_serde::to_vec(&(0u32,)).unwrap();
        assert!(restore::<(Name,)>(&alone).is_err());
    }

    /// A name with `/` is written first as its parts, each a name, and
    /// numbered whole after them: an incident key costs the numbers of the
    /// agent id and rule id written before it, and a later mention of the
    /// key is one number.
    #[test]
    fn a_name_with_slashes_is_written_in_parts_and_comes_back_whole() {
        let agent = Name::from("agent-7f3c2a9e-1b4d-4c8e-9f21-6a0d5e4b3c2f");
        let rule = Name::from("egress.not_allowed");
        let key = Name::from(format!("{agent}/{rule}/cdn-1.example.net:443").as_str());
        let value = vec![agent.clone(), rule.clone(), key.clone(), key.clone()];
        let bytes = save(&value);
        let expected = rmp_serde::to_vec(&(
            &*agent,
            &*rule,
            (0u32, 1u32, "cdn-1.example.net:443"),
            // Parts are 0, 1 and 2; the whole key is 3.
            3u32,
        ))
        .unwrap();
        assert_eq!(bytes, expected);
        let back: Vec<Name> = restore(&bytes).unwrap();
        assert_eq!(back, value);
        assert!(back[2].as_ptr() == back[3].as_ptr());
        // Empty parts, a lone slash and a first mention all come back exactly.
        let odd = ["/", "a//b/", "/lead", "x/y"].map(Name::from).to_vec();
        let back: Vec<Name> = restore(&save(&odd)).unwrap();
        assert_eq!(back, odd);
        // Outside a save it is plain text.
        assert_eq!(
            rmp_serde::to_vec(&key).unwrap(),
            rmp_serde::to_vec(&*key).unwrap()
        );
        // A single part is not a name in parts.
        let one = rmp_serde::to_vec(&(("a",),)).unwrap();
        let err = restore::<(Name,)>(&one).unwrap_err().to_string();
        assert!(err.contains("two parts or more"), "{err}");
    }
}
