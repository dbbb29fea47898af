//! The ECS and OCSF field sets against the native output, over every rule's
//! case: the same verdicts, nothing lost, endpoints that match the input.

use clawwatch_plugin::Engine;
use clawwatch_plugin::rules::ALL;
use clawwatch_plugin::siem::FieldSet;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cases")
}

fn run(input: &[u8], field_set: FieldSet) -> Vec<Value> {
    let policy = std::fs::read_to_string(cases_dir().join("policy.toml")).unwrap();
    let mut engine = Engine::new(&policy).unwrap();
    engine.set_field_set(field_set);
    let mut out = Vec::new();
    engine.process_ndjson(input, &mut out);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn every_case() -> impl Iterator<Item = (String, Vec<u8>)> {
    ALL.iter().flat_map(|rule| {
        ["fires", "near_miss"].into_iter().map(move |kind| {
            let path = cases_dir().join(rule.id).join(format!("{kind}.ndjson"));
            (format!("{}/{kind}", rule.id), std::fs::read(path).unwrap())
        })
    })
}

#[test]
fn ecs_keeps_every_record_and_verdict_and_maps_the_fields() {
    for (case, input) in every_case() {
        let native = run(&input, FieldSet::Native);
        let ecs = run(&input, FieldSet::Ecs);
        assert_eq!(native.len(), ecs.len(), "{case}");
        let mut inputs = input.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        for (n, e) in native.iter().zip(&ecs) {
            let note = &n["clawwatch"];
            assert_eq!(&e["clawwatch"], note, "{case}: the native note is kept");
            let verdict = note["verdict"].as_str().unwrap();
            let emitted = matches!(note["stream"].as_str(), Some("incident" | "audit"));
            let kind = e["event"]["kind"].as_str().unwrap();
            match (emitted, verdict) {
                (_, "alert") => assert_eq!(kind, "alert", "{case}: {e}"),
                (false, "error") => assert_eq!(kind, "pipeline_error", "{case}: {e}"),
                (true, _) => assert_eq!(kind, "event", "{case}: {e}"),
                (false, _) => assert_eq!(kind, "event", "{case}: {e}"),
            }
            // Required: the event time, or (a record without one) the latest seen.
            assert!(e["@timestamp"].is_string(), "{case}: {e}");
            if let Some(ts) = note["ts"].as_str() {
                assert_eq!(e["@timestamp"], ts, "{case}");
            }
            if let Some(id) = note["agent"]["id"].as_str() {
                assert_eq!(e["gen_ai"]["agent"]["id"], id, "{case}");
                assert_eq!(
                    e["gen_ai"]["agent"]["name"], note["agent"]["type"],
                    "{case}"
                );
            }
            let first = note["findings"][0]["rule"]
                .as_str()
                .or(note["incident"]["rule"].as_str());
            if verdict == "alert" {
                let rule = e["rule"]["id"].as_str().expect("an alert names its rule");
                assert!(
                    note["findings"]
                        .as_array()
                        .map_or(Some(rule) == first, |f| f.iter().any(|f| f["rule"] == rule)),
                    "{case}: {e}"
                );
                assert!(e["rule"]["description"].as_str().unwrap().len() > 10);
            }
            if emitted {
                continue;
            }
            // The record as it came, whole, in event.original.
            let original = inputs.next().unwrap();
            assert_eq!(
                e["event"]["original"].as_str().unwrap().as_bytes(),
                original.trim_ascii(),
                "{case}"
            );
            let record: Value = serde_json::from_slice(original).unwrap();
            if record["type"] == "flow" {
                assert_eq!(e["source"]["ip"], record["src_ip"], "{case}");
                assert_eq!(e["destination"]["ip"], record["dst_ip"], "{case}");
                assert_eq!(e["destination"]["port"], record["dst_port"], "{case}");
                assert_eq!(e["event"]["category"][0], "network", "{case}");
            }
            if record["type"] == "dns" {
                assert_eq!(e["dns"]["question"]["name"], record["qname"], "{case}");
                assert_eq!(e["source"]["ip"], record["client_ip"], "{case}");
            }
        }
    }
}

#[test]
fn ocsf_turns_incident_and_audit_records_into_detection_findings_and_leaves_the_rest() {
    let mut findings = 0;
    for (case, input) in every_case() {
        let native = run(&input, FieldSet::Native);
        let ocsf = run(&input, FieldSet::Ocsf);
        assert_eq!(native.len(), ocsf.len(), "{case}");
        for (n, o) in native.iter().zip(&ocsf) {
            let stream = n["clawwatch"]["stream"].as_str().unwrap();
            if stream != "incident" && stream != "audit" {
                assert_eq!(n, o, "{case}: other records stay native");
                continue;
            }
            findings += 1;
            let incident = &n["clawwatch"]["incident"];
            assert_eq!(o["class_uid"], 2004, "{case}");
            assert_eq!(o["category_uid"], 2, "{case}");
            assert_eq!(o["finding_info"]["uid"], incident["id"], "{case}");
            assert_eq!(
                o["finding_info"]["analytic"]["uid"], incident["rule"],
                "{case}"
            );
            let severity = match incident["severity"].as_str().unwrap() {
                "info" => 1,
                "low" => 2,
                "medium" => 3,
                "high" => 4,
                other => panic!("{other}"),
            };
            assert_eq!(o["severity_id"], severity, "{case}");
            let (activity, status) = match incident["status"].as_str().unwrap() {
                "open" => (1, 1),
                _ => (3, 4),
            };
            assert_eq!(o["activity_id"], activity, "{case}");
            assert_eq!(o["type_uid"], 200400 + activity, "{case}");
            assert_eq!(o["status_id"], status, "{case}");
            assert_eq!(o["unmapped"]["clawwatch"], n["clawwatch"], "{case}");
            assert_eq!(
                o["resources"][0]["uid"], n["clawwatch"]["agent"]["id"],
                "{case}"
            );
            if stream == "audit" {
                assert_eq!(o["disposition"], "Allowed", "{case}");
            }
            // Findings raised by a record carry its endpoints as evidence;
            // time-driven ones (no record) carry none.
            if incident["status"] == "open"
                && ["egress.not_allowed", "rate.runaway", "approval.granted"]
                    .contains(&incident["rule"].as_str().unwrap())
            {
                assert!(o["evidences"][0]["dst_endpoint"].is_object(), "{case}: {o}");
            }
        }
    }
    assert!(findings > 10, "the cases open incidents");
}

#[test]
fn examples_of_each_field_set_for_the_docs() {
    let input = std::fs::read(cases_dir().join("egress.not_allowed/fires.ndjson")).unwrap();
    let pick = |set| -> Vec<Value> {
        run(&input, set)
            .into_iter()
            .filter(|v| v["event"]["kind"] == "alert" || v["class_uid"] == 2004)
            .take(2)
            .collect()
    };
    let pretty = |v: Vec<Value>| serde_json::to_string_pretty(&v).unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/snapshots"));
    settings.bind(|| {
        insta::assert_snapshot!("ecs_alert_and_incident", pretty(pick(FieldSet::Ecs)));
        insta::assert_snapshot!("ocsf_detection_finding", pretty(pick(FieldSet::Ocsf)));
    });
}

/// ECS requires `@timestamp` and has no field for bytes that are not text: a
/// record without an event time takes the latest one seen (the Unix epoch
/// before any), and non-UTF-8 bytes travel exactly in `clawwatch.raw_base64`.
#[test]
fn ecs_dates_every_record_and_keeps_bytes_that_are_not_text() {
    let mut input = b"not json at all\n".to_vec();
    input.extend_from_slice(br#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"a","agent_type":"worker","ip":"10.20.0.15"}"#);
    input.extend_from_slice(b"\n{\"type\":\"flow\",\"note\":\"caf\xe9\"}\n");
    let ecs = run(&input, FieldSet::Ecs);
    assert_eq!(ecs[0]["@timestamp"], "1970-01-01T00:00:00Z", "{}", ecs[0]);
    assert_eq!(ecs[0]["event"]["original"], "not json at all");
    assert_eq!(ecs[2]["@timestamp"], "2026-11-24T14:30:00Z", "{}", ecs[2]);
    assert_eq!(
        ecs[2]["event"]["original"],
        "{\"type\":\"flow\",\"note\":\"caf\u{fffd}\"}"
    );
    assert_eq!(
        ecs[2]["clawwatch"]["raw_base64"],
        "eyJ0eXBlIjoiZmxvdyIsIm5vdGUiOiJjYWbpIn0="
    );
    assert!(ecs[2].get("raw_base64").is_none(), "not a top-level field");
}
