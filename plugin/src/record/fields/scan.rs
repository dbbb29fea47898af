//! The record's bytes read once, by hand: the JSON grammar at byte level.
//!
//! [`known_fields`] is the hot path every record takes. It walks the top-level
//! object, keeps the values of the keys some format reads (plain strings and
//! integers straight from the bytes, borrowed) and steps over everything else
//! without building it. Whatever it is not sure to read exactly as serde_json
//! would — an escaped key, a `\u` escape, a fraction, a nested value of a known
//! key — it hands to serde_json (the nested value alone) or gives up on, and
//! the caller takes serde_json's path for the whole record. So its answers are
//! serde_json's, only cheaper; the differential test below holds it to that.

use super::{Fields, Key, Value, ValueSeed};
use crate::text::first_special;
use serde::de::DeserializeSeed;
use smallvec::SmallVec;
use std::borrow::Cow;

/// Nesting the skipper follows in a value no format reads; deeper, serde_json decides.
const MAX_SKIP_DEPTH: usize = 128;

#[inline(always)]
fn ws(text: &[u8], i: usize) -> usize {
    // Shippers write compact JSON: one compare says there is no whitespace.
    match text.get(i) {
        Some(&b) if b > b' ' => i,
        _ => whitespace_end(text, i),
    }
}

/// Past the whitespace at `i`. Out of line: the guest checks for
/// interruption at the head of every loop it enters, and inlined, this loop
/// was entered (and checked) three times per member even of compact JSON.
#[cold]
#[inline(never)]
fn whitespace_end(text: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(i) {
        i += 1;
    }
    i
}

/// The known keys of a record that is one JSON object, or `None` when the
/// record needs serde_json (which also words the error for bad JSON). Tests
/// read every record of a run with one [`KeyOrder`], as the engine does.
#[cfg(test)]
pub(super) fn known_fields(text: &str) -> Option<Fields<'_>> {
    thread_local! {
        static ORDER: std::cell::RefCell<KeyOrder> = std::cell::RefCell::new(KeyOrder::new());
    }
    let mut fields = Fields::empty();
    ORDER
        .with_borrow_mut(|order| read_known_fields(text, &mut fields, order))
        .then_some(fields)
}

/// Positions of a record [`KeyOrder`] remembers keys at.
const ORDERED_KEYS: usize = 32;

/// Sources whose key orders are remembered at once.
const SOURCES: usize = 4;

/// The keys of the records read before, by position, for each of the last
/// few sources. Records from one source repeat their keys in one order, so
/// each key is first compared, a word at a time with what follows it up to
/// its value, with the one the last record from its source had at its
/// position: when it is the same, neither the scan for its closing quote,
/// the lookup of its name nor the colon's check runs (in the guest, about a
/// quarter of reading a record). A record's source is told by
/// its first 16 bytes (`{"type":"IPFIX",` from goflow2, `{"type":"dns","t`
/// from a DNS log): a pipeline interleaves flows, DNS answers and agents'
/// records, and one order for all was relearnt at every change of source.
pub struct KeyOrder {
    sources: [SourceOrder; SOURCES],
    /// The source replaced next when a record starts like none of them.
    next_replaced: usize,
    /// Positions remembered: [`ORDERED_KEYS`], or none for one-off reads.
    limit: usize,
}

/// The key order of the records that start with `start`.
#[derive(Default)]
struct SourceOrder {
    start: [u64; 2],
    seen: Vec<Option<SeenKey>>,
}

impl KeyOrder {
    pub fn new() -> KeyOrder {
        KeyOrder {
            sources: Default::default(),
            next_replaced: 0,
            limit: ORDERED_KEYS,
        }
    }

    /// For a record read on its own: remembers nothing.
    pub fn off() -> KeyOrder {
        KeyOrder {
            limit: 0,
            ..KeyOrder::new()
        }
    }

