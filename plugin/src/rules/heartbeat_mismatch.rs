//! `heartbeat.mismatch`: an agent's self-reported connections for a window
//! disagree with the flows observed in it. Traffic seen but not reported is
//! hidden traffic (high); connections reported but never seen are invented
//! (medium). Judged only once event time is past the window plus the lateness
//! allowance, so late flow records are in. DNS to corporate resolvers is not
//! expected in a heartbeat.
//!
//! Connections are placed in windows by their flows' own start and end times.
//! A connection on a window's boundary (within [`BOUNDARY_SLACK_SECS`], the
//! clocks of agent and exporter differ) or lasting past its end may be
//! reported in either window it touches, so one left out of this window waits
//! for the next. A connection is known by its address and by every name the
//! agent's own DNS answers gave that address (CDNs put many names on one).

use super::{Finding, RuleInfo, Severity, Subject, endpoint};
use crate::policy::Monitor;
use crate::record::{Heartbeat, ReportedConnection};
use crate::registry::Agent;
use crate::rules::activity::{Activity, Contact};
use crate::time::{NANOS_PER_SEC, Timestamp};
use std::net::IpAddr;

pub const RULE: RuleInfo = RuleInfo {
    id: "heartbeat.mismatch",
    description: "Self-reported connections disagree with observed flows (hidden or invented traffic).",
    severity: Severity::High,
    tags: &["heartbeat", "integrity"],
};

/// How far apart the agent's clock and the exporter's may put one moment.
pub const BOUNDARY_SLACK_SECS: i64 = 5;
const SLACK: i64 = BOUNDARY_SLACK_SECS * NANOS_PER_SEC;

fn reports(r: &ReportedConnection, c: &Contact, ip: &str, names: &[String]) -> bool {
    r.port.is_none_or(|p| p == c.port)
        && r.proto.is_none_or(|p| p == c.proto)
        && (r.dest == ip || names.iter().any(|n| *n == r.dest))
}

fn reported_in(hb: &Heartbeat, c: &Contact, ip: &str, names: &[String]) -> bool {
    hb.connections.iter().any(|r| reports(r, c, ip, names))
}

