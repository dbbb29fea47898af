//! Mutation testing of a policy and the engine together (`clawwatch
//! selftest`): for every profile, behaviour that keeps to it must raise no
//! alert, and behaviour just outside it — a port one off, a sibling or parent
//! domain, an address just outside a CIDR, volume just over the threshold, a
//! task past its lifetime, DNS to a foreign resolver, tunnelling, random
//! names, an undeclared action, a connection hidden from a heartbeat — must
//! raise one. A mutation that passes is a hole: in the policy (a rule wider
//! than meant, a threshold that cannot fire) or in the engine.
//!
//! This module only writes the trials and reads their outcome; the host runs
//! each trial through a fresh engine component.

mod agent;
mod behaviour;
mod destinations;
mod dns;

use crate::policy::Policy;
use crate::time::{NANOS_PER_SEC, Timestamp};
use agent::TestAgent;
use serde_json::Value;
use std::fmt::Write as _;

/// Trials start here (a Monday, 00:00 UTC).
const T0_SECS: i64 = 1_767_571_200;

/// What a trial must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Compliant behaviour: no alert.
    Quiet,
    /// A mutation: at least one alert.
    Alert,
}

/// One behaviour to run through a fresh engine.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The profile (and deployment context) it exercises, e.g. `research_agent@continuous`.
    pub profile: String,
    /// Which mutation (`compliant` for the unmutated behaviour).
    pub mutation: &'static str,
    /// What the behaviour does, for the report.
    pub description: String,
    pub expect: Expect,
    /// The rules that should catch it (any alert counts).
    pub expected_rules: Vec<&'static str>,
    /// The records, NDJSON.
    pub records: String,
    /// Event time to advance to after the records, so time-driven checks run.
    pub advance_to: Timestamp,
    /// For a connection the policy itself admits: the rule that does, which
    /// is where a hole usually is.
    pub allowed_by: Option<String>,
}

/// How a trial went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// As expected: quiet, or caught by these rules.
    Passed(Vec<String>),
    /// A mutation raised no alert but was approved (`[approvals]` or a grant):
    /// an explicit decision, not a hole.
    Approved,
    /// A mutation raised no alert.
    Hole,
    /// Compliant behaviour raised alerts (these rules).
    FalseAlarm(Vec<String>),
}

/// Reads a trial's output (records, incident and audit records).
pub fn judge(trial: &Trial, output: &[u8]) -> Outcome {
    let mut alerts: Vec<String> = Vec::new();
    let mut approved = false;
    for line in output.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let note = if v["clawwatch"].is_object() {
            &v["clawwatch"]
        } else {
            &v["unmapped"]["clawwatch"]
        };
        match note["verdict"].as_str() {
            Some("alert") => {
                let rules = note["findings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| &f["rule"])
                    .chain(std::iter::once(&note["incident"]["rule"]))
                    .filter_map(Value::as_str);
                for rule in rules {
                    if !alerts.iter().any(|a| a == rule) {
                        alerts.push(rule.to_string());
                    }
                }
            }
            Some("approved") => approved = true,
            _ => {}
        }
    }
    match (trial.expect, alerts.is_empty()) {
        (Expect::Quiet, true) => Outcome::Passed(Vec::new()),
        (Expect::Quiet, false) => Outcome::FalseAlarm(alerts),
        (Expect::Alert, false) => Outcome::Passed(alerts),
        (Expect::Alert, true) if approved => Outcome::Approved,
        (Expect::Alert, true) => Outcome::Hole,
    }
}

/// Every trial for every profile (and deployment context) of the policy.
pub fn trials(policy: &Policy) -> Vec<Trial> {
    let mut out = Vec::new();
    for (n, profile) in policy.all_profiles().into_iter().enumerate() {
        let agent = TestAgent::new(policy, profile, n);
        let reachable = agent.reachable();
        destinations::compliant(&agent, &reachable, &mut out);
        destinations::just_outside(&agent, &reachable, &mut out);
        destinations::unlisted(&agent, &mut out);
        dns::trials(&agent, &mut out);
        if let Some(first) = reachable.first() {
            behaviour::trials(&agent, first, &mut out);
        }
    }
    out
}

fn ts(secs: i64) -> Timestamp {
    Timestamp((T0_SECS + secs) * NANOS_PER_SEC)
}

