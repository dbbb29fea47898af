//! The `clawwatch` object every record leaves with (DESIGN §5).
//!
//! It is appended to the record's original bytes instead of re-serialising the
//! record: that is the hot path, and it keeps the record exactly as it came.

use crate::name::Name;
use crate::record::Stream;
use crate::registry::{Agent, AgentInfo};
use crate::rules::Finding;
use crate::text::{Word, write_str};
use crate::time::Timestamp;
use base64::Engine as _;
use std::rc::Rc;

/// The name a record's own top-level `clawwatch` key is kept under.
pub const PREVIOUS_NOTE_KEY: &str = "clawwatch_previous";

/// Where the top-level keys spelt exactly `name` (quotes included) are in one
/// valid JSON object: a single pass that follows strings and nesting.
fn top_level_keys_named(record: &[u8], name: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut expecting_key = false;
    let mut i = 0;
    while i < record.len() {
        match record[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < record.len() && record[i] != b'"' {
                    i += if record[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && expecting_key && record.get(start..=i) == Some(name) {
                    found.push(start..i + 1);
                }
                expecting_key = false;
            }
            b'{' => {
                depth += 1;
                expecting_key = depth == 1;
            }
            b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => expecting_key = depth == 1,
            _ => {}
        }
        i += 1;
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Alert,
    /// Unplanned, but approved by the allow-list or a grant: an audit event.
    Approved,
    Unattributed,
    NotApplicable,
    Error,
}

impl Verdict {
    /// Every verdict, in declaration order (`verdict as usize` indexes it).
    pub const ALL: [Verdict; 6] = [
        Verdict::Allow,
        Verdict::Alert,
        Verdict::Approved,
        Verdict::Unattributed,
        Verdict::NotApplicable,
        Verdict::Error,
    ];

    /// Each verdict's name, in declaration order.
    const NAMES: [&'static str; Verdict::ALL.len()] = [
        "allow",
        "alert",
        "approved",
        "unattributed",
        "not_applicable",
        "error",
    ];

    pub fn as_str(self) -> &'static str {
        Verdict::NAMES[self as usize]
    }

    /// [`Verdict::as_str`] as a [`Word`], for the note on every record.
    pub(crate) fn word(self) -> &'static Word {
        const WORDS: [Word; Verdict::ALL.len()] = crate::text::words(Verdict::NAMES);
        &WORDS[self as usize]
    }
}

/// A finding with its place in an incident.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reported {
    pub finding: Finding,
    pub new: bool,
    pub count: u64,
    /// Held back by a flood limit: it opened no incident (a summary record counts it).
    #[serde(default)]
    pub suppressed: bool,
}

/// Everything clawwatch says about one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub stream: Stream,
    pub ts: Option<Timestamp>,
    pub agent: Option<Rc<AgentInfo>>,
    /// For flows: `outbound`, `inbound` (to an agent) or `return` (an agent answering).
    pub direction: Option<&'static str>,
    pub verdict: Verdict,
    pub findings: Vec<Reported>,
    /// Why the record could not be judged (verdict `error`).
    pub error: Option<String>,
    /// Anything else worth knowing (unknown kind, unknown agent, unknown profile).
    pub note: Option<String>,
    /// Findings that came due with event time since the previous record
    /// (a missed heartbeat, a silent overrun): they ride on this one.
    pub due: Vec<DueFinding>,
}

/// A finding no record caused: it came due when event time passed a deadline.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DueFinding {
    pub reported: Reported,
    pub agent: Option<Name>,
    /// When it came due (event time).
    pub ts: Timestamp,
}

impl Note {
    pub fn new(stream: Stream, verdict: Verdict) -> Note {
        Note {
            stream,
            ts: None,
            agent: None,
            direction: None,
            verdict,
            findings: Vec::new(),
            error: None,
            note: None,
            due: Vec::new(),
        }
    }

    /// Attributes the record to `agent`.
    pub fn attribute(&mut self, agent: &Agent) {
        self.agent = Some(agent.info.clone());
    }

