//! Field sets for SIEMs: the native `clawwatch` note (DESIGN §5), Elastic
//! Common Schema, or OCSF Detection Findings for incident records.
//!
//! The native set appends the note to the record's own bytes (the hot path).
//! The others re-shape each record, so they need what the engine parsed out of
//! it whatever its input format: the record's normalised [`Endpoints`].

pub mod ecs;
pub mod ocsf;

pub use crate::record::Endpoints;
use std::net::IpAddr;

/// Which fields records leave with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldSet {
    /// The record as it came, plus the `clawwatch` note.
    #[default]
    Native,
    /// Elastic Common Schema: `@timestamp`, `event.*`, `rule.*`,
    /// `gen_ai.agent.*`, `source.*`, `destination.*`, `network.*`,
    /// `dns.question.*`; the record as it came in `event.original`.
    Ecs,
    /// Incident and audit records as OCSF 1.x Detection Findings (class 2004);
    /// every other record as in `Native`.
    Ocsf,
}

impl FieldSet {
    pub const NAMES: [&'static str; 3] = ["native", "ecs", "ocsf"];

    pub fn named(name: &str) -> Option<FieldSet> {
        match name {
            "native" => Some(FieldSet::Native),
            "ecs" => Some(FieldSet::Ecs),
            "ocsf" => Some(FieldSet::Ocsf),
            _ => None,
        }
    }
}

/// What the record was before clawwatch judged it.
pub enum Original<'a> {
    /// A JSON object (validated); `has_clawwatch` when it already carries a note.
    Object { json: &'a [u8], has_clawwatch: bool },
    /// Not a JSON object, or not UTF-8.
    Raw(&'a [u8]),
}

/// RFC 3339 text of an event time.
fn rfc3339(t: crate::time::Timestamp) -> String {
    let mut s = Vec::with_capacity(32);
    t.write_rfc3339_bytes(&mut s);
    String::from_utf8(s).unwrap_or_default()
}

/// The `clawwatch` object of an incident or audit record as the native set
/// writes it, for the other sets to carry.
fn native_note(record: &crate::output::IncidentRecord) -> serde_json::Value {
    let mut native = Vec::with_capacity(512);
    record.write(&mut native);
    let mut native: serde_json::Value =
        serde_json::from_slice(&native).expect("incident records are JSON");
    native["clawwatch"].take()
}

fn write_map(doc: serde_json::Map<String, serde_json::Value>, out: &mut Vec<u8>) {
    out.extend_from_slice(
        &serde_json::to_vec(&serde_json::Value::Object(doc)).expect("a JSON map always serialises"),
    );
}

/// One side of a connection as `{ip, port, <name_key>: name}`; `None` when
/// the record says nothing of it.
fn endpoint(
    ip: Option<IpAddr>,
    port: Option<u16>,
    name: Option<&str>,
    name_key: &str,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut m = serde_json::Map::new();
    if let Some(ip) = ip {
        m.insert("ip".into(), ip.to_string().into());
    }
    if let Some(port) = port {
        m.insert("port".into(), port.into());
    }
    if let Some(name) = name {
        m.insert(name_key.into(), name.into());
    }
    (!m.is_empty()).then_some(m)
}

/// `{...fields, "clawwatch": note}`: a JSON object whose last member is the
/// native note, so nothing the native output says is lost; `raw_base64` (the
/// original bytes, where they are not UTF-8) goes into the note.
fn write_with_note(
    fields: serde_json::Map<String, serde_json::Value>,
    note: &crate::output::Note,
    raw_base64: Option<&str>,
    out: &mut Vec<u8>,
) {
    let body = serde_json::to_vec(&serde_json::Value::Object(fields))
        .expect("a JSON map always serialises");
    out.extend_from_slice(&body[..body.len() - 1]);
    if body.len() > 2 {
        out.push(b',');
    }
    note.write_member(out);
    if let Some(raw) = raw_base64 {
        out.pop(); // reopen the note
        out.extend_from_slice(b",\"raw_base64\":\"");
        out.extend_from_slice(raw.as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.push(b'}');
}
