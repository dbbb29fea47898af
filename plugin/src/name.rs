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
//!
//! A chain of saves (a snapshot, then the changes after it) shares one
//! table: a set of changes numbers on from where the save before it stopped,
//! so an agent named in the snapshot costs a number, not its id, in every
//! later change. The engine keeps that table between saves; a restore
//! rebuilds the same one by reading the chain in order.

use rustc_hash::FxHashMap;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Borrow;
use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

/// An immutable shared string: cloning it copies a pointer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Rc<str>);

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name(Rc::from(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name(Rc::from(s))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The names of one chain of saves: numbered in the order first written
/// (or read).
#[derive(Default)]
pub(crate) struct Table {
    numbers: FxHashMap<Name, u32>,
    names: Vec<Name>,
}

impl Table {
    /// How many names are numbered.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// Forgets the names numbered after the first `len`: what a refused
    /// restore read is not part of the chain.
    pub(crate) fn truncate(&mut self, len: usize) {
        for name in self.names.drain(len.min(self.names.len())..) {
            if self.numbers.get(&name).is_some_and(|&n| n as usize >= len) {
                self.numbers.remove(&name);
            }
        }
    }
}

thread_local! {
    static TABLE: RefCell<Option<Table>> = const { RefCell::new(None) };
}

/// Runs one save's serialisation, or one restore's deserialisation, with
/// `table`: a name already in it is its number, a new one is added.
/// Outside it names are plain strings.
pub(crate) fn with_table<R>(table: &mut Table, run: impl FnOnce() -> R) -> R {
    let before = TABLE.with(|t| t.replace(Some(std::mem::take(table))));
    let result = run();
    *table = TABLE.with(|t| t.replace(before)).unwrap_or_default();
    result
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_str(self, s)
    }
}

/// Writes `text` as a [`Name`] is written: inside a save, as its number
/// after its first mention.
pub(crate) fn serialize_str<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    let number = TABLE.with(|t| {
        let mut t = t.borrow_mut();
        let table = t.as_mut()?;
        if let Some(&n) = table.numbers.get(text) {
            return Some(Some(n));
        }
        let next = u32::try_from(table.names.len()).ok()?;
        let name = Name::from(text);
        table.numbers.insert(name.clone(), next);
        table.names.push(name);
        Some(None)
    });
    match number {
        Some(Some(n)) => s.serialize_u32(n),
        _ => s.serialize_str(text),
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
        f.write_str("a name, or the number of a name already read in this save")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
        Ok(NameVisitor::named(v))
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

/// Text saved as its words, each written as a name: summaries repeat their
/// rule's phrasing (and the agent's type) in every incident, so most words
/// are a number after the first incident. Splitting on single spaces and
/// joining with them gives the text back exactly.
pub(crate) mod words {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    struct Word<'a>(&'a str);

    impl serde::Serialize for Word<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::serialize_str(self.0, s)
        }
    }

    pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(text.split(' ').count()))?;
        for word in text.split(' ') {
            seq.serialize_element(&Word(word))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let words = Vec::<super::Name>::deserialize(d)?;
        let mut text = String::with_capacity(words.iter().map(|w| w.len() + 1).sum());
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(word);
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save<T: Serialize>(value: &T) -> Vec<u8> {
        with_table(&mut Table::default(), || rmp_serde::to_vec(value).unwrap())
    }

    fn restore<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
        with_table(&mut Table::default(), || rmp_serde::from_slice(bytes))
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
            Rc::ptr_eq(&back[0].0.0, &back[1].0.0),
            "one string per name"
        );
        assert!(Rc::ptr_eq(&back[0].1.0, &back[2].1.0));
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
        // Each fresh table starts empty: numbers do not carry over.
        let first = save(&(Name::from("a"), Name::from("a")));
        assert!(restore::<(Name, Name)>(&first).is_ok());
        let alone = rmp_serde::to_vec(&(0u32,)).unwrap();
        assert!(restore::<(Name,)>(&alone).is_err());
    }

    /// A chain's saves share the writer's table; the reader rebuilds it by
    /// reading them in order, and forgets what a refused piece added.
    #[test]
    fn a_chain_of_saves_numbers_on_and_reads_back_in_order() {
        let agent = Name::from("agent-7f3c2a9e-1b4d-4c8e-9f21-6a0d5e4b3c2f");
        let mut writer = Table::default();
        let snapshot = with_table(&mut writer, || {
            rmp_serde::to_vec(&(agent.clone(), Name::from("t"))).unwrap()
        });
        let changes = with_table(&mut writer, || {
            rmp_serde::to_vec(&(agent.clone(), Name::from("new"))).unwrap()
        });
        // The agent is number 0 in the changes: one byte, not 45.
        assert_eq!(changes, rmp_serde::to_vec(&(0u32, "new")).unwrap());
        assert_eq!(writer.len(), 3);

        let mut reader = Table::default();
        let read = |table: &mut Table, bytes: &[u8]| {
            with_table(table, || rmp_serde::from_slice::<(Name, Name)>(bytes))
        };
        assert_eq!(read(&mut reader, &snapshot).unwrap().0, agent);
        let refused = rmp_serde::to_vec(&("other", 9u32)).unwrap();
        assert!(read(&mut reader, &refused).is_err());
        reader.truncate(2);
        assert_eq!(reader.len(), 2);
        let back = read(&mut reader, &changes).unwrap();
        assert_eq!(back, (agent.clone(), Name::from("new")));
        // Read on a fresh table, the changes name a number never read.
        assert!(read(&mut Table::default(), &changes).is_err());
        // After the refused piece is forgotten, its name numbers as the writer's did.
        let later = with_table(&mut writer, || {
            rmp_serde::to_vec(&Name::from("other")).unwrap()
        });
        let other: Name = with_table(&mut reader, || rmp_serde::from_slice(&later).unwrap());
        assert_eq!(&*other, "other");
        assert_eq!(reader.len(), writer.len());
    }
}
