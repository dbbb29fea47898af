//! OCSF output: incident and audit records as Detection Findings (class 2004,
//! OCSF 1.3.0), the shape OCSF-native SIEMs and data lakes (Security Lake,
//! Splunk, Sentinel's OCSF mappings) take findings in. Other records keep the
//! native note; the native incident object stays under `unmapped.clawwatch`.

use super::{Endpoints, endpoint, native_note, rfc3339, write_map};
use crate::output::{IncidentRecord, IncidentStatus};
use crate::record::Stream;
use crate::rules::Severity;
use crate::time::Timestamp;
use serde_json::{Map, Value, json};

pub const OCSF_VERSION: &str = "1.3.0";
pub const DETECTION_FINDING: u32 = 2004;

fn millis(t: Timestamp) -> i64 {
    t.0.div_euclid(1_000_000)
}

/// OCSF `severity_id` and its caption.
pub fn severity(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
    }
}

pub fn write_incident(record: &IncidentRecord, out: &mut Vec<u8>) {
    let i = &record.incident;
    let (activity_id, activity, status_id, status) = match record.status {
        IncidentStatus::Open => (1, "Create", 1, "New"),
        IncidentStatus::Closed | IncidentStatus::Evicted => (3, "Close", 4, "Resolved"),
        IncidentStatus::Suppressed => (1, "Create", 3, "Suppressed"),
    };
    let (severity_id, severity_name) = severity(i.severity);
    let approval = record.stream() == Stream::Audit;
    let mut doc = Map::new();
    doc.insert("class_uid".into(), DETECTION_FINDING.into());
    doc.insert("class_name".into(), "Detection Finding".into());
    doc.insert("category_uid".into(), 2.into());
    doc.insert("category_name".into(), "Findings".into());
    doc.insert("activity_id".into(), activity_id.into());
    doc.insert("activity_name".into(), activity.into());
    doc.insert(
        "type_uid".into(),
        (DETECTION_FINDING * 100 + activity_id).into(),
    );
    doc.insert(
        "type_name".into(),
        format!("Detection Finding: {activity}").into(),
    );
    doc.insert("time".into(), millis(record.ts).into());
    doc.insert("time_dt".into(), rfc3339(record.ts).into());
    doc.insert("severity_id".into(), severity_id.into());
    doc.insert("severity".into(), severity_name.into());
    doc.insert("status_id".into(), status_id.into());
    doc.insert("status".into(), status.into());
    doc.insert("message".into(), i.summary.to_string().into());
    doc.insert("count".into(), i.count.into());
    if approval {
        // An authorisation, not an alert: the security-control disposition says so.
        doc.insert("action_id".into(), 1.into());
        doc.insert("action".into(), "Allowed".into());
        doc.insert("disposition_id".into(), 1.into());
        doc.insert("disposition".into(), "Allowed".into());
    }
    doc.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "product": {
                "name": "clawwatch",
                "vendor_name": "clawwatch",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "log_name": record.stream().as_str(),
            // `time_dt` is the datetime profile's; dispositions are security_control's.
            "profiles": if approval { vec!["datetime", "security_control"] } else { vec!["datetime"] },
        }),
    );
    doc.insert(
        "finding_info".into(),
        json!({
            "uid": &*i.id,
            "title": i.summary,
            "desc": i.rule.description,
            "types": [i.rule.id],
            "first_seen_time": millis(i.first_seen),
            "last_seen_time": millis(i.last_seen),
            "analytic": {
                "uid": i.rule.id,
                "name": i.rule.id,
                "type_id": 1,
                "type": "Rule",
                "category": i.rule.tags.join(","),
            },
        }),
    );
    if let Some(e) = &i.evidence {
        doc.insert("evidences".into(), json!([evidence(e)]));
    }
    if let Some(a) = &i.agent {
        let mut labels = vec![format!("profile:{}", a.profile)];
        if let Some(d) = &a.deployment {
            labels.push(format!("deployment:{d}"));
        }
        doc.insert(
            "resources".into(),
            json!([{
                "uid": &*a.id,
                "name": &*a.agent_type,
                "type": "AI agent",
                "labels": labels,
            }]),
        );
    }
    doc.insert(
        "unmapped".into(),
        json!({ "clawwatch": native_note(record) }),
    );
    write_map(doc, out);
}

/// The first finding's record as an OCSF evidence artifact.
fn evidence(e: &Endpoints) -> Value {
    let mut m = Map::new();
    if let Some(src) = endpoint(e.src, e.src_port, None, "hostname") {
        m.insert("src_endpoint".into(), Value::Object(src));
    }
    if let Some(dst) = endpoint(e.dst, e.dst_port, e.dst_name.as_deref(), "hostname") {
        m.insert("dst_endpoint".into(), Value::Object(dst));
    }
    if let Some(p) = e.proto {
        // Who initiated the connection: a peer for `inbound` and for the
        // agent's `return` answers to it, the agent for `outbound`.
        let (direction_id, direction) = match e.direction.as_deref() {
            Some("outbound") => (2, "Outbound"),
            Some("inbound" | "return") => (1, "Inbound"),
            _ => (0, "Unknown"),
        };
        m.insert(
            "connection_info".into(),
            json!({
                "protocol_name": p.to_string(),
                "protocol_num": p.number(),
                "direction_id": direction_id,
                "direction": direction,
            }),
        );
    }
    if let Some(q) = &e.dns_question {
        let mut query = Map::new();
        query.insert("hostname".into(), q.clone().into());
        if let Some(t) = &e.dns_type {
            query.insert("type".into(), t.clone().into());
        }
        m.insert("query".into(), Value::Object(query));
    }
    Value::Object(m)
}