    /// The key order of the source `line` comes from: the one whose records
    /// start with the same 16 bytes, or else a new one in place of the
    /// source that took a new place longest ago.
    #[inline(always)]
    fn for_line(&mut self, line: &[u8]) -> SourceKeys<'_> {
        let start = source_start(line);
        let index = match self.sources.iter().position(|s| s.start == start) {
            Some(index) => index,
            None => {
                let index = self.next_replaced;
                self.next_replaced = (index + 1) % SOURCES;
                let source = &mut self.sources[index];
                source.start = start;
                source.seen.clear();
                index
            }
        };
        SourceKeys {
            seen: &mut self.sources[index].seen,
            limit: self.limit,
        }
    }
}

#[cfg(test)]
impl KeyOrder {
    /// How many keys are remembered for the source of `line` (replacing none).
    fn remembered(&self, line: &str) -> usize {
        let start = source_start(line.as_bytes());
        self.sources
            .iter()
            .find(|s| s.start == start)
            .map_or(0, |s| s.seen.iter().flatten().count())
    }
}

/// What tells a line's source: its first 16 bytes as two words.
#[inline(always)]
fn source_start(line: &[u8]) -> [u64; 2] {
    match line.get(..16) {
        Some(first) => [
            u64::from_le_bytes(first[..8].try_into().expect("eight bytes")),
            u64::from_le_bytes(first[8..].try_into().expect("eight bytes")),
        ],
        None => short_start(line),
    }
}

/// [`source_start`] of a line shorter than 16 bytes, zero-padded.
#[cold]
fn short_start(line: &[u8]) -> [u64; 2] {
    let mut bytes = [0u8; 16];
    bytes[..line.len()].copy_from_slice(line);
    source_start(&bytes)
}

/// One source's remembered keys, while a record of it is read.
struct SourceKeys<'a> {
    seen: &'a mut Vec<Option<SeenKey>>,
    limit: usize,
}

impl SourceKeys<'_> {
    /// The key at `position` when its text at `at` (past the opening
    /// quote) is the one remembered there.
    #[inline(always)]
    fn predicted(&self, position: usize, line: &[u8], at: usize) -> Option<&SeenKey> {
        let seen = self.seen.get(position)?.as_ref()?;
        seen.is_at(line, at).then_some(seen)
    }

    /// Remembers the key read at `position` (every earlier position has
    /// been remembered or predicted, so there are no gaps).
    fn learn(&mut self, position: usize, key_to_value: &[u8], key: Option<Key>, clawwatch: bool) {
        if position >= self.limit {
            return;
        }
        let seen = SeenKey::new(key_to_value, key, clawwatch);
        match self.seen.get_mut(position) {
            Some(slot) => *slot = seen,
            None => self.seen.push(seen),
        }
    }
}

impl Default for KeyOrder {
    fn default() -> KeyOrder {
        KeyOrder::new()
    }
}

/// A key remembered with what followed it up to its value (its closing
/// quote and colon, and any whitespace around the colon), as up to four
/// little-endian words and the masks of the bytes in them that count.
struct SeenKey {
    words: [u64; 4],
    masks: [u64; 4],
    /// Bytes from the key's first to its value's (at most 32): most keys
    /// with their quote and colon fit in one or two words.
    span: u8,
    key: Option<Key>,
    clawwatch: bool,
}

impl SeenKey {
    /// `None` for a key too long for the four words with what follows it.
    fn new(key_to_value: &[u8], key: Option<Key>, clawwatch: bool) -> Option<SeenKey> {
        let counted = key_to_value.len();
        if counted > 32 {
            return None;
        }
        let mut bytes = [0u8; 32];
        bytes[..counted].copy_from_slice(key_to_value);
        let mut words = [0u64; 4];
        let mut masks = [0u64; 4];
        for (w, chunk) in bytes.chunks_exact(8).enumerate() {
            words[w] = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            masks[w] = match counted.saturating_sub(8 * w) {
                0 => 0,
                n if n >= 8 => u64::MAX,
                n => (1 << (8 * n)) - 1,
            };
        }
        Some(SeenKey {
            words,
            masks,
            span: counted as u8,
            key,
            clawwatch,
        })
    }

