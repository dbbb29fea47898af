//! Every input format clawwatch reads, on the same traffic
//! (`testdata/formats/<format>.ndjson`, written by its `generate.py`): each is
//! recognised without configuration and gets exactly the verdicts the
//! canonical shape gets. Broken records of each format come out tagged
//! `error`, naming the field. Outputs are snapshots beside the samples.

use clawwatch_plugin::Engine;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/formats")
}

fn run(name: &str) -> (String, Vec<Value>) {
    let input = std::fs::read(dir().join(format!("{name}.ndjson")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut engine = Engine::new(include_str!("../../testdata/policy.toml")).unwrap();
    let mut out = Vec::new();
    engine.process_ndjson(&input, &mut out);
    let text = String::from_utf8(out).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| {
            !matches!(
                v["clawwatch"]["stream"].as_str(),
                Some("incident" | "audit")
            )
        })
        .collect();
    (text, lines)
}

fn snapshot(name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir());
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

/// What a line's verdict amounts to, format aside.
fn judgement(v: &Value) -> (String, String, String, Vec<String>) {
    let cw = &v["clawwatch"];
    let mut rules: Vec<String> = cw["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["incident"].as_str().unwrap().to_string())
        .collect();
    rules.sort();
    (
        cw["stream"].as_str().unwrap().into(),
        cw["verdict"].as_str().unwrap().into(),
        cw["agent"]["id"].as_str().unwrap_or("-").into(),
        rules,
    )
}

const FORMATS: &[&str] = &[
    "canonical",
    "goflow2",
    "pmacct",
    "nfdump",
    "suricata_flow",
    "suricata_netflow",
    "zeek_conn",
    "suricata_dns_v3",
    "suricata_dns_v2",
    "zeek_dns",
];

#[test]
fn every_format_gets_the_verdicts_of_the_canonical_shape() {
    let (_, canonical) = run("canonical");
    let expected: Vec<_> = canonical.iter().map(judgement).collect();
    // The traffic is meant to exercise these; a change to it must not go unnoticed.
    let verdicts: Vec<&str> = expected.iter().map(|j| j.1.as_str()).collect();
    assert_eq!(
        verdicts,
        [
            "allow", "allow", "allow", "allow", "alert", "alert", "allow", "alert"
        ]
    );
    for name in FORMATS {
        let (text, lines) = run(name);
        for v in &lines {
            assert!(
                !matches!(
                    v["clawwatch"]["verdict"].as_str(),
                    Some("error" | "not_applicable")
                ),
                "{name} not recognised: {v}"
            );
        }
        let got: Vec<_> = lines.iter().map(judgement).collect();
        assert_eq!(
            got, expected,
            "{name} judged differently from the canonical shape"
        );
        snapshot(name, &text);
    }
}

#[test]
fn broken_records_of_each_format_are_tagged_with_the_field() {
    for name in [
        "goflow2",
        "pmacct",
        "nfdump",
        "suricata_flow",
        "zeek_conn",
        "suricata_dns",
        "zeek_dns",
    ] {
        let (text, lines) = run(&format!("{name}.malformed"));
        assert!(!lines.is_empty());
        for v in &lines {
            assert_eq!(v["clawwatch"]["verdict"], "error", "{name}: {v}");
            assert!(
                v["clawwatch"]["error"]
                    .as_str()
                    .unwrap()
                    .contains("field `"),
                "{name}: {v}"
            );
        }
        snapshot(&format!("{name}.malformed"), &text);
    }
}

#[test]
fn agent_framework_records_drive_the_same_judgements() {
    let policy = std::fs::read_to_string(dir().join("frameworks.toml")).unwrap();
    let input = std::fs::read(dir().join("frameworks.ndjson")).unwrap();
    let mut engine = Engine::new(&policy).unwrap();
    let mut out = Vec::new();
    engine.process_ndjson(&input, &mut out);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| {
            !matches!(
                v["clawwatch"]["stream"].as_str(),
                Some("incident" | "audit")
            )
        })
        .collect();
    let rules = |i: usize| -> Vec<String> {
        judgement(&lines[i])
            .3
            .iter()
            .map(|id| id.split('/').nth(1).unwrap().to_string())
            .collect()
    };
    // OpenClaw: the run is an agent; its tool call joins the declared plan.
    assert_eq!(lines[0]["clawwatch"]["agent"]["id"], "run-7f3a");
    assert_eq!(
        lines[4]["clawwatch"]["verdict"], "allow",
        "the tool call declared it"
    );
    assert_eq!(
        rules(6),
        ["plan.undeclared"],
        "allowed, but no tool call declared it"
    );
    assert_eq!(rules(8), ["egress.unknown_agent"], "after the run ended");
    // NanoClaw: the group's container is an agent while it runs.
    assert_eq!(lines[9]["clawwatch"]["agent"]["id"], "nanoclaw/main");
    assert_eq!(lines[11]["clawwatch"]["verdict"], "allow");
    assert_eq!(
        rules(13),
        ["egress.unknown_agent"],
        "after the container exited"
    );
    // IronClaw: calls judged by name, refused or not; a different SNI counts.
    assert_eq!(lines[15]["clawwatch"]["verdict"], "allow");
    assert_eq!(rules(16), ["egress.not_allowed"]);
    assert_eq!(
        lines[16]["clawwatch"]["note"],
        "the proxy refused it (allowlist)"
    );
    assert_eq!(
        judgement(&lines[17]).3,
        ["job-42/egress.not_allowed/c2.example:443"]
    );
    snapshot("frameworks", &text);
}
