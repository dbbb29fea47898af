//! Elastic Common Schema output: each record re-shaped into ECS fields, with
//! the record as it came in `event.original` and the native note kept under
//! `clawwatch`, so nothing is lost and existing ECS dashboards and detection
//! rules see familiar fields.

use super::{Endpoints, Original, endpoint, native_note, rfc3339, write_map, write_with_note};
use crate::output::{IncidentRecord, Note, Verdict};
use crate::record::{Proto, Stream};
use crate::rules::Severity;
use serde_json::{Map, Value, json};

/// The ECS release whose fields this output follows: 9.x for `gen_ai.agent.*`
/// (beta since 9.1.0), and the release `plugin/tests/siem_conformance.rs`
/// validates against.
pub const ECS_VERSION: &str = "9.4.0";

/// ECS `event.severity`: a number, higher is worse.
pub fn severity_number(s: Severity) -> u8 {
    match s {
        Severity::Info => 1,
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
    }
}

/// One judged record in ECS. `@timestamp` (required) is the record's event
/// time; a record without one (unrecognised, invalid) takes `latest`, the
/// latest event time the engine has seen, or the Unix epoch before any.
pub fn write_record(
    note: &Note,
    endpoints: Option<&Endpoints>,
    original: &Original,
    latest: Option<crate::time::Timestamp>,
    out: &mut Vec<u8>,
) {
    let mut doc = Map::new();
    let ts = note.ts.or(latest).unwrap_or(crate::time::Timestamp(0));
    doc.insert("@timestamp".into(), rfc3339(ts).into());
    doc.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    let alert = note.verdict == Verdict::Alert;
    let kind = match note.verdict {
        Verdict::Alert => "alert",
        Verdict::Error => "pipeline_error",
        _ => "event",
    };
    let (mut category, mut types): (Vec<&str>, Vec<&str>) = match note.stream {
        Stream::Flow => (vec!["network"], vec!["connection"]),
        Stream::Dns => (vec!["network"], vec!["protocol"]),
        Stream::Proxy => (vec!["network", "web"], vec!["access"]),
        Stream::Control | Stream::Heartbeat => {
            let t = match endpoints.map(|e| e.action.as_str()) {
                Some("agent.spawn") => "start",
                Some("agent.terminate") => "end",
                Some("agent.policy") => "change",
                _ => "info",
            };
            (vec!["process"], vec![t])
        }
        _ => (vec![], vec![]),
    };
    if alert {
        category.push("intrusion_detection");
        types.push("info");
    }
    let mut event = Map::new();
    event.insert("kind".into(), kind.into());
    if !category.is_empty() {
        event.insert("category".into(), json!(category));
        event.insert("type".into(), json!(types));
    }
    if let Some(e) = endpoints {
        event.insert("action".into(), e.action.clone().into());
    }
    event.insert("module".into(), "clawwatch".into());
    event.insert(
        "dataset".into(),
        format!("clawwatch.{}", note.stream.as_str()).into(),
    );
    let top = note
        .findings
        .iter()
        .max_by_key(|r| r.finding.severity)
        .map(|r| &r.finding);
    if let Some(f) = top {
        event.insert("severity".into(), severity_number(f.severity).into());
    }
    // Bytes that are not UTF-8 cannot be an ECS keyword: `event.original`
    // holds them with U+FFFD in place of each bad sequence, and the exact bytes
    // go into the note (a custom field set) as `raw_base64`.
    let mut raw_base64 = None;
    let bytes = match original {
        Original::Object { json, .. } => json,
        Original::Raw(raw) => raw,
    };
    let text = String::from_utf8_lossy(bytes);
    if let std::borrow::Cow::Owned(_) = text {
        use base64::Engine as _;
        raw_base64 = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    event.insert("original".into(), text.into_owned().into());
    doc.insert("event".into(), Value::Object(event));
    if let Some(f) = top {
        doc.insert("message".into(), f.summary.clone().into());
        doc.insert("rule".into(), rule_fields(f.rule));
    }
    if let Some(e) = &note.error {
        doc.insert("error".into(), json!({ "message": e }));
    }
    if let Some(a) = &note.agent {
        doc.insert(
            "gen_ai".into(),
            json!({ "agent": { "id": &*a.id, "name": &*a.agent_type } }),
        );
        let mut labels = Map::new();
        labels.insert("agent_profile".into(), (&*a.profile).into());
        if let Some(d) = &a.deployment {
            labels.insert("deployment".into(), (&**d).into());
        }
        doc.insert("labels".into(), Value::Object(labels));
    }
    if let Some(e) = endpoints {
        insert_endpoints(&mut doc, e, note.direction);
    }
    write_with_note(doc, note, raw_base64.as_deref(), out);
}

/// An incident or audit record in ECS.
pub fn write_incident(record: &IncidentRecord, out: &mut Vec<u8>) {
    let i = &record.incident;
    let (stream, verdict) = record.stream_and_verdict();
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), rfc3339(record.ts).into());
    doc.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    let kind = if verdict == Verdict::Alert {
        "alert"
    } else {
        "event"
    };
    // An approval allowed a connection: `network`/`allowed` (ECS's `iam`
    // category expects no `allowed` type).
    let (category, types) = if stream == Stream::Audit {
        (vec!["network"], vec!["allowed"])
    } else {
        (vec!["intrusion_detection"], vec!["info"])
    };
    doc.insert(
        "event".into(),
        json!({
            "kind": kind,
            "category": category,
            "type": types,
            "action": match record.status {
                crate::output::IncidentStatus::Open => "incident-opened",
                crate::output::IncidentStatus::Closed | crate::output::IncidentStatus::Evicted => {
                    "incident-closed"
                }
                crate::output::IncidentStatus::Suppressed => "incidents-suppressed",
            },
            "module": "clawwatch",
            "dataset": format!("clawwatch.{}", stream.as_str()),
            "severity": severity_number(i.severity),
            "id": &*i.id,
            "start": rfc3339(i.first_seen),
            "end": rfc3339(i.last_seen),
        }),
    );
    doc.insert("message".into(), i.summary.to_string().into());
    doc.insert("rule".into(), rule_fields(i.rule));
    if let Some(a) = &i.agent {
        doc.insert(
            "gen_ai".into(),
            json!({ "agent": { "id": &*a.id, "name": &*a.agent_type } }),
        );
    }
    if let Some(e) = &i.evidence {
        insert_endpoints(&mut doc, e, None);
    }
    doc.insert("clawwatch".into(), native_note(record));
    write_map(doc, out);
}