    /// Whether `line` at `at` holds this key and what followed it. Only
    /// where 32 bytes follow: the record's last keys take the scan. Only
    /// the words used are compared (in the guest, each is a dozen operators).
    #[inline(always)]
    fn is_at(&self, line: &[u8], at: usize) -> bool {
        let Some(window) = line.get(at..at + 32) else {
            return false;
        };
        let differs = |w: usize| {
            let word =
                u64::from_le_bytes(window[8 * w..8 * w + 8].try_into().expect("eight bytes"));
            (word ^ self.words[w]) & self.masks[w]
        };
        let mut differ = differs(0);
        if self.span > 8 {
            differ |= differs(1);
            if self.span > 16 {
                differ |= differs(2) | differs(3);
            }
        }
        differ == 0
    }
}

/// Reads the known keys of a record that is one JSON object into `fields`
/// (empty), in place: moving a 900-byte `Fields` out of every call cost
/// more than some of the reading. False when the record needs serde_json;
/// `fields` then holds part of the record.
pub(super) fn read_known_fields<'a>(
    text: &'a str,
    fields: &mut Fields<'a>,
    order: &mut KeyOrder,
) -> bool {
    read_into(text, fields, order).is_some()
}

fn read_into<'a>(text: &'a str, fields: &mut Fields<'a>, order: &mut KeyOrder) -> Option<()> {
    // Bytes for the grammar; `text` for slicing strings out, which costs no
    // UTF-8 check: quotes are ASCII, so they are always on char boundaries.
    let line = text.as_bytes();
    let mut i = ws(line, 0);
    if line.get(i) != Some(&b'{') {
        return None;
    }
    let mut order = order.for_line(line);
    i = ws(line, i + 1);
    if line.get(i) == Some(&b'}') {
        return (ws(line, i + 1) == line.len()).then_some(());
    }
    loop {
        // A key: plain text between quotes (an escaped key goes to serde_json).
        if line.get(i) != Some(&b'"') {
            return None;
        }
        let name_start = i + 1;
        let position = fields.members;
        let key = match order.predicted(position, line, name_start) {
            Some(seen) => {
                fields.has_clawwatch |= seen.clawwatch;
                i = ws(line, name_start + usize::from(seen.span));
                seen.key
            }
            None => {
                let name_end = plain_text_end(line, name_start)?;
                let name = &text[name_start..name_end];
                let key = Key::from_name(name);
                let clawwatch = key.is_none() && name == "clawwatch";
                fields.has_clawwatch |= clawwatch;
                i = ws(line, name_end + 1);
                if line.get(i) != Some(&b':') {
                    return None;
                }
                i = ws(line, i + 1);
                order.learn(position, &line[name_start..i], key, clawwatch);
                key
            }
        };
        fields.members += 1;
        let end = match key {
            Some(key) => {
                let (value, end) = value_at(text, i)?;
                fields.insert(key, value);
                end
            }
            None => skip_value(line, i)?,
        };
        i = match line.get(end..end + 2) {
            // Compact JSON: the next key at once, both bytes in one compare.
            Some(&[a, b]) if u16::from_le_bytes([a, b]) == u16::from_le_bytes(*b",\"") => end + 1,
            _ => {
                let i = ws(line, end);
                match line.get(i) {
                    Some(b',') => ws(line, i + 1),
                    Some(b'}') => return (ws(line, i + 1) == line.len()).then_some(()),
                    _ => return None,
                }
            }
        };
    }
}

/// The closing quote of a string body starting at `start` that needs no
/// decoding (no escape, no control character), or `None`.
fn plain_text_end(line: &[u8], start: usize) -> Option<usize> {
    let end = start + first_special(line.get(start..)?);
    (line.get(end) == Some(&b'"')).then_some(end)
}

