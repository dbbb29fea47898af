//! The Fluent forward protocol (v1) on the wire: what Fluent Bit's and
//! Fluentd's `forward` outputs send and what their `forward` inputs (and
//! Vector's `fluent` source) receive. All four modes are read: Message,
//! Forward, PackedForward and CompressedPackedForward (gzip); times as
//! integers or EventTime (ext type 0); entries as `[time, record]` or Fluent
//! Bit's `[[time, metadata], record]`. Shared by the forward source and sink;
//! bounded so hostile input costs bounded memory.

use anyhow::{Context, Result, anyhow, bail};
use rmpv::Value;
use std::io::Cursor;

/// Bounds one connection's unread bytes: a message larger than this is refused.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime {
    pub secs: u32,
    pub nanos: u32,
}

impl EventTime {
    pub fn now() -> EventTime {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        EventTime {
            secs: d.as_secs() as u32,
            nanos: d.subsec_nanos(),
        }
    }

    fn decode(v: &Value) -> Result<EventTime> {
        match v {
            Value::Integer(i) => Ok(EventTime {
                secs: i
                    .as_u64()
                    .and_then(|s| u32::try_from(s).ok())
                    .ok_or_else(|| anyhow!("time {i} out of range"))?,
                nanos: 0,
            }),
            Value::F64(f) if *f >= 0.0 => Ok(EventTime {
                secs: *f as u32,
                nanos: ((f.fract()) * 1e9) as u32,
            }),
            Value::Ext(0, bytes) if bytes.len() == 8 => Ok(EventTime {
                secs: u32::from_be_bytes(bytes[0..4].try_into()?),
                nanos: u32::from_be_bytes(bytes[4..8].try_into()?),
            }),
            // Fluent Bit's v2 entries: [[time, metadata], record].
            Value::Array(parts) if !parts.is_empty() => EventTime::decode(&parts[0]),
            other => bail!("not an event time: {other}"),
        }
    }

    fn encode(self) -> Value {
        let mut bytes = self.secs.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.nanos.to_be_bytes());
        Value::Ext(0, bytes)
    }
}

/// One forward message, whatever its mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub tag: String,
    pub entries: Vec<(EventTime, Value)>,
    /// The chunk id to ack, when the sender asked for an ack.
    pub chunk: Option<String>,
}

/// Bounds a packed/compressed chunk once expanded, so a gzip bomb costs bounded memory.
const MAX_EXPANDED: usize = MAX_MESSAGE_BYTES;

pub fn decode_message(v: Value) -> Result<Message> {
    let Value::Array(mut parts) = v else {
        bail!("a forward message is an array")
    };
    if parts.len() < 2 {
        bail!("a forward message has at least a tag and its events");
    }
    let tag = match &parts[0] {
        Value::String(s) => s
            .as_str()
            .ok_or_else(|| anyhow!("tag is not UTF-8"))?
            .to_string(),
        other => bail!("tag must be a string, found {other}"),
    };
    let option_at = |parts: &[Value], i: usize| parts.get(i).cloned().unwrap_or(Value::Nil);
    let (entries, option) = match &parts[1] {
        Value::Array(items) => (
            items.iter().map(decode_entry).collect::<Result<Vec<_>>>()?,
            option_at(&parts, 2),
        ),
        Value::Binary(_) | Value::String(_) => {
            let option = option_at(&parts, 2);
            let packed = match std::mem::replace(&mut parts[1], Value::Nil) {
                Value::Binary(b) => b,
                Value::String(s) => s.into_bytes(),
                _ => unreachable!(),
            };
            let raw = match map_get(&option, "compressed").and_then(Value::as_str) {
                Some("gzip") => crate::source::budget::gunzip_within(&packed, MAX_EXPANDED)
                    .context("a CompressedPackedForward chunk")?,
                Some(other) => bail!("unknown compression `{other}`"),
                None => packed,
            };
            (decode_stream(&raw)?, option)
        }
        _ => {
            let time = EventTime::decode(&parts[1])?;
            let record = parts
                .get(2)
                .cloned()
                .ok_or_else(|| anyhow!("a Message-mode event has no record"))?;
            (vec![(time, record)], option_at(&parts, 3))
        }
    };
    let chunk = map_get(&option, "chunk")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Message {
        tag,
        entries,
        chunk,
    })
}