/// `rule.*`: ECS has no separate rule name, so the stable id serves as both.
fn rule_fields(rule: &crate::rules::RuleInfo) -> Value {
    json!({
        "id": rule.id,
        "name": rule.id,
        "description": rule.description,
        "category": rule.tags.join(","),
        "ruleset": "clawwatch",
    })
}

/// `source.*`, `destination.*`, `network.*` and `dns.*`.
fn insert_endpoints(doc: &mut Map<String, Value>, e: &Endpoints, direction: Option<&str>) {
    // ECS `address`: the address as the record gave it, else the domain.
    let side = |ip, port, domain| {
        endpoint(ip, port, domain, "domain").map(|mut m| {
            let address = m.get("ip").or(m.get("domain")).cloned();
            if let Some(address) = address {
                m.insert("address".into(), address);
            }
            Value::Object(m)
        })
    };
    if let Some(source) = side(e.src, e.src_port, None) {
        doc.insert("source".into(), source);
    }
    if let Some(destination) = side(e.dst, e.dst_port, e.dst_name.as_deref()) {
        doc.insert("destination".into(), destination);
    }
    let mut network = Map::new();
    if let Some(p) = e.proto {
        network.insert("transport".into(), p.to_string().into());
        network.insert("iana_number".into(), p.number().to_string().into());
    }
    // Network monitoring, so the perimeter's point of view (agents inside):
    // traffic to an agent is `inbound`, traffic from one (its calls, and its
    // answers to inbound connections, `return` in the note) `outbound`.
    if let Some(d) = direction {
        let ecs = match d {
            "inbound" => "inbound",
            _ => "outbound",
        };
        network.insert("direction".into(), ecs.into());
    }
    if let Some(b) = e.bytes {
        network.insert("bytes".into(), b.into());
    }
    if let Some(p) = e.packets {
        network.insert("packets".into(), p.into());
    }
    if let Some(q) = &e.dns_question {
        network.insert("protocol".into(), "dns".into());
        let mut question = Map::new();
        question.insert("name".into(), q.clone().into());
        if let Some(t) = &e.dns_type {
            question.insert("type".into(), t.clone().into());
        }
        if let Some(d) = crate::net::registered_domain(q) {
            question.insert("registered_domain".into(), d.into());
        }
        doc.insert(
            "dns".into(),
            json!({ "type": "query", "question": Value::Object(question) }),
        );
    }
    if e.proto == Some(Proto::Udp) && e.dst_port == Some(53) {
        network.insert("protocol".into(), "dns".into());
    }
    if !network.is_empty() {
        doc.insert("network".into(), Value::Object(network));
    }
}