    /// Writes `"clawwatch":{...}` (without surrounding braces or commas).
    pub fn write_member(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\"clawwatch\":{\"stream\":\"");
        self.stream.word().write(out);
        out.push(b'"');
        if let Some(ts) = self.ts {
            out.extend_from_slice(b",\"ts\":\"");
            ts.write_rfc3339_bytes(out);
            out.push(b'"');
        }
        if let Some(a) = &self.agent {
            out.extend_from_slice(b",\"agent\":");
            out.extend_from_slice(a.note_json());
        }
        if let Some(d) = self.direction {
            out.extend_from_slice(b",\"direction\":\"");
            out.extend_from_slice(d.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"verdict\":\"");
        self.verdict.word().write(out);
        out.push(b'"');
        write_list(out, b",\"findings\":[", &self.findings, |out, r| {
            write_reported(out, r);
            out.push(b'}');
        });
        write_list(out, b",\"due\":[", &self.due, |out, d| {
            write_reported(out, &d.reported);
            if let Some(agent) = &d.agent {
                out.extend_from_slice(b",\"agent\":");
                write_str(out, agent);
            }
            out.extend_from_slice(b",\"ts\":\"");
            d.ts.write_rfc3339_bytes(out);
            out.extend_from_slice(b"\"}");
        });
        if let Some(e) = &self.error {
            out.extend_from_slice(b",\"error\":");
            write_str(out, e);
        }
        if let Some(n) = &self.note {
            out.extend_from_slice(b",\"note\":");
            write_str(out, n);
        }
        out.push(b'}');
    }

    /// The record with the note appended as its last member. `record` must be
    /// one JSON object (already validated), without surrounding whitespace.
    /// Its bytes are kept exactly, but for a top-level `clawwatch` key it
    /// already had (it passed through clawwatch before, or an agent wrote one):
    /// that key is renamed [`PREVIOUS_NOTE_KEY`], its value untouched, so the
    /// object never carries two notes and the one it had is not lost.
    pub fn append_to(&self, record: &[u8], replaces_existing: bool, out: &mut Vec<u8>) {
        let mut kept = 0;
        if replaces_existing {
            for key in top_level_keys_named(record, b"\"clawwatch\"") {
                out.extend_from_slice(&record[kept..key.start]);
                out.extend_from_slice(b"\"");
                out.extend_from_slice(PREVIOUS_NOTE_KEY.as_bytes());
                out.extend_from_slice(b"\"");
                kept = key.end;
            }
        }
        let record = &record[kept..];
        let close = record.len() - 1;
        let body = &record[..close];
        out.extend_from_slice(body);
        // `{}` and `{ }` take the note as their only member.
        if body[1..].iter().any(|b| !b.is_ascii_whitespace()) {
            out.push(b',');
        }
        self.write_member(out);
        out.push(b'}');
    }

    /// A record that is not a JSON object, wrapped so the output stays one JSON
    /// object per line and nothing is lost: text as `raw`, other bytes as `raw_base64`.
    pub fn wrap_raw(&self, record: &[u8], out: &mut Vec<u8>) {
        match std::str::from_utf8(record) {
            Ok(text) => {
                out.extend_from_slice(b"{\"raw\":");
                write_str(out, text);
            }
            Err(_) => {
                out.extend_from_slice(b"{\"raw_base64\":\"");
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(record)
                        .as_bytes(),
                );
                out.push(b'"');
            }
        }
        out.push(b',');
        self.write_member(out);
        out.push(b'}');
    }
}

/// `opening` (`,"name":[`), each item written by `each`, comma-separated, and
/// `]`; nothing at all for no items.
fn write_list<T>(
    out: &mut Vec<u8>,
    opening: &[u8],
    items: &[T],
    mut each: impl FnMut(&mut Vec<u8>, &T),
) {
    if items.is_empty() {
        return;
    }
    out.extend_from_slice(opening);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.push(b']');
}

/// `{"rule":…,"summary":…` of a finding, left open for more members.
fn write_reported(out: &mut Vec<u8>, r: &Reported) {
    out.extend_from_slice(b"{\"rule\":\"");
    out.extend_from_slice(r.finding.rule.id.as_bytes());
    out.extend_from_slice(b"\",\"severity\":\"");
    out.extend_from_slice(r.finding.severity.as_str().as_bytes());
    out.extend_from_slice(b"\",\"incident\":");
    write_str(out, &r.finding.incident);
    out.extend_from_slice(if r.new {
        b",\"new\":true,\"count\":"
    } else {
        b",\"new\":false,\"count\":"
    });
    write_u64(out, r.count);
    out.extend_from_slice(b",\"summary\":");
    write_str(out, &r.finding.summary);
    if !r.finding.alerting {
        out.extend_from_slice(b",\"alerting\":false");
    }
    if r.suppressed {
        out.extend_from_slice(b",\"suppressed\":true");
    }
}

fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(crate::text::Decimal::new(v).as_str().as_bytes());
}

/// Whether an incident record reports an opening or a closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentStatus {
    Open,
    Closed,
    /// Closed early: forgotten to make room under `max_incidents`.
    Evicted,
    /// A flood limit's summary: `count` new incidents held back in a minute.
    Suppressed,
}

/// A record of its own about an incident (stream `incident`) or an approval
/// (stream `audit`), for carriers that allow more records out than in.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    pub incident: crate::incidents::Incident,
    pub status: IncidentStatus,
    /// Event time of the opening finding, or of the end of the quiet period.
    pub ts: Timestamp,
}

impl IncidentRecord {
    /// Audit records are approvals; everything else is an incident.
    pub fn stream(&self) -> Stream {
        if self.incident.rule.id == crate::rules::approval_granted::RULE.id {
            Stream::Audit
        } else {
            Stream::Incident
        }
    }

    pub fn stream_and_verdict(&self) -> (Stream, Verdict) {
        match self.stream() {
            Stream::Audit => (Stream::Audit, Verdict::Approved),
            stream if self.incident.alerting => (stream, Verdict::Alert),
            stream => (stream, Verdict::Allow),
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let i = &self.incident;
        let (stream, verdict) = self.stream_and_verdict();
        let mut note = Note::new(stream, verdict);
        note.ts = Some(self.ts);
        note.agent = i.agent.clone();
        let mut member = Vec::with_capacity(512);
        note.write_member(&mut member);
        member.pop(); // reopen the clawwatch object to add the incident
        member.extend_from_slice(b",\"incident\":{\"id\":");
        write_str(&mut member, &i.id);
        member.extend_from_slice(b",\"rule\":\"");
        member.extend_from_slice(i.rule.id.as_bytes());
        member.extend_from_slice(b"\",\"severity\":\"");
        member.extend_from_slice(i.severity.as_str().as_bytes());
        member.extend_from_slice(match self.status {
            IncidentStatus::Open => b"\",\"status\":\"open\",\"count\":".as_slice(),
            IncidentStatus::Closed => b"\",\"status\":\"closed\",\"count\":".as_slice(),
            IncidentStatus::Suppressed => b"\",\"status\":\"suppressed\",\"count\":".as_slice(),
            IncidentStatus::Evicted => {
                b"\",\"status\":\"closed\",\"closed_by\":\"max_incidents\",\"count\":".as_slice()
            }
        });
        write_u64(&mut member, i.count);
        member.extend_from_slice(b",\"first_seen\":\"");
        i.first_seen.write_rfc3339_bytes(&mut member);
        member.extend_from_slice(b"\",\"last_seen\":\"");
        i.last_seen.write_rfc3339_bytes(&mut member);
        member.extend_from_slice(b"\",\"summary\":");
        write_str(&mut member, &i.summary);
        member.extend_from_slice(b"}}");
        out.push(b'{');
        out.extend_from_slice(&member);
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_and_verdicts_are_written_by_name() {
        for (i, stream) in Stream::ALL.into_iter().enumerate() {
            assert_eq!(stream as usize, i);
            let mut out = Vec::new();
            stream.word().write(&mut out);
            assert_eq!(out, stream.as_str().as_bytes());
        }
        for (i, verdict) in Verdict::ALL.into_iter().enumerate() {
            assert_eq!(verdict as usize, i);
            let mut out = Vec::new();
            verdict.word().write(&mut out);
            assert_eq!(out, verdict.as_str().as_bytes());
        }
        assert_eq!(Stream::Heartbeat.as_str(), "heartbeat");
        assert_eq!(Verdict::NotApplicable.as_str(), "not_applicable");
    }

    fn parse(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
    }

    #[test]
    fn escapes_control_characters_and_quotes() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(
            parse(&out),
            serde_json::Value::String("a\"b\\c\nd\u{1}é".into())
        );
    }

    #[test]
    fn appends_to_objects_of_any_shape() {
        let note = Note::new(Stream::Other, Verdict::NotApplicable);
        for record in [
            &br#"{"a":1}"#[..],
            b"{}",
            b"{ }",
            br#"{"clawwatch":{"old":true},"b":[1]}"#,
        ] {
            let mut out = Vec::new();
            note.append_to(record, record.starts_with(b"{\"clawwatch"), &mut out);
            let v = parse(&out);
            assert_eq!(
                v["clawwatch"]["verdict"],
                "not_applicable",
                "{}",
                String::from_utf8_lossy(&out)
            );
            assert!(v["clawwatch"].get("old").is_none());
        }
    }

    /// The record's bytes stay exactly as they came, whatever they hold; a
    /// `clawwatch` key it had is kept, renamed, byte for byte.
    #[test]
    fn originals_are_kept_byte_for_byte_and_an_earlier_note_is_renamed() {
        let note = Note::new(Stream::Other, Verdict::NotApplicable);
        let mut member = Vec::new();
        note.write_member(&mut member);
        let member = String::from_utf8(member).unwrap();
        for (record, expected) in [
            (
                r#"{"x":123456789012345678901234567890,"d":1e999,"k":1,"k":2}"#.to_string(),
                format!(r#"{{"x":123456789012345678901234567890,"d":1e999,"k":1,"k":2,{member}}}"#),
            ),
            (
                r#"{"clawwatch":{"verdict":"allow","n":1.50},"a":{"clawwatch":1},"s":""clawwatch""}"#.to_string(),
                format!(
                    r#"{{"clawwatch_previous":{{"verdict":"allow","n":1.50}},"a":{{"clawwatch":1}},"s":""clawwatch"",{member}}}"#
                ),
            ),
            (
                r#"{ "a" : [ "clawwatch" , {"clawwatch":2} ] , "clawwatch" : 7 }"#.to_string(),
                format!(r#"{{ "a" : [ "clawwatch" , {{"clawwatch":2}} ] , "clawwatch_previous" : 7 ,{member}}}"#),
            ),
        ] {
            let mut out = Vec::new();
            note.append_to(record.as_bytes(), record.contains("\"clawwatch\" :") || record.starts_with("{\"clawwatch\""), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn wraps_text_and_binary_without_loss() {
        let note = Note::new(Stream::Other, Verdict::Error);
        let mut out = Vec::new();
        note.wrap_raw(b"not json \"at all\"", &mut out);
        assert_eq!(parse(&out)["raw"], "not json \"at all\"");
        let mut out = Vec::new();
        note.wrap_raw(&[0xff, 0xfe, b'x'], &mut out);
        assert_eq!(parse(&out)["raw_base64"], "//54");
    }
}

/// Tags every NDJSON line of `batch` with verdict `error` and `why` without
/// judging it: what a host emits for a batch the engine could not process, so
/// that even then no record is lost and the output stays line-for-line.
pub fn tag_ndjson_as_error(batch: &[u8], why: &str, out: &mut Vec<u8>) {
    let mut note = Note::new(Stream::Other, Verdict::Error);
    note.error = Some(why.to_string());
    let mut rest = batch;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let trimmed = line.trim_ascii();
        if crate::record::fields::is_json_object(trimmed) {
            note.append_to(trimmed, true, out);
        } else {
            note.wrap_raw(line, out);
        }
        out.push(b'\n');
        rest = next;
    }
}

#[cfg(test)]
mod pass_through_tests {
    #[test]
    fn every_line_is_tagged_and_kept() {
        let mut out = Vec::new();
        super::tag_ndjson_as_error(
            b"{\"a\":1}\nnot json\n\n{\"b\":2}",
            "engine trapped",
            &mut out,
        );
        let lines: Vec<serde_json::Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines.iter().all(|l| l["clawwatch"]["verdict"] == "error"
                && l["clawwatch"]["error"] == "engine trapped")
        );
        assert_eq!(lines[0]["a"], 1);
        assert_eq!(lines[1]["raw"], "not json");
    }
}