fn decode_entry(v: &Value) -> Result<(EventTime, Value)> {
    match v {
        Value::Array(pair) if pair.len() == 2 => {
            Ok((EventTime::decode(&pair[0])?, pair[1].clone()))
        }
        other => bail!("an entry is [time, record], found {other}"),
    }
}

fn decode_stream(mut raw: &[u8]) -> Result<Vec<(EventTime, Value)>> {
    let mut entries = Vec::new();
    while !raw.is_empty() {
        if entries.len() as u64 >= LIMITS.max_entries {
            bail!(
                "a chunk of more than {} entries; split it into smaller chunks",
                LIMITS.max_entries
            );
        }
        let len = value_len(raw, LIMITS)?.ok_or_else(|| anyhow!("a packed entry cut short"))?;
        let v = rmpv::decode::read_value(&mut Cursor::new(&raw[..len]))
            .context("decoding a packed entry")?;
        entries.push(decode_entry(&v)?);
        raw = &raw[len..];
    }
    Ok(entries)
}

fn map_get<'v>(map: &'v Value, key: &str) -> Option<&'v Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// What one forward message may hold, whatever its bytes claim: entries per
/// message, msgpack values in all, and nesting. Checked before anything is
/// built from the bytes, so a small hostile message cannot cost gigabytes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_entries: u64,
    pub max_values: u64,
    pub max_depth: usize,
}

pub const LIMITS: Limits = Limits {
    max_bytes: MAX_MESSAGE_BYTES,
    max_entries: 100_000,
    max_values: 4_000_000,
    max_depth: 128,
};