/// The value of a known key starting at `i`, and where it ends.
fn value_at(text: &str, i: usize) -> Option<(Value<'_>, usize)> {
    let line = text.as_bytes();
    match *line.get(i)? {
        b'"' => {
            if let Some(end) = plain_text_end(line, i + 1) {
                return Some((Value::Str(Cow::Borrowed(&text[i + 1..end])), end + 1));
            }
        }
        b't' if line[i..].starts_with(b"true") => return Some((Value::Bool(true), i + 4)),
        b'f' if line[i..].starts_with(b"false") => return Some((Value::Bool(false), i + 5)),
        b'n' if line[i..].starts_with(b"null") => return Some((Value::Null, i + 4)),
        b'0'..=b'9' => {
            let (n, end) = digit_run(line, i);
            let digits = end - i;
            let plain = !matches!(line.get(end), Some(b'.' | b'e' | b'E'));
            // A leading zero is serde_json's to refuse.
            if plain && digits <= 19 && (digits == 1 || line[i] != b'0') {
                return Some((Value::UInt(n), end));
            }
        }
        _ => {}
    }
    // Escapes, fractions, negatives, arrays and objects: serde_json reads
    // exactly this value's bytes, so its decoding is the one kept.
    let end = skip_value(line, i)?;
    let mut de = serde_json::Deserializer::from_str(&text[i..end]);
    let value = ValueSeed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some((value, end))
}

/// ASCII `0` in each byte of a word.
const ZEROS: u64 = 0x3030_3030_3030_3030;

/// `10^n` for the digit counts [`digit_run`] takes at once.
const POWERS_OF_TEN: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The digits starting at `i`: the number they spell and where they end. Up
/// to 19 digits always fit a u64; past them it wraps (the value is then left
/// to serde_json anyway). Eight bytes at a time (SWAR): flow exporters write
/// nanosecond times and five-digit ports, and a loop per digit cost the guest
/// about 25 instructions a digit.
#[inline(always)]
fn digit_run(text: &[u8], mut i: usize) -> (u64, usize) {
    let mut n = 0u64;
    while let Some(bytes) = text.get(i..i + 8) {
        let word = u64::from_le_bytes(bytes.try_into().expect("eight bytes"));
        let count = leading_digits(word);
        if count > 0 {
            n = n
                .wrapping_mul(POWERS_OF_TEN[count])
                .wrapping_add(digits_value(word, count));
            i += count;
        }
        if count < 8 {
            return (n, i);
        }
    }
    // The last few bytes of the record.
    while let Some(&d @ b'0'..=b'9') = text.get(i) {
        n = n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
        i += 1;
    }
    (n, i)
}

/// How many bytes of `word` (little-endian: the first byte lowest) are ASCII
/// digits before the first that is not.
#[inline(always)]
fn leading_digits(word: u64) -> usize {
    // A digit's byte becomes its value, 0..=9.
    let values = word ^ ZEROS;
    // A byte's high bit is set when it is no digit: its value is 10 or more
    // (adding 0x76 to its low seven bits carries into the eighth), or its own
    // high bit was set. Neither step carries into the next byte.
    let not_digits = ((values & 0x7F7F_7F7F_7F7F_7F7F).wrapping_add(0x7676_7676_7676_7676)
        | values)
        & 0x8080_8080_8080_8080;
    (not_digits.trailing_zeros() / 8) as usize
}

