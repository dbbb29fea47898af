//! Data-driven rule cases: `testdata/cases/<rule id>/fires.ndjson` must fire
//! the rule and `near_miss.ndjson` must not, under `testdata/cases/policy.toml`.
//! The enriched outputs are snapshots beside the inputs; the host's end-to-end
//! test runs a subset through the component against the same snapshots.

use clawwatch_plugin::Engine;
use clawwatch_plugin::rules::ALL;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cases")
}

fn run(input: &[u8]) -> String {
    let policy = std::fs::read_to_string(cases_dir().join("policy.toml")).unwrap();
    let mut engine = Engine::new(&policy).expect("case policy loads");
    let mut out = Vec::new();
    engine.process_ndjson(input, &mut out);
    String::from_utf8(out).unwrap()
}

/// Every finding of `rule` in the output: (incident id, new) for findings on
/// records, and for incident/audit records that stand alone (time-driven).
fn occurrences(output: &str, rule: &str) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    for line in output.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let cw = &v["clawwatch"];
        for f in cw["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["rule"] == rule)
        {
            found.push((
                f["incident"].as_str().unwrap().to_string(),
                f["new"] == true,
            ));
        }
        let incident = &cw["incident"];
        if incident["rule"] == rule && incident["status"] == "open" {
            found.push((format!("record:{}", incident["id"].as_str().unwrap()), true));
        }
    }
    found
}

#[test]
fn every_rule_fires_on_its_case_and_stays_silent_on_its_near_miss() {
    let mut seen = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for dir in entries {
        let rule = dir.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            ALL.iter().any(|r| r.id == rule),
            "case {rule} names no rule"
        );
        for case in ["fires", "near_miss"] {
            let input = std::fs::read(dir.join(format!("{case}.ndjson")))
                .unwrap_or_else(|e| panic!("{rule}/{case}: {e}"));
            let output = run(&input);
            assert_eq!(
                output,
                run(&input),
                "{rule}/{case}: a replay must be byte-identical"
            );
            let found = occurrences(&output, &rule);
            if case == "fires" {
                assert!(
                    !found.is_empty(),
                    "{rule} did not fire on its case:\n{output}"
                );
                // One incident, one alert: each incident id is new exactly once.
                let mut news: BTreeMap<String, usize> = BTreeMap::new();
                for (id, new) in found.iter().filter(|(id, _)| !id.starts_with("record:")) {
                    *news.entry(id.clone()).or_default() += usize::from(*new);
                }
                assert!(
                    news.values().all(|n| *n <= 1),
                    "{rule}: an incident was new more than once: {news:?}"
                );
            } else {
                assert!(
                    found.is_empty(),
                    "{rule} fired on its near miss: {found:?}\n{output}"
                );
            }
            let mut settings = insta::Settings::clone_current();
            settings.set_snapshot_path(&dir);
            settings.set_prepend_module_to_snapshot(false);
            settings.bind(|| insta::assert_snapshot!(case, output));
        }
        seen.push(rule);
    }
    for rule in ALL {
        assert!(
            seen.iter().any(|s| s == rule.id),
            "rule {} has no case under testdata/cases",
            rule.id
        );
    }
}

/// Saving the engine's state after any line and going on in a new engine
/// restored from it gives exactly the output of one uninterrupted run, for
/// every rule's case: no window, baseline, plan, grant, heartbeat or incident
/// is lost across a restart.
#[test]
fn every_case_continues_unchanged_across_a_save_and_restore_at_any_line() {
    let policy = std::fs::read_to_string(cases_dir().join("policy.toml")).unwrap();
    let process = |engine: &mut Engine, records: &[u8]| {
        let mut out = Vec::new();
        engine.process_ndjson(records, &mut out);
        out
    };
    for rule in ALL {
        for kind in ["fires", "near_miss"] {
            let input =
                std::fs::read(cases_dir().join(rule.id).join(format!("{kind}.ndjson"))).unwrap();
            let expected = process(&mut Engine::new(&policy).unwrap(), &input);
            let lines: Vec<&[u8]> = input.split_inclusive(|b| *b == b'\n').collect();
            for cut in 1..lines.len() {
                let mut first = Engine::new(&policy).unwrap();
                let mut out = process(&mut first, &lines[..cut].concat());
                let snapshot = first.export_state();
                let mut second = Engine::new(&policy).unwrap();
                second.restore_state(&snapshot).unwrap();
                out.extend(process(&mut second, &lines[cut..].concat()));
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&expected),
                    "{}/{kind}: cut after line {cut}",
                    rule.id
                );
            }
        }
    }
}
