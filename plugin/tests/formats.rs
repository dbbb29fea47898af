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

/// The judged line (incident and audit records aside) whose input contains
/// `needle`: the output line as written (the original's bytes, then its
/// note), or the text a non-JSON line was wrapped as.
fn judged<'v>(lines: &'v [(String, Value)], needle: &str) -> &'v Value {
    lines
        .iter()
        .find(|(line, v)| match v.get("raw") {
            Some(raw) => raw.as_str().unwrap().contains(needle),
            None => line.contains(needle),
        })
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no line with {needle}"))
}

/// Real lines of OpenClaw's gateway, openclaw-telemetry, NanoClaw v2 and
/// IronClaw (testdata/formats/frameworks/README.md says where each came
/// from), with the flows and DNS a collector would see around them.
#[test]
fn real_framework_lines_drive_the_judgements() {
    let policy = std::fs::read_to_string(dir().join("frameworks.toml")).unwrap();
    let input = std::fs::read(dir().join("frameworks.ndjson")).unwrap();
    let mut engine = Engine::new(&policy).unwrap();
    let mut out = Vec::new();
    engine.process_ndjson(&input, &mut out);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<(String, Value)> = text
        .lines()
        .map(|l| (l.to_string(), serde_json::from_str::<Value>(l).unwrap()))
        .filter(|(_, v)| {
            !matches!(
                v["clawwatch"]["stream"].as_str(),
                Some("incident" | "audit")
            )
        })
        .collect();
    let agent = |v: &Value| {
        v["clawwatch"]["agent"]["id"]
            .as_str()
            .unwrap_or("-")
            .to_string()
    };
    let verdict = |v: &Value| v["clawwatch"]["verdict"].as_str().unwrap().to_string();
    let rules = |v: &Value| judgement(v).3;

    // OpenClaw: every event of a run is agent `main`'s, a lasting identity.
    let run_start = judged(&lines, r#""phase":"start","startedAt":1796239453834"#);
    assert_eq!(
        (agent(run_start), verdict(run_start)),
        ("main".into(), "allow".into())
    );
    let run_end = judged(&lines, r#""phase":"end","startedAt":1796239450746"#);
    assert_eq!(agent(run_end), "main", "a run's end terminates nothing");
    // The gateway's scheduled turn is the gateway's liveness.
    let beat = judged(&lines, r#""event":"heartbeat""#);
    assert_eq!(
        (agent(beat), verdict(beat)),
        ("openclaw-gateway".into(), "allow".into())
    );
    // A searched tool behind the tool_call wrapper declares its URL.
    let fetch = judged(
        &lines,
        r#""name":"web_fetch","toolCallId":"tool_search_code:call_stub_1:web_fetch:1","parentToolCallId""#,
    );
    assert!(
        fetch["clawwatch"]["note"]
            .as_str()
            .unwrap()
            .contains("calls api.weather.example:443")
    );
    // Flows from the gateway's shared address: the declaring agent's, else the gateway's.
    let declared = judged(&lines, r#""src_port":51001"#);
    assert_eq!(
        (agent(declared), verdict(declared)),
        ("main".into(), "allow".into())
    );
    let model = judged(&lines, r#""src_port":51000"#);
    assert_eq!(
        (agent(model), verdict(model)),
        ("openclaw-gateway".into(), "allow".into())
    );
    let undeclared = judged(&lines, r#""src_port":51002"#);
    assert_eq!(
        rules(undeclared),
        ["openclaw-gateway/egress.not_allowed/198.51.100.66:443"]
    );
    let by_exec = judged(&lines, r#""src_port":51003"#);
    assert_eq!(
        (agent(by_exec), verdict(by_exec)),
        ("main".into(), "allow".into())
    );
    let between_turns = judged(&lines, r#""src_port":51004"#);
    assert_eq!(
        agent(between_turns),
        "openclaw-gateway",
        "never egress.unknown_agent between turns"
    );
    assert!(!text.contains("10.20.6.1/egress.unknown_agent"));

    // The gateway's file log is its own diagnostics, named as such.
    let file_log = judged(&lines, r#""1":"agent model: stub/stub-model"#);
    assert_eq!(verdict(file_log), "not_applicable");
    assert!(
        file_log["clawwatch"]["note"]
            .as_str()
            .unwrap()
            .contains("tslog")
    );

    // openclaw-telemetry: an intact chain raises nothing; its tool calls declare.
    assert!(!text.contains("telemetry.chain_broken"));
    let telemetry_fetch = judged(&lines, r#""src_port":51010"#);
    assert_eq!(
        (agent(telemetry_fetch), verdict(telemetry_fetch)),
        ("main".into(), "allow".into())
    );
    let curl = judged(&lines, r#""src_port":51011"#);
    assert_eq!(
        rules(curl),
        ["main/egress.not_allowed/status.example.org:443"],
        "declared, but outside its profile"
    );

    // NanoClaw v2 text (ANSI colours, local time of day): the session's container is the agent.
    let spawn = judged(
        &lines,
        "Spawning container\u{1b}[39m \u{1b}[35msessionId\u{1b}[39m=\"sess-1796239200-main\"",
    );
    assert_eq!(agent(spawn), "nanoclaw/sess-1796239200-main");
    assert_eq!(
        spawn["clawwatch"]["ts"], "2026-12-02T19:20:00.118Z",
        "20:20 at +01:00"
    );
    assert_eq!(verdict(judged(&lines, r#""src_port":40001"#)), "allow");
    assert_eq!(
        rules(judged(&lines, r#""src_port":40002"#)),
        ["10.20.5.2/egress.unknown_agent"],
        "after it exited"
    );
    let shipped = judged(&lines, r#""source_type":"file""#);
    assert_eq!(
        shipped["clawwatch"]["ts"], "2026-12-02T19:35:01.270Z",
        "dated by the shipper's record time"
    );
    let research = judged(&lines, "nanoclaw-v2-research-1796239800000");
    assert!(
        research["clawwatch"]["note"]
            .as_str()
            .unwrap()
            .contains("group_addresses")
    );

    // IronClaw: iron-proxy by its client address (Docker timestamp or not), the host's audit envelopes by id.
    assert_eq!(verdict(judged(&lines, "api.openai.com")), "allow");
    let refused = judged(&lines, r#""host":"evil.com""#);
    assert_eq!(
        rules(refused),
        ["ironclaw-job-42/egress.not_allowed/evil.com:443"]
    );
    assert_eq!(
        refused["clawwatch"]["note"],
        "the proxy refused it (allowlist)"
    );
    assert_eq!(verdict(judged(&lines, r#""mode":"sni-only""#)), "allow");
    assert_eq!(verdict(judged(&lines, "10.16.0.99:50000")), "unattributed");
    assert_eq!(
        rules(judged(&lines, "POST:paste.example:443")),
        ["ironclaw-job-42/egress.not_allowed/paste.example:443"]
    );
    assert_eq!(
        verdict(judged(&lines, r#""kind":"file_write""#)),
        "not_applicable"
    );
    snapshot("frameworks", &text);
}