/// The number the first `count` (1..=8) bytes of `word`, all digits, spell.
#[inline(always)]
fn digits_value(word: u64, count: usize) -> u64 {
    // The digits moved to the top, zeros shifted in before them (the first
    // byte is the most significant digit).
    let v = (word ^ ZEROS) << (8 * (8 - count));
    // Pairs, then fours, then the eight.
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    (v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF
}

/// Where the value no format reads, starting at `i`, ends (validated).
fn skip_value(text: &[u8], i: usize) -> Option<usize> {
    // Most skipped values are scalars: no container bookkeeping for them.
    match *text.get(i)? {
        b'"' => plain_string_end(text, i),
        b'-' | b'0'..=b'9' => number_end(text, i),
        _ => value_end(text, i, MAX_SKIP_DEPTH, plain_string_end),
    }
}

/// Where the JSON value starting at `i` ends, validating it on the way; `None`
/// when it is not JSON, nests deeper than `max_depth`, or holds a string
/// `string_end` declines. Iterative, with the open brackets kept as bits, so
/// hostile nesting costs a bit per level, not stack.
fn value_end(
    text: &[u8],
    mut i: usize,
    max_depth: usize,
    string_end: fn(&[u8], usize) -> Option<usize>,
) -> Option<usize> {
    // Bit n set: the container at depth n is an array. 128 levels inline.
    let mut arrays: SmallVec<[u64; 2]> = SmallVec::new();
    let is_array =
        |arrays: &SmallVec<[u64; 2]>, depth: usize| arrays[depth / 64] & (1 << (depth % 64)) != 0;
    let mut depth: usize = 0;
    loop {
        i = ws(text, i);
        // A value.
        i = match *text.get(i)? {
            b'"' => string_end(text, i)?,
            b't' => text[i..].starts_with(b"true").then_some(i + 4)?,
            b'f' => text[i..].starts_with(b"false").then_some(i + 5)?,
            b'n' => text[i..].starts_with(b"null").then_some(i + 4)?,
            b'-' | b'0'..=b'9' => number_end(text, i)?,
            open @ (b'[' | b'{') => {
                if depth == max_depth {
                    return None;
                }
                let array = open == b'[';
                if arrays.len() <= depth / 64 {
                    arrays.push(0);
                }
                let bit = 1 << (depth % 64);
                if array {
                    arrays[depth / 64] |= bit;
                } else {
                    arrays[depth / 64] &= !bit;
                }
                depth += 1;
                i = ws(text, i + 1);
                let close = if array { b']' } else { b'}' };
                if text.get(i) == Some(&close) {
                    depth -= 1;
                    i + 1
                } else {
                    if !array {
                        i = member_value_start(text, i, string_end)?;
                    }
                    continue;
                }
            }
            _ => return None,
        };
        // After a value: the end, or what follows it in its container.
        loop {
            if depth == 0 {
                return Some(i);
            }
            i = ws(text, i);
            let in_array = is_array(&arrays, depth - 1);
            match (*text.get(i)?, in_array) {
                (b',', true) => {
                    i += 1;
                    break;
                }
                (b',', false) => {
                    i = member_value_start(text, ws(text, i + 1), string_end)?;
                    break;
                }
                (b']', true) | (b'}', false) => {
                    depth -= 1;
                    i += 1;
                }
                _ => return None,
            }
        }
    }
}

/// Past an object member's key and colon, at `i` on the key's quote.
fn member_value_start(
    text: &[u8],
    i: usize,
    string_end: fn(&[u8], usize) -> Option<usize>,
) -> Option<usize> {
    if text.get(i) != Some(&b'"') {
        return None;
    }
    let i = ws(text, string_end(text, i)?);
    (text.get(i) == Some(&b':')).then_some(i + 1)
}

/// [`string_end`] for strings without `\u` escapes: serde_json refuses some of
/// those (lone surrogates), so they are left to it.
fn plain_string_end(text: &[u8], start: usize) -> Option<usize> {
    string_end_with(text, start, false)
}

/// Whether `text` is one JSON object (RFC 8259), however deeply nested and
/// whatever the size of its numbers: for records the field reader cannot read
/// but that must still be kept as the objects they are.
pub fn is_json_object(text: &[u8]) -> bool {
    let start = ws(text, 0);
    text.get(start) == Some(&b'{')
        && value_end(text, start, usize::MAX, string_end)
            .is_some_and(|end| ws(text, end) == text.len())
}

/// The index after the string that opens at `start` (a `"`), if well formed.
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    string_end_with(text, start, true)
}

/// [`string_end`], declining a `\u` escape unless `unicode_escapes`.
fn string_end_with(text: &[u8], start: usize, unicode_escapes: bool) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += first_special(text.get(i..)?);
        match *text.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                i += match *text.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                    b'u' if unicode_escapes
                        && text.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) =>
                    {
                        6
                    }
                    _ => return None,
                }
            }
            0..=0x1f => return None,
            _ => i += 1,
        }
    }
}

/// The index after the number that starts at `start`, if well formed.
fn number_end(text: &[u8], start: usize) -> Option<usize> {
    let digits = |from: usize| {
        let (_, end) = digit_run(text, from);
        (end > from).then_some(end)
    };
    let mut i = start + usize::from(text[start] == b'-');
    i = match text.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i)?,
        _ => return None,
    };
    if text.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(i)?;
    }
    Some(i)
}