/// Holds one heartbeat window against the connections seen. `names_of(ip, t)`
/// gives the names the agent's DNS had for `ip` at `t`. Connections it
/// accounts for (reported, or judged hidden) are marked settled.
pub fn check(
    agent: &Agent,
    hb: &Heartbeat,
    activity: &mut Activity,
    names_of: &mut dyn FnMut(IpAddr, Timestamp) -> Vec<String>,
    monitor: &Monitor,
) -> Vec<Finding> {
    let subject = Subject::Agent(agent);
    let mut findings = Vec::new();
    let (from, to) = (hb.window_start, hb.window_end);
    // Forgotten connections make hidden and invented traffic unknowable for this window.
    let complete = activity
        .contacts_incomplete_until()
        .get()
        .is_none_or(|until| until.0 < from.0 - SLACK);
    let mut matched = vec![false; hb.connections.len()];
    let previous = activity.last_window.take();
    for i in 0..activity.contacts.len() {
        let mut c = activity.contacts.get(i);
        if c.end.0 < from.0 - SLACK || c.start.0 >= to.0 + SLACK {
            continue; // not in this window
        }
        let ip = c.dst.to_string();
        let names = names_of(c.dst, c.start);
        let mut here = false;
        for (r, m) in hb.connections.iter().zip(matched.iter_mut()) {
            if reports(r, &c, &ip, &names) {
                *m = true;
                here = true;
            }
        }
        if here {
            c.settled = true;
            activity.contacts.settle(i);
        }
        if c.settled || (c.port == 53 && monitor.is_corp_resolver(c.dst)) {
            continue;
        }
        let on_start = c.start.0 < from.0 + SLACK;
        if on_start
            && previous.as_ref().is_some_and(|p| {
                p.window_end.0 + SLACK >= from.0 && reported_in(p, &c, &ip, &names)
            })
        {
            c.settled = true;
            activity.contacts.settle(i);
            continue;
        }
        // It reaches the next window, which may report it.
        if c.end.0 >= to.0 - SLACK {
            continue;
        }
        if !complete {
            continue;
        }
        c.settled = true;
        activity.contacts.settle(i);
        let target = endpoint(names.iter().min().map_or(&ip, |n| n), c.port);
        findings.push(Finding::new(
            &RULE,
            &subject,
            Some(&format!("hidden:{target}")),
            format!(
                "{subject} reached {target}/{} at {} but its heartbeat for {} to {} does not report it (hidden traffic)",
                c.proto,
                c.start.to_rfc3339(),
                from.to_rfc3339(),
                to.to_rfc3339()
            ),
        ));
    }
    if !complete {
        activity.last_window = Some(Box::new(hb.clone()));
        return findings;
    }
    for (r, _) in hb.connections.iter().zip(&matched).filter(|(_, m)| !**m) {
        // DNS to a corporate resolver is infrastructure, not kept as a connection.
        let corp_dns = r.port.is_none_or(|p| p == 53)
            && r.dest
                .parse::<IpAddr>()
                .is_ok_and(|ip| monitor.is_corp_resolver(ip));
        if corp_dns {
            continue;
        }
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
    activity.last_window = Some(Box::new(hb.clone()));
    findings
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, policy, ts};
    use super::*;
    use crate::record::{Flow, Proto};

    fn heartbeat(from: &str, to: &str, connections: Vec<ReportedConnection>) -> Heartbeat {
        Heartbeat {
            ts: ts(to),
            agent_id: "0x8a3f".into(),
            window_start: ts(from),
            window_end: ts(to),
            connections,
        }
    }

    fn reported(dest: &str, port: u16) -> ReportedConnection {
        ReportedConnection {
            dest: dest.into(),
            port: Some(port),
            proto: Some(Proto::Tcp),
            count: 1,
            bytes_out: 100,
        }
    }

    /// A flow record of `secs` from `start`, from the agent's port `sport`.
    fn slice(start: Timestamp, secs: i64, dst: &str, port: u16, sport: u16) -> Flow {
        Flow {
            ts: start,
            end: Some(start.plus_secs(secs)),
            src: "10.20.0.15".parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: sport,
            dst_port: port,
            proto: if port == 53 { Proto::Udp } else { Proto::Tcp },
            bytes: 100,
            packets: 1,
            tcp_flags: None,
            src_initiated: false,
        }
    }

    fn connect(a: &mut Activity, at: &str, secs: i64, dst: &str, port: u16) {
        let start = ts(at);
        let sport = 50_000 + (start.0 / NANOS_PER_SEC % 10_000) as u16;
        a.observe(&slice(start, secs, dst, port, sport));
    }

    /// DNS as the fixture's agent resolved it: one CDN address, two names.
    fn dns(ip: IpAddr, _t: Timestamp) -> Vec<String> {
        match ip.to_string().as_str() {
            "93.184.216.34" => vec!["api.internal.example.net".into()],
            "151.101.0.223" => vec!["files.pythonhosted.org".into(), "pypi.org".into()],
            _ => vec![],
        }
    }

    fn judge(a: &mut Activity, hb: &Heartbeat) -> Vec<Finding> {
        check(
            &agent("data_collector_v1"),
            hb,
            a,
            &mut dns,
            &policy().monitor,
        )
    }

    #[test]
    fn an_honest_heartbeat_matches_by_any_name_of_the_address() {
        let mut a = Activity::default();
        connect(&mut a, "2026-11-24T14:50:00Z", 2, "93.184.216.34", 443);
        connect(&mut a, "2026-11-24T14:51:00Z", 2, "151.101.0.223", 443);
        connect(&mut a, "2026-11-24T14:51:00Z", 0, "10.0.0.53", 53);
        let hb = heartbeat(
            "2026-11-24T14:45:00Z",
            "2026-11-24T15:00:00Z",
            vec![
                reported("api.internal.example.net", 443),
                reported("pypi.org", 443),
                reported("files.pythonhosted.org", 443),
            ],
        );
        let f = judge(&mut a, &hb);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn hidden_traffic_is_high_and_invented_traffic_medium() {
        let mut a = Activity::default();
        connect(&mut a, "2026-11-24T14:50:00Z", 2, "93.184.216.34", 443);
        connect(&mut a, "2026-11-24T14:55:00Z", 2, "203.0.113.66", 8443);
        let hb = heartbeat(
            "2026-11-24T14:45:00Z",
            "2026-11-24T15:00:00Z",
            vec![
                reported("api.internal.example.net", 443),
                reported("status.example", 443),
            ],
        );
        let f = judge(&mut a, &hb);
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

    /// Windows start at the agent's spawn second, not on a minute: a flow at
    /// 00:48:04, reported in 00:43:31–00:48:31, is no business of the next window.
    #[test]
    fn a_window_holds_exactly_its_own_connections() {
        let mut a = Activity::default();
        connect(&mut a, "2026-11-24T00:48:04Z", 1, "93.184.216.34", 443);
        let first = heartbeat(
            "2026-11-24T00:43:31Z",
            "2026-11-24T00:48:31Z",
            vec![reported("api.internal.example.net", 443)],
        );
        assert!(judge(&mut a, &first).is_empty());
        let next = heartbeat("2026-11-24T00:48:31Z", "2026-11-24T00:53:31Z", vec![]);
        let f = judge(&mut a, &next);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn a_connection_on_the_boundary_may_be_reported_in_either_window() {
        for (reported_first, reported_second) in [(true, false), (false, true)] {
            let mut a = Activity::default();
            // Stamped by the exporter 0.4 s before the window boundary.
            let start = Timestamp(ts("2026-11-24T00:48:31Z").0 - 400_000_000);
            a.observe(&slice(start, 2, "93.184.216.34", 443, 50_123));
            let r = |yes: bool| {
                if yes {
                    vec![reported("api.internal.example.net", 443)]
                } else {
                    vec![]
                }
            };
            let first = heartbeat(
                "2026-11-24T00:43:31Z",
                "2026-11-24T00:48:31Z",
                r(reported_first),
            );
            let second = heartbeat(
                "2026-11-24T00:48:31Z",
                "2026-11-24T00:53:31Z",
                r(reported_second),
            );
            assert!(judge(&mut a, &first).is_empty());
            assert!(judge(&mut a, &second).is_empty());
        }
        // Reported in neither: hidden, once.
        let mut a = Activity::default();
        connect(&mut a, "2026-11-24T00:48:30Z", 5, "93.184.216.34", 443);
        let first = heartbeat("2026-11-24T00:43:31Z", "2026-11-24T00:48:31Z", vec![]);
        let second = heartbeat("2026-11-24T00:48:31Z", "2026-11-24T00:53:31Z", vec![]);
        assert!(
            judge(&mut a, &first).is_empty(),
            "it may still be in the next"
        );
        assert_eq!(judge(&mut a, &second).len(), 1);
        let third = heartbeat("2026-11-24T00:53:31Z", "2026-11-24T00:58:31Z", vec![]);
        assert!(judge(&mut a, &third).is_empty(), "judged once");
    }

    #[test]
    fn a_long_connection_reported_once_is_not_hidden_in_the_windows_it_outlives() {
        let mut a = Activity::default();
        // Three active-timeout slices of one connection.
        for m in [0, 1, 2] {
            let start = ts("2026-11-24T00:44:00Z").plus_secs(m * 60);
            a.observe(&slice(start, 60, "93.184.216.34", 443, 50_999));
        }
        let first = heartbeat(
            "2026-11-24T00:43:31Z",
            "2026-11-24T00:45:31Z",
            vec![reported("api.internal.example.net", 443)],
        );
        let second = heartbeat("2026-11-24T00:45:31Z", "2026-11-24T00:47:31Z", vec![]);
        assert!(judge(&mut a, &first).is_empty());
        assert!(judge(&mut a, &second).is_empty());
    }

    #[test]
    fn traffic_outside_the_window_is_not_held_against_it() {
        let mut a = Activity::default();
        connect(&mut a, "2026-11-24T14:50:00Z", 2, "93.184.216.34", 443);
        connect(&mut a, "2026-11-24T15:05:00Z", 2, "203.0.113.66", 8443);
        let hb = heartbeat(
            "2026-11-24T14:45:00Z",
            "2026-11-24T15:00:00Z",
            vec![reported("api.internal.example.net", 443)],
        );
        assert!(judge(&mut a, &hb).is_empty());
    }
}