/// The length of the first msgpack value in `buf`: `None` while it is
/// incomplete, an error when it is malformed or breaks `limits`. One pass,
/// nothing allocated but a counter per nesting level.
pub fn value_len(buf: &[u8], limits: Limits) -> Result<Option<usize>> {
    // Values still to read at each open nesting level (the outermost first).
    let mut levels: Vec<u64> = vec![1];
    let mut values = 0u64;
    let mut at = 0usize;
    let be = |at: usize, n: usize| -> Option<u64> {
        let bytes = buf.get(at..at + n)?;
        Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    while let Some(remaining) = levels.last_mut() {
        if *remaining == 0 {
            levels.pop();
            continue;
        }
        *remaining -= 1;
        let Some(&marker) = buf.get(at) else {
            return Ok(None);
        };
        values += 1;
        // (bytes of header after the marker, payload bytes, values contained)
        let (header, payload, contains): (usize, u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0, 0),
            0x80..=0x8f => (0, 0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, 0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (0, u64::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (1, 0, 0),
            0xc5 | 0xda => (2, 0, 0),
            0xc6 | 0xdb => (4, 0, 0),
            0xc7 => (2, 0, 0),
            0xc8 => (3, 0, 0),
            0xc9 => (5, 0, 0),
            0xca => (0, 4, 0),
            0xcb => (0, 8, 0),
            0xcc | 0xd0 => (0, 1, 0),
            0xcd | 0xd1 => (0, 2, 0),
            0xce | 0xd2 => (0, 4, 0),
            0xcf | 0xd3 => (0, 8, 0),
            0xd4 => (0, 2, 0),
            0xd5 => (0, 3, 0),
            0xd6 => (0, 5, 0),
            0xd7 => (0, 9, 0),
            0xd8 => (0, 17, 0),
            0xdc | 0xde => (2, 0, 0),
            0xdd | 0xdf => (4, 0, 0),
            0xc1 => bail!("not msgpack: marker 0xc1 at byte {at}"),
        };
        // Lengths that follow the marker (str, bin, ext, array, map).
        let (payload, contains) = match marker {
            0xc4..=0xc6 | 0xd9..=0xdb => {
                let Some(n) = be(at + 1, header) else {
                    return Ok(None);
                };
                (n, 0)
            }
            0xc7..=0xc9 => {
                let Some(n) = be(at + 1, header - 1) else {
                    return Ok(None);
                };
                (n + 1, 0) // the ext type byte is in the header count
            }
            0xdc | 0xdd => {
                let Some(n) = be(at + 1, header) else {
                    return Ok(None);
                };
                (0, n)
            }
            0xde | 0xdf => {
                let Some(n) = be(at + 1, header) else {
                    return Ok(None);
                };
                (0, 2 * n)
            }
            _ => (payload, contains),
        };
        let header = match marker {
            0xc7..=0xc9 => header - 1, // the type byte counted in payload
            _ => header,
        };
        at = at
            .checked_add(1 + header)
            .and_then(|a| a.checked_add(usize::try_from(payload).ok()?))
            .ok_or_else(|| anyhow!("a msgpack length beyond this machine's memory"))?;
        if at > limits.max_bytes {
            bail!("a message longer than {} bytes", limits.max_bytes);
        }
        if contains > 0 {
            if contains > 2 * limits.max_entries || values + contains > limits.max_values {
                bail!(
                    "a message of more than {} entries or {} values; split it into smaller chunks",
                    limits.max_entries,
                    limits.max_values
                );
            }
            if levels.len() >= limits.max_depth {
                bail!("msgpack nested deeper than {} levels", limits.max_depth);
            }
            levels.push(contains);
        }
    }
    Ok((at <= buf.len()).then_some(at))
}

/// Takes one complete msgpack value off the front of `buf`, if it holds one
/// within [`LIMITS`]: nothing is built until the whole value is there.
pub fn take_value(buf: &mut Vec<u8>) -> Result<Option<Value>> {
    let Some(len) = value_len(buf, LIMITS)? else {
        return Ok(None);
    };
    let v = rmpv::decode::read_value(&mut Cursor::new(&buf[..len]))
        .map_err(|e| anyhow!("not msgpack: {e}"))?;
    buf.drain(..len);
    Ok(Some(v))
}

/// A msgpack record as the JSON object the engine reads.
/// What travels instead of an enriched line msgpack cannot carry as a map
/// (nested deeper than the parser goes, a number beyond f64): the line whole,
/// as text in `raw`, with its note (read from the end of the line, where
/// clawwatch wrote it) saying why, so its verdict still routes.
pub fn uncarried(line: &[u8], why: &serde_json::Error) -> serde_json::Value {
    let text = String::from_utf8_lossy(line);
    let mut note = text
        .rfind("\"clawwatch\":{")
        .and_then(|at| text.get(at + "\"clawwatch\":".len()..text.len().saturating_sub(1)))
        .and_then(|member| serde_json::from_str::<serde_json::Value>(member).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({ "stream": "other", "verdict": "error" }));
    note["carrier_error"] = format!(
        "the forward output cannot carry this record as a map ({why}); it travels whole, as text, in `raw`"
    )
    .into();
    serde_json::json!({ "raw": text, "clawwatch": note })
}

pub fn record_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => i
            .as_u64()
            .map(J::from)
            .or_else(|| i.as_i64().map(J::from))
            .unwrap_or(J::Null),
        Value::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(J::Null, J::Number),
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.as_str().map_or_else(
            || String::from_utf8_lossy(s.as_bytes()).into_owned(),
            str::to_string,
        )),
        Value::Binary(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(items) => J::Array(items.iter().map(record_to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().map_or_else(|| k.to_string(), str::to_string),
                        record_to_json(v),
                    )
                })
                .collect(),
        ),
        Value::Ext(_, bytes) => J::String(String::from_utf8_lossy(bytes).into_owned()),
    }
}

