//! The Fluent Bit filter module (the engine built for wasm32-wasip1), called
//! exactly as Fluent Bit's filter_wasm calls it in JSON mode (`filter_call`:
//! tag and record copied in NUL-terminated through the module's own
//! `malloc`, its NUL-terminated JSON copied out), one instance for every
//! record, as Fluent Bit keeps it.

use clawwatch_plugin::Engine;
use std::path::Path;

// The one way the module is called, shared with `bench --fluent-bit-operators`.
#[allow(dead_code)]
#[path = "../src/commands/fluent_bit/filter_call.rs"]
mod filter_call;

/// The module as Fluent Bit runs it, with `policy_dir` as its accessible path.
struct Filter(filter_call::FilterCall);

impl Filter {
    fn new(policy_dir: Option<&Path>) -> Filter {
        let wasm = std::fs::read(env!("CLAWWATCH_FLUENT_BIT_MODULE_PATH")).unwrap();
        Filter(filter_call::FilterCall::new(&wasm, "clawwatch_filter", policy_dir, false).unwrap())
    }

    fn call(&mut self, tag: &str, record: &[u8]) -> String {
        let mut out = Vec::new();
        self.0.call(tag.as_bytes(), record, &mut out).unwrap();
        String::from_utf8(out).expect("UTF-8")
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// A filter whose accessible path holds the bundled policy (a directory per test: they run at once).
fn with_bundled_policy(dir_name: &str) -> Filter {
    let policy_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir_name);
    std::fs::create_dir_all(&policy_dir).unwrap();
    std::fs::copy(
        repo().join("testdata/policy.toml"),
        policy_dir.join("policy.toml"),
    )
    .unwrap();
    Filter::new(Some(&policy_dir))
}

#[test]
fn the_filter_module_agrees_with_the_native_engine_record_by_record() {
    let mut filter = with_bundled_policy("fluent-bit-policy");
    let mut native =
        Engine::new(&std::fs::read_to_string(repo().join("testdata/policy.toml")).unwrap())
            .unwrap();
    let records = std::fs::read(repo().join("testdata/scenario/records.ndjson")).unwrap();
    let mut compared = 0;
    let mut alerts = 0;
    for line in records.split(|b| *b == b'\n') {
        // Fluent Bit hands the filter records it parsed: JSON objects only.
        if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line).is_err() {
            continue;
        }
        let got = filter.call("agents.scenario", line);
        let mut expected = Vec::new();
        native.process_record(line, &mut expected);
        native.discard_emitted();
        assert_eq!(got, String::from_utf8(expected).unwrap());
        let v: serde_json::Value = serde_json::from_str(&got).expect("a JSON object back");
        alerts += usize::from(v["clawwatch"]["verdict"] == "alert");
        compared += 1;
    }
    assert!(compared > 250, "{compared}");
    assert!(alerts >= 10, "{alerts}");
}

#[test]
fn the_tag_names_the_format_when_the_record_does_not() {
    let mut filter = with_bundled_policy("fluent-bit-policy-tag");
    let record = br#"{"ip_src":"10.20.0.15","port_src":1,"port_dst":2,"ip_proto":"tcp","timestamp_start":"2026-11-24 14:31:00"}"#;
    let plain: serde_json::Value = serde_json::from_str(&filter.call("flows", record)).unwrap();
    assert_eq!(plain["clawwatch"]["verdict"], "not_applicable");
    for _ in 0..2 {
        let named: serde_json::Value =
            serde_json::from_str(&filter.call("clawwatch.pmacct", record)).unwrap();
        assert!(
            named["clawwatch"]["error"]
                .as_str()
                .unwrap()
                .contains("pmacct record: field `ip_dst` is missing"),
            "{named}"
        );
    }
    // The tag changes back: the format it named no longer applies.
    let plain_again: serde_json::Value =
        serde_json::from_str(&filter.call("flows", record)).unwrap();
    assert_eq!(plain_again["clawwatch"]["verdict"], "not_applicable");
}

/// Fluent Bit's tail input hands lines its parser could not read on as
/// `{"log": line}`; the filter says of them what `clawwatch run` says of a bad line.
#[test]
fn a_line_fluent_bit_could_not_parse_is_an_error_and_a_wrapped_record_is_itself() {
    let mut filter = with_bundled_policy("fluent-bit-policy-log");
    let bad: serde_json::Value =
        serde_json::from_str(&filter.call("clawwatch.agents", br#"{"log":"GET /index.html 200"}"#))
            .unwrap();
    assert_eq!(bad["clawwatch"]["verdict"], "error", "{bad}");
    assert!(
        bad["clawwatch"]["error"]
            .as_str()
            .unwrap()
            .contains("field `log` holds a line that is not a JSON object"),
        "{bad}"
    );
    assert_eq!(
        bad["log"], "GET /index.html 200",
        "the record itself is kept"
    );
    let empty: serde_json::Value =
        serde_json::from_str(&filter.call("clawwatch.agents", br#"{"log":""}"#)).unwrap();
    assert_eq!(empty["clawwatch"]["verdict"], "error", "{empty}");
    assert!(
        empty["clawwatch"]["error"]
            .as_str()
            .unwrap()
            .contains("field `log` holds an empty line"),
        "{empty}"
    );
    let spawn = r#"{"log":"{\"type\":\"agent.spawn\",\"ts\":\"2026-11-24T14:30:00Z\",\"agent_id\":\"0x8a3f\",\"agent_type\":\"data_collector_v1\",\"ip\":\"10.20.0.15\"}"}"#;
    let wrapped: serde_json::Value =
        serde_json::from_str(&filter.call("clawwatch.agents", spawn.as_bytes())).unwrap();
    assert_eq!(wrapped["clawwatch"]["agent"]["id"], "0x8a3f", "{wrapped}");
    assert_eq!(wrapped["clawwatch"]["verdict"], "allow");
}

#[test]
fn without_a_policy_every_record_still_comes_back_tagged() {
    let mut filter = Filter::new(None);
    let out: serde_json::Value =
        serde_json::from_str(&filter.call("agents", br#"{"a":1}"#)).unwrap();
    assert_eq!(out["a"], 1);
    assert_eq!(out["clawwatch"]["verdict"], "error");
    assert!(
        out["clawwatch"]["error"]
            .as_str()
            .unwrap()
            .contains("put policy.toml in a directory the wasm filter's Accessible_Paths lists (looked in: none listed)"),
        "{out}"
    );
}
