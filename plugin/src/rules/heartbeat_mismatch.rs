//! `heartbeat.mismatch`: an agent's self-reported connections for a window
//! disagree with the flows observed in it. Traffic seen but not reported is
//! hidden traffic (high); connections reported but never seen are invented
//! (medium). Judged only once event time is past the window plus the lateness
//! allowance, so late flow records are in. DNS to corporate resolvers is not
//! expected in a heartbeat.

use super::{Finding, RuleInfo, Severity, Subject, endpoint};
use crate::activity::Activity;
use crate::policy::Monitor;
use crate::record::{Heartbeat, Proto, ReportedConnection};
use crate::registry::Agent;
use crate::time::{NANOS_PER_SEC, Timestamp};

pub const RULE: RuleInfo = RuleInfo {
    id: "heartbeat.mismatch",
    description: "Self-reported connections disagree with observed flows (hidden or invented traffic).",
    severity: Severity::High,
    tags: &["heartbeat", "integrity"],
};

fn matches(
    reported: &ReportedConnection,
    ip: &str,
    name: Option<&str>,
    port: u16,
    proto: Proto,
) -> bool {
    reported.port.is_none_or(|p| p == port)
        && reported.proto.is_none_or(|p| p == proto)
        && (reported.dest == ip || name == Some(reported.dest.as_str()))
}

pub fn check(
    agent: &Agent,
    hb: &Heartbeat,
    activity: &Activity,
    monitor: &Monitor,
) -> Vec<Finding> {
    let subject = Subject::Agent(agent);
    let mut findings = Vec::new();
    let (from, to) = (hb.window_start, hb.window_end);
    // Forgotten destinations make hidden traffic unknowable for this window.
    let complete = activity
        .observed_incomplete_since
        .is_none_or(|since| since < from);
    if complete {
        for d in &activity.observed {
            if !d.seen_in(from, to) || (d.port == 53 && monitor.is_corp_resolver(d.dst)) {
                continue;
            }
            let ip = d.dst.to_string();
            if !hb
                .connections
                .iter()
                .any(|r| matches(r, &ip, d.name.as_deref(), d.port, d.proto))
            {
                let target = endpoint(d.name.as_deref().unwrap_or(&ip), d.port);
                findings.push(Finding::new(
                    &RULE,
                    &subject,
                    Some(&format!("hidden:{target}")),
                    format!("{subject} reached {target}/{} between {} and {} but its heartbeat does not report it (hidden traffic)", d.proto, from.to_rfc3339(), to.to_rfc3339()),
                ));
            }
        }
    }
    // A minute of slack either side: flows are stamped at their start, minute by minute.
    let (loose_from, loose_to) = (
        Timestamp(from.0 - 60 * NANOS_PER_SEC),
        Timestamp(to.0 + 60 * NANOS_PER_SEC),
    );
    for r in &hb.connections {
        let seen = activity.observed.iter().any(|d| {
            d.seen_in(loose_from, loose_to)
                && matches(r, &d.dst.to_string(), d.name.as_deref(), d.port, d.proto)
        });
        if !seen {
            let target = r.port.map_or(r.dest.clone(), |p| endpoint(&r.dest, p));
            findings.push(
                Finding::new(
                    &RULE,
                    &subject,
                    Some(&format!("invented:{target}")),
                    format!("{subject} reports {} connection(s) to {target} between {} and {} that no flow shows (invented traffic)", r.count, from.to_rfc3339(), to.to_rfc3339()),
                )
                .with_severity(Severity::Medium),
            );
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, policy, ts};
    use super::*;

    fn heartbeat(connections: Vec<ReportedConnection>) -> Heartbeat {
        Heartbeat {
            ts: ts("2026-11-24T15:00:00Z"),
            agent_id: "0x8a3f".into(),
            window_start: ts("2026-11-24T14:45:00Z"),
            window_end: ts("2026-11-24T15:00:00Z"),
            connections,
        }
    }

    fn reported(dest: &str, port: u16) -> ReportedConnection {
        ReportedConnection {
            dest: dest.into(),
            port: Some(port),
            proto: Some(Proto::Tcp),
            count: 3,
            bytes_out: 100,
        }
    }

    fn activity() -> Activity {
        let mut a = Activity::default();
        a.observe(
            ts("2026-11-24T14:50:00Z"),
            "93.184.216.34".parse().unwrap(),
            443,
            Proto::Tcp,
            Some("api.internal.example.net"),
        );
        a.observe(
            ts("2026-11-24T14:51:00Z"),
            "10.0.0.53".parse().unwrap(),
            53,
            Proto::Udp,
            None,
        );
        a
    }

    #[test]
    fn an_honest_heartbeat_matches() {
        let p = policy();
        let f = check(
            &agent("data_collector_v1"),
            &heartbeat(vec![reported("api.internal.example.net", 443)]),
            &activity(),
            &p.monitor,
        );
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn hidden_traffic_is_high_and_invented_traffic_medium() {
        let p = policy();
        let mut act = activity();
        act.observe(
            ts("2026-11-24T14:55:00Z"),
            "203.0.113.66".parse().unwrap(),
            8443,
            Proto::Tcp,
            None,
        );
        let f = check(
            &agent("data_collector_v1"),
            &heartbeat(vec![
                reported("api.internal.example.net", 443),
                reported("status.example", 443),
            ]),
            &act,
            &p.monitor,
        );
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(
            f[0].incident,
            "0x8a3f/heartbeat.mismatch/hidden:203.0.113.66:8443"
        );
        assert_eq!(f[0].severity, Severity::High);
        assert_eq!(
            f[1].incident,
            "0x8a3f/heartbeat.mismatch/invented:status.example:443"
        );
        assert_eq!(f[1].severity, Severity::Medium);
    }

    #[test]
    fn traffic_outside_the_window_is_not_held_against_it() {
        let p = policy();
        let mut act = activity();
        act.observe(
            ts("2026-11-24T15:05:00Z"),
            "203.0.113.66".parse().unwrap(),
            8443,
            Proto::Tcp,
            None,
        );
        assert!(
            check(
                &agent("data_collector_v1"),
                &heartbeat(vec![reported("api.internal.example.net", 443)]),
                &act,
                &p.monitor
            )
            .is_empty()
        );
    }
}