fn rfc3339(t: Timestamp) -> String {
    let mut s = Vec::new();
    t.write_rfc3339_bytes(&mut s);
    String::from_utf8(s).unwrap_or_default()
}

fn line(records: &mut String, v: Value) {
    let _ = writeln!(records, "{v}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    fn run(policy_text: &str) -> Vec<(Trial, Outcome)> {
        let policy = Policy::from_toml(policy_text).unwrap();
        trials(&policy)
            .into_iter()
            .map(|t| {
                let mut engine = Engine::new(policy_text).unwrap();
                let mut out = Vec::new();
                engine.process_ndjson(t.records.as_bytes(), &mut out);
                engine.advance_to(t.advance_to, &mut out);
                let outcome = judge(&t, &out);
                (t, outcome)
            })
            .collect()
    }

    fn problems(results: &[(Trial, Outcome)]) -> Vec<String> {
        results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Hole | Outcome::FalseAlarm(_)))
            .map(|(t, o)| format!("{} {} {}: {o:?}", t.profile, t.mutation, t.description))
            .collect()
    }

    #[test]
    fn the_bundled_policy_has_no_holes_and_no_false_alarms() {
        let results = run(include_str!("../../../testdata/policy.toml"));
        assert_eq!(problems(&results), Vec::<String>::new());
        for (t, o) in &results {
            if let Outcome::Passed(rules) = o {
                assert!(
                    t.expect == Expect::Quiet
                        || t.expected_rules
                            .iter()
                            .any(|e| rules.iter().any(|r| r == e)),
                    "{} {} was caught, but by {rules:?} instead of {:?}",
                    t.profile,
                    t.mutation,
                    t.expected_rules
                );
            }
        }
        let kinds: std::collections::BTreeSet<&str> =
            results.iter().map(|(t, _)| t.mutation).collect();
        for kind in [
            "compliant",
            "port_off_by_one",
            "sibling_domain",
            "parent_domain",
            "address_outside_cidr",
            "volume_over_threshold",
            "outlives_lifetime",
            "foreign_resolver",
            "dns_tunnelling",
            "random_names",
            "undeclared_action",
            "hidden_connection",
            "retry_loop",
        ] {
            assert!(kinds.contains(kind), "no `{kind}` trial: {kinds:?}");
        }
    }

    #[test]
    fn any_destination_on_tcp_443_is_reported_as_a_hole() {
        let policy = include_str!("../../../testdata/policy.toml").replace(
            "{ protocol = \"UDP\", port = 53, destination = \"ANY\" }, # For DNS",
            "{ protocol = \"TCP\", port = 443, destination = \"ANY\" },\n{ protocol = \"UDP\", port = 53, destination = \"ANY\" }, # For DNS",
        );
        let results = run(&policy);
        let holes: Vec<&Trial> = results
            .iter()
            .filter(|(_, o)| *o == Outcome::Hole)
            .map(|(t, _)| t)
            .collect();
        let unlisted = holes
            .iter()
            .find(|t| {
                t.profile == "data_collector_v1"
                    && t.mutation == "unlisted_destination"
                    && t.description.contains(":443/tcp")
            })
            .unwrap_or_else(|| panic!("{holes:#?}"));
        assert_eq!(
            unlisted.allowed_by.as_deref(),
            Some("allowed_outbound rule `ANY:443/tcp`"),
            "the hole names the rule that opens it"
        );
        assert!(
            holes.iter().any(|t| t.mutation == "sibling_domain"),
            "a sibling of the allowed host on 443 now passes too: {holes:#?}"
        );
        assert!(holes.iter().all(|t| t.profile == "data_collector_v1"));
    }

    #[test]
    fn a_threshold_that_cannot_be_reached_is_a_hole() {
        // Without corporate resolvers, DNS to any resolver is not judged.
        let policy = include_str!("../../../testdata/policy.toml")
            .replace("corp_resolvers = [\"10.0.0.53\", \"10.0.0.54\"]", "");
        let results = run(&policy);
        assert!(
            results
                .iter()
                .any(|(t, o)| t.mutation == "foreign_resolver" && *o == Outcome::Hole),
            "{:?}",
            problems(&results)
        );
    }
}