pub fn json_to_record(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => n
            .as_u64()
            .map(Value::from)
            .or_else(|| n.as_i64().map(Value::from))
            .unwrap_or_else(|| Value::F64(n.as_f64().unwrap_or(0.0))),
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::Array(items.iter().map(json_to_record).collect()),
        J::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_to_record(v)))
                .collect(),
        ),
    }
}

/// A Forward-mode message asking for an ack of `chunk`.
pub fn encode_forward(tag: &str, entries: &[(EventTime, Value)], chunk: &str) -> Vec<u8> {
    let events = entries
        .iter()
        .map(|(t, r)| Value::Array(vec![t.encode(), r.clone()]))
        .collect();
    let option = Value::Map(vec![
        (Value::from("chunk"), Value::from(chunk)),
        (Value::from("size"), Value::from(entries.len() as u64)),
    ]);
    let msg = Value::Array(vec![Value::from(tag), Value::Array(events), option]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &msg).expect("writing to a Vec");
    out
}

/// `{"ack": chunk}`.
pub fn encode_ack(chunk: &str) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(
        &mut out,
        &Value::Map(vec![(Value::from("ack"), Value::from(chunk))]),
    )
    .expect("writing to a Vec");
    out
}

/// The chunk id an ack response acknowledges.
pub fn ack_of(v: &Value) -> Option<&str> {
    map_get(v, "ack").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    fn record(n: i64) -> Value {
        Value::Map(vec![(Value::from("n"), Value::from(n))])
    }

    /// The scanner agrees with rmpv on where every kind of value ends, and
    /// says "not yet" for every cut short.
    #[test]
    fn value_len_finds_the_end_of_every_kind_of_value() {
        let values = vec![
            Value::from(7),
            Value::from(-3),
            Value::from(300),
            Value::from(-70_000),
            Value::from(u64::MAX),
            Value::from(1.5f32),
            Value::from(2.5f64),
            Value::Nil,
            Value::from(true),
            Value::from("x".repeat(40)),
            Value::from("y".repeat(300)),
            Value::from("z".repeat(70_000)),
            Value::Binary(vec![1; 300]),
            Value::Ext(0, vec![0; 8]),
            Value::Ext(5, vec![0; 3]),
            Value::Ext(5, vec![0; 300]),
            Value::Array((0..20).map(Value::from).collect()),
            Value::Map((0..20).map(|i| (Value::from(i), record(i))).collect()),
        ];
        for v in values {
            let mut bytes = pack(&v);
            let len = bytes.len();
            for cut in 0..len {
                assert_eq!(
                    value_len(&bytes[..cut], LIMITS).unwrap(),
                    None,
                    "{v} cut at {cut}"
                );
            }
            bytes.extend_from_slice(&[0x01, 0x02]);
            assert_eq!(value_len(&bytes, LIMITS).unwrap(), Some(len), "{v}");
        }
    }

    /// A small message claiming a million entries, or nested without end, is
    /// refused before anything is built from it.
    #[test]
    fn value_len_refuses_what_would_cost_unbounded_memory() {
        let many = pack(&Value::Array(vec![Value::from(1); 200_001]));
        assert!(value_len(&many, LIMITS).is_err());
        // A header claiming 4 billion entries, and nothing behind it.
        assert!(value_len(&[0xdd, 0xff, 0xff, 0xff, 0xff], LIMITS).is_err());
        let deep = [vec![0x91u8; 1000], vec![0x01]].concat();
        assert!(value_len(&deep, LIMITS).is_err());
        // A string claiming 3 GB.
        assert!(value_len(&[0xdb, 0xc0, 0x00, 0x00, 0x00], LIMITS).is_err());
    }

    #[test]
    fn every_mode_decodes_to_the_same_entries() {
        let t = EventTime {
            secs: 1_795_530_600,
            nanos: 250,
        };
        let expected = vec![(t, record(1)), (t, record(2))];
        let forward = Value::Array(vec![
            Value::from("agents"),
            Value::Array(
                expected
                    .iter()
                    .map(|(t, r)| Value::Array(vec![t.encode(), r.clone()]))
                    .collect(),
            ),
        ]);
        assert_eq!(decode_message(forward).unwrap().entries, expected);
        // Fluent Bit's [[time, metadata], record] entries, packed.
        let mut packed = Vec::new();
        for (t, r) in &expected {
            packed.extend(pack(&Value::Array(vec![
                Value::Array(vec![t.encode(), Value::Map(vec![])]),
                r.clone(),
            ])));
        }
        let option = Value::Map(vec![(Value::from("chunk"), Value::from("c1"))]);
        let m = decode_message(Value::Array(vec![
            Value::from("agents"),
            Value::Binary(packed.clone()),
            option,
        ]))
        .unwrap();
        assert_eq!(
            (m.entries.clone(), m.chunk.as_deref()),
            (expected.clone(), Some("c1"))
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &packed).unwrap();
        let option = Value::Map(vec![(Value::from("compressed"), Value::from("gzip"))]);
        assert_eq!(
            decode_message(Value::Array(vec![
                Value::from("agents"),
                Value::Binary(gz.finish().unwrap()),
                option
            ]))
            .unwrap()
            .entries,
            expected
        );
        // Message mode with an integer time.
        let m = decode_message(Value::Array(vec![
            Value::from("agents"),
            Value::from(1_795_530_600u64),
            record(7),
        ]))
        .unwrap();
        assert_eq!(
            m.entries,
            vec![(
                EventTime {
                    secs: 1_795_530_600,
                    nanos: 0
                },
                record(7)
            )]
        );
    }

    #[test]
    fn broken_messages_are_refused_with_a_reason() {
        assert!(
            decode_message(Value::from(3))
                .unwrap_err()
                .to_string()
                .contains("array")
        );
        assert!(
            decode_message(Value::Array(vec![Value::from(1), Value::Array(vec![])]))
                .unwrap_err()
                .to_string()
                .contains("tag")
        );
        let option = Value::Map(vec![(Value::from("compressed"), Value::from("zstd"))]);
        assert!(
            decode_message(Value::Array(vec![
                Value::from("t"),
                Value::Binary(vec![1]),
                option
            ]))
            .unwrap_err()
            .to_string()
            .contains("zstd")
        );
    }

    #[test]
    fn values_are_taken_whole_from_a_stream() {
        let mut buf = pack(&record(1));
        let tail = buf.split_off(3);
        assert_eq!(
            take_value(&mut buf).unwrap(),
            None,
            "incomplete: wait for more"
        );
        buf.extend(tail);
        assert_eq!(take_value(&mut buf).unwrap(), Some(record(1)));
        assert!(buf.is_empty());
    }

    #[test]
    fn records_round_trip_through_json() {
        let r = Value::Map(vec![
            (Value::from("a"), Value::from(-3)),
            (
                Value::from("b"),
                Value::Array(vec![Value::from("x"), Value::Nil, Value::F64(1.5)]),
            ),
        ]);
        assert_eq!(json_to_record(&record_to_json(&r)), r);
        let bytes = encode_forward("t", &[(EventTime { secs: 5, nanos: 6 }, r.clone())], "k");
        let back = decode_message(rmpv::decode::read_value(&mut &bytes[..]).unwrap()).unwrap();
        assert_eq!(
            (
                back.entries[0].1.clone(),
                back.entries[0].0,
                back.chunk.as_deref()
            ),
            (r, EventTime { secs: 5, nanos: 6 }, Some("k"))
        );
    }
}