#[cfg(test)]
mod object_check_tests {
    use super::is_json_object;

    #[test]
    fn any_valid_object_is_one_and_anything_else_is_not() {
        let deep = format!("{{\"x\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        for valid in [
            "{}",
            " { } ",
            r#"{"a":1e999,"b":-0.5E+3,"c":123456789012345678901234567890}"#,
            r#"{"a":"\"\\\/\b\f\n\r\t\u00e9","b":[true,false,null,{}],"a":2}"#,
            &deep,
        ] {
            assert!(
                is_json_object(valid.as_bytes()),
                "{}",
                &valid[..valid.len().min(80)]
            );
        }
        for invalid in [
            "",
            "[]",
            "\"x\"",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":[1,]}",
            "{\"a\":[1}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":tru}",
            "{} {}",
            "{\"a\":1]",
        ] {
            assert!(!is_json_object(invalid.as_bytes()), "{invalid}");
        }
    }
}

#[cfg(test)]
mod differential_tests {
    use super::super::{Fields, Key};
    use super::known_fields;

    /// Every record line of the bundled samples (real software's output and the test fleets).
    fn sample_lines() -> Vec<Vec<u8>> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata");
        let mut lines = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(root)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path
                    .extension()
                    .is_some_and(|e| e == "ndjson" || e == "jsonl" || e == "log")
                {
                    let bytes = std::fs::read(&path).unwrap();
                    lines.extend(bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec));
                }
            }
        }
        lines
    }

    /// The fast path either declines or agrees with serde_json on everything kept.
    fn agrees(line: &str) -> bool {
        let Some(fast) = known_fields(line) else {
            return false;
        };
        let slow = Fields::parse_with_serde(line)
            .unwrap_or_else(|e| panic!("fast path took what serde_json refuses ({e}): {line}"));
        for &key in Key::ALL {
            assert_eq!(fast.get(key), slow.get(key), "{key:?} in {line}");
        }
        assert_eq!(fast.has_clawwatch, slow.has_clawwatch);
        assert_eq!(fast.members, slow.members);
        true
    }

    #[test]
    fn the_fast_path_reads_the_samples_as_serde_json_does() {
        let lines: Vec<_> = sample_lines()
            .into_iter()
            .filter(|l| std::str::from_utf8(l).is_ok() && l.trim_ascii().starts_with(b"{"))
            .collect();
        assert!(
            lines.len() > 500,
            "only {} sample records found",
            lines.len()
        );
        let fast = lines
            .iter()
            .filter(|l| agrees(std::str::from_utf8(l.trim_ascii()).unwrap()))
            .count();
        // Declining is allowed (escapes, nested values), but it must be the exception.
        assert!(
            fast * 10 >= lines.len() * 9,
            "the fast path took only {fast} of {} records",
            lines.len()
        );
    }

    #[test]
    fn the_fast_path_agrees_on_damaged_records() {
        let lines = sample_lines();
        let mut damaged = 0;
        for line in lines.iter().filter(|l| l.len() > 2).take(400) {
            for cut in (0..line.len()).step_by(7) {
                // Truncated, a byte flipped to each JSON-significant character, a byte dropped.
                let mut variants = vec![line[..cut].to_vec()];
                for c in [
                    b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', b'-', b'.', b'e', b' ',
                    b'u',
                ] {
                    let mut v = line.clone();
                    v[cut] = c;
                    variants.push(v);
                }
                let mut dropped = line.clone();
                dropped.remove(cut);
                variants.push(dropped);
                for v in variants.iter().filter_map(|v| std::str::from_utf8(v).ok()) {
                    damaged += 1;
                    if known_fields(v).is_none() {
                        continue;
                    }
                    agrees(v);
                }
            }
        }
        assert!(damaged > 10_000, "only {damaged} variants tried");
    }

    #[test]
    fn keys_remembered_by_position_are_read_only_when_they_are_the_same() {
        let mut order = super::KeyOrder::new();
        let read = |order: &mut super::KeyOrder, text: &str| {
            let mut fields = Fields::empty();
            assert!(super::read_known_fields(text, &mut fields, order), "{text}");
            let slow = Fields::parse_with_serde(text).unwrap();
            for &key in Key::ALL {
                assert_eq!(fields.get(key), slow.get(key), "{key:?} in {text}");
            }
            assert_eq!(fields.has_clawwatch, slow.has_clawwatch, "{text}");
            assert_eq!(fields.members, slow.members, "{text}");
        };
        let pad = "\"padding_to_leave_32_bytes_after_each_key\":0";
        // Every record starts with the same 16 bytes: one source's key order.
        let first = format!(
            r#"{{"source":"same","src_addr":"10.0.0.1","clawwatch":{{}},"bytes":7,{pad}}}"#
        );
        read(&mut order, &first);
        read(&mut order, &first);
        // The same place, another key: one byte different, one longer, one
        // shorter, one that only starts like it, an unknown one.
        for text in [
            r#"{"source":"same","src_adds":"10.0.0.2","clawwatch":{},"bytes":8,PAD}"#,
            r#"{"source":"same","src_addr_":"10.0.0.3","clawwatch":{},"bytes":9,PAD}"#,
            r#"{"source":"same","src_add":"10.0.0.4","clawwatch":{},"bytes":10,PAD}"#,
            r#"{"source":"same","src_addr\u0041":"10.0.0.5","bytes":11,PAD}"#,
            r#"{"source":"same","dst_addr":"10.0.0.6","clawwatchx":{},"bytes":12,PAD}"#,
            r#"{"source":"same","bytes":13,"src_addr":"10.0.0.7","clawwatch":{},PAD}"#,
            r#"{"bytes":14,"source":"same","src_addr":"10.0.0.8","clawwatch":{},PAD}"#,
        ] {
            let text = text.replace("PAD", pad);
            if text.contains('\\') {
                // An escaped key is serde_json's: the fast path declines.
                assert!(!super::read_known_fields(
                    &text,
                    &mut Fields::empty(),
                    &mut order
                ));
            } else {
                read(&mut order, &text);
            }
            read(&mut order, &first);
        }
        // What lies between a key and its value is remembered with the key:
        // spaced records, then the same with more or less space, then compact.
        for text in [
            r#"{"source":"same","src_addr" : "10.0.0.9","clawwatch" :{},"bytes": 15,PAD}"#,
            r#"{"source":"same","src_addr" : "10.0.0.9","clawwatch" :{},"bytes": 15,PAD}"#,
            r#"{"source":"same","src_addr" :  "10.0.0.9","clawwatch" : {},"bytes":  16,PAD}"#,
            r#"{"source":"same","src_addr"  : "10.0.0.9","clawwatch":{},"bytes":17 ,PAD}"#,
            r#"{"source":"same","src_addr" :"10.0.0.9","clawwatch" :{},"bytes":-18,PAD}"#,
        ] {
            read(&mut order, &text.replace("PAD", pad));
        }
        read(&mut order, &first);
        read(&mut order, &first);
        // Names longer than the four words are not remembered, and still read.
        let long = format!(r#"{{"{}":1,"bytes":2,{pad}}}"#, "k".repeat(40));
        read(&mut order, &long);
        read(&mut order, &long);
    }

    #[test]
    fn each_source_keeps_its_key_order_while_others_interleave() {
        let flow = r#"{"type":"IPFIX","time_flow_start_ns":1795531317023871167,"src_addr":"10.20.5.4","dst_addr":"93.184.216.34","dst_port":443}"#;
        let dns = r#"{"type":"dns","ts":1795531008,"client_ip":"10.20.3.184","qname":"api.internal.example.net","qtype":"A"}"#;
        let read = |order: &mut super::KeyOrder, text: &str| {
            assert!(super::read_known_fields(text, &mut Fields::empty(), order));
        };
        let mut order = super::KeyOrder::new();
        read(&mut order, flow);
        read(&mut order, dns);
        // Both sources' keys stay remembered (those with 32 bytes after them).
        assert_eq!(order.remembered(flow), 5);
        assert_eq!(order.remembered(dns), 5);
        read(&mut order, flow);
        assert_eq!(order.remembered(flow), 5);
        // Four other sources later, the flows' order has made way.
        for other in ["{\"a\":1}", "{\"b\":1}", "{\"c\":1}", "{\"d\":1}"] {
            read(&mut order, other);
        }
        assert_eq!(order.remembered(flow), 0);
        // One-off reads remember nothing.
        let mut off = super::KeyOrder::off();
        read(&mut off, flow);
        assert_eq!(off.remembered(flow), 0);
    }

    #[test]
    fn hand_picked_edges_agree_or_decline() {
        for text in [
            r#"{"dst_port":01}"#,
            r#"{"dst_port":-0}"#,
            r#"{"dst_port":18446744073709551615}"#,
            r#"{"dst_port":99999999999999999999}"#,
            r#"{"bytes":1.5e3,"qname":"a\"b","x":"\ud800"}"#,
            r#"{"qname":"\u00e9t\u00e9"}"#,
            r#"{"noise":[[[[{"a":[1,{"b":null}]}]]]],"ts":"2026-01-01T00:00:00Z"}"#,
            r#"{"noise":[1 2]}"#,
            r#"{"noise":{"a" 1}}"#,
            r#"{"noise":{"a":1,}}"#,
            r#"{"a\u0062":1}"#,
            r#"{"ts":1}x"#,
            r#" { "ts" : 1 , "src_addr" : "10.0.0.1" } "#,
            r#"{"dst_port":1,"dst_port":"two"}"#,
            r#"{"clawwatch":{"verdict":"allow"},"ts":2}"#,
        ] {
            // Declined: serde_json's path decides, as for any record.
            if known_fields(text).is_some() {
                assert!(agrees(text), "{text}");
            }
        }
        assert!(known_fields(r#" { "ts" : 1 , "src_addr" : "10.0.0.1" } "#).is_some());
        // Every JSON whitespace character is stepped over on the fast path.
        let spaced = " {\t\"ts\"\r\n:\n1 ,\r\"src_addr\" :\t\"10.0.0.1\" } ";
        assert!(known_fields(spaced).is_some_and(|_| agrees(spaced)));
        assert!(known_fields(r#"{"ts":1}x"#).is_none());
        assert!(known_fields(r#"{"noise":[1 2]}"#).is_none());
    }

    #[test]
    fn numbers_of_every_length_read_as_serde_json_reads_them() {
        let mut x: u64 = 9;
        for len in 1..=24 {
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Digits, now and then a leading zero or a non-digit inside.
                let mut digits: String = (0..len)
                    .map(|k| char::from(b'0' + ((x >> (k % 60)) % 10) as u8))
                    .collect();
                if x.is_multiple_of(7) {
                    let at = (x >> 20) as usize % len;
                    digits
                        .replace_range(at..=at, [":", "/", ".", "e", "a"][(x >> 30) as usize % 5]);
                }
                for tail in ["", "}", ".5", "e3", ",\"ts\":1"] {
                    let text = format!("{{\"bytes\":{digits}{tail}}}");
                    if known_fields(&text).is_some() {
                        assert!(agrees(&text), "{text}");
                    }
                }
            }
        }
        // Eight bytes at a time, checked against the plain loop: every
        // length, then a non-digit (each side of the digits) or the end.
        for len in 0..=20 {
            for tail in ["", ":", "/", "\u{0}", "\u{b0}", "a", "9"] {
                let digits: String = (0..len).map(|k| char::from(b'1' + (k % 9) as u8)).collect();
                let text = format!("{digits}{tail}xxxxxxxx");
                let all = text.bytes().take_while(u8::is_ascii_digit).count();
                let wanted = text[..all].bytes().fold(0u64, |n, d| {
                    n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
                });
                for cut in [all, text.len()] {
                    assert_eq!(
                        super::digit_run(&text.as_bytes()[..cut], 0),
                        (wanted, all),
                        "{:?}",
                        &text[..cut]
                    );
                }
            }
        }
    }
}
