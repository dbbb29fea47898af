//! Field sets for SIEMs: the native `clawwatch` note (DESIGN §5), Elastic
//! Common Schema, or OCSF Detection Findings for incident records.
//!
//! The native set appends the note to the record's own bytes (the hot path).
//! The others re-shape each record, so they need what the engine parsed out of
//! it whatever its input format: the normalised endpoints below.

pub mod ecs;
pub mod ocsf;

use crate::record::{Event, Proto};
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

/// What a record says about who talked to whom, in one shape for every input
/// format. Kept with an incident as the evidence of its first finding.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Endpoints {
    pub src: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst: Option<IpAddr>,
    pub dst_port: Option<u16>,
    /// The host name asked for (proxy logs) or the DNS question.
    pub dst_name: Option<String>,
    pub proto: Option<Proto>,
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
    /// DNS: the question's name and type.
    pub dns_question: Option<String>,
    pub dns_type: Option<String>,
    /// What kind of record it was (`agent.spawn`, `flow`, `dns`, ...).
    pub action: String,
    /// Flows: the note's `outbound`, `inbound` or `return`.
    #[serde(default)]
    pub direction: Option<String>,
}

impl Endpoints {
    pub fn of(event: &Event) -> Endpoints {
        let action = |a: &str| Endpoints {
            action: a.to_string(),
            ..Endpoints::default()
        };
        match event {
            Event::Flow(f) => Endpoints {
                src: Some(f.src),
                src_port: Some(f.src_port),
                dst: Some(f.dst),
                dst_port: Some(f.dst_port),
                proto: Some(f.proto),
                bytes: Some(f.bytes),
                packets: Some(f.packets),
                ..action("flow")
            },
            Event::Dns(q) => Endpoints {
                src: Some(q.client),
                dst: q.resolver,
                dst_port: q.resolver.map(|_| 53),
                proto: q.resolver.map(|_| Proto::Udp),
                dns_question: Some(q.qname.clone()),
                dns_type: q.qtype.clone(),
                ..action("dns")
            },
            Event::Proxied(p) => Endpoints {
                dst_name: p.hosts.first().cloned(),
                dst_port: Some(p.port),
                proto: Some(Proto::Tcp),
                ..action("proxy")
            },
            Event::Spawn(s) => Endpoints {
                src: s.ips.first().copied(),
                ..action("agent.spawn")
            },
            Event::Terminate(_) => action("agent.terminate"),
            Event::PolicyChange(_) => action("agent.policy"),
            Event::Heartbeat(_) => action("agent.heartbeat"),
            Event::Liveness(_) => action("agent.liveness"),
            Event::Plan(_) => action("agent.plan"),
            Event::Grant(_) => action("approval.grant"),
            Event::Intent(_) => action("agent.intent"),
            Event::Seen(_) => action("agent.activity"),
            Event::Telemetry(_) => action("agent.telemetry"),
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
