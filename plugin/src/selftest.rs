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

use crate::net::Proto;
use crate::policy::{Destination, Policy, Profile, Protocol, Rule};
use crate::time::{NANOS_PER_SEC, Timestamp};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

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
        agent.all_trials(&mut out);
    }
    out
}

/// The agent one profile's trials are played by.
struct TestAgent<'p> {
    policy: &'p Policy,
    profile: &'p Profile,
    label: String,
    id: String,
    ip: IpAddr,
    resolver: IpAddr,
}

/// A destination the profile allows, made concrete.
struct Reachable {
    rule: usize,
    proto: Proto,
    port: u16,
    ip: IpAddr,
    /// The name that was resolved to reach it, when the rule names hosts.
    name: Option<String>,
}

fn ts(secs: i64) -> Timestamp {
    Timestamp((T0_SECS + secs) * NANOS_PER_SEC)
}

fn rfc3339(t: Timestamp) -> String {
    let mut s = Vec::new();
    t.write_rfc3339_bytes(&mut s);
    String::from_utf8(s).unwrap_or_default()
}

fn proto_of(rule: &Rule) -> Option<Proto> {
    match rule.protocol {
        Protocol::Tcp | Protocol::Any => Some(Proto::Tcp),
        Protocol::Udp => Some(Proto::Udp),
        Protocol::Icmp => None,
    }
}

fn is_dns_rule(rule: &Rule) -> bool {
    rule.port.contains(53) && rule.port.low == rule.port.high
}

fn parent(name: &str) -> Option<&str> {
    let (_, rest) = name.split_once('.')?;
    rest.contains('.').then_some(rest)
}

impl<'p> TestAgent<'p> {
    fn new(policy: &'p Policy, profile: &'p Profile, n: usize) -> TestAgent<'p> {
        let label = match &profile.context {
            Some(c) => format!("{}@{c}", profile.name),
            None => profile.name.clone(),
        };
        let ip = policy
            .monitor
            .agent_subnets
            .first()
            .and_then(|net| net.hosts().nth(10 + n))
            .unwrap_or(IpAddr::V4(Ipv4Addr::new(10, 77, 0, 10 + n as u8)));
        let resolver = policy
            .monitor
            .corp_resolvers
            .first()
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::new(10, 77, 255, 53)));
        TestAgent {
            policy,
            profile,
            label,
            id: format!("selftest-{n}"),
            ip,
            resolver,
        }
    }

    /// An address no rule of the policy names: a stand-in for "somewhere else".
    fn fresh_ip(&self, k: usize) -> IpAddr {
        let named = |ip: IpAddr| {
            self.policy
                .all_profiles()
                .iter()
                .flat_map(|p| p.allowed_outbound.iter())
                .chain(self.policy.approvals.iter())
                .any(|r| !matches!(r.destination, Destination::Any) && r.destination.matches_ip(ip))
                || self.policy.monitor.corp_resolvers.contains(&ip)
        };
        (0..)
            .flat_map(|block: u8| {
                let prefix = match block % 3 {
                    0 => [203, 0, 113],
                    1 => [198, 51, 100],
                    _ => [192, 0, 2],
                };
                (1..=254u8)
                    .map(move |h| IpAddr::V4(Ipv4Addr::new(prefix[0], prefix[1], prefix[2], h)))
            })
            .take(3 * 254)
            .filter(|ip| !named(*ip))
            .nth(k % 700)
            .unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)))
    }

    fn spawn(&self, records: &mut String) {
        let mut spawn = json!({
            "type": "agent.spawn",
            "ts": rfc3339(ts(0)),
            "agent_id": self.id,
            "agent_type": self.profile.name,
            "ip": self.ip.to_string(),
        });
        if let Some(c) = &self.profile.context {
            spawn["deployment"] = c.clone().into();
        }
        line(records, spawn);
    }

    fn terminate(&self, records: &mut String, at: i64) {
        line(
            records,
            json!({"type": "agent.terminate", "ts": rfc3339(ts(at)), "agent_id": self.id}),
        );
    }

    fn dns(&self, records: &mut String, at: i64, name: &str, answer: Option<IpAddr>) {
        self.dns_via(records, at, name, "A", answer, self.resolver);
    }

    fn dns_via(
        &self,
        records: &mut String,
        at: i64,
        name: &str,
        qtype: &str,
        answer: Option<IpAddr>,
        resolver: IpAddr,
    ) {
        let answers: Vec<Value> = answer
            .map(|ip| json!({"data": ip.to_string(), "ttl": 3600}))
            .into_iter()
            .collect();
        line(
            records,
            json!({
                "type": "dns", "ts": rfc3339(ts(at)), "client_ip": self.ip.to_string(),
                "resolver_ip": resolver.to_string(), "qname": name, "qtype": qtype,
                "rcode": "NOERROR", "answers": answers,
            }),
        );
    }

    fn flow(&self, records: &mut String, at: i64, dst: IpAddr, port: u16, proto: Proto) {
        line(
            records,
            json!({
                "type": "flow", "ts": rfc3339(ts(at)), "src_ip": self.ip.to_string(),
                "src_port": 40000 + (at.rem_euclid(20000)) as u16, "dst_ip": dst.to_string(),
                "dst_port": port, "proto": proto.to_string().to_uppercase(),
                "bytes": 1200, "packets": 3,
            }),
        );
    }

    /// Reaches `r` (resolving its name first, if it has one) at `at`.
    fn reach(&self, records: &mut String, at: i64, r: &Reachable) {
        if let Some(name) = &r.name {
            self.dns(records, at, name, Some(r.ip));
        }
        self.flow(records, at, r.ip, r.port, r.proto);
    }

    /// One concrete destination per rule that names one (not `ANY`, not DNS).
    fn reachable(&self) -> Vec<Reachable> {
        let mut out = Vec::new();
        for (i, rule) in self.profile.allowed_outbound.iter().enumerate() {
            let Some(proto) = proto_of(rule) else {
                continue;
            };
            if is_dns_rule(rule) {
                continue;
            }
            let port = if rule.port.contains(443) {
                443
            } else {
                rule.port.low.max(1)
            };
            let fresh = self.fresh_ip(out.len());
            let (ip, name) = match &rule.destination {
                Destination::Any => continue,
                Destination::Ip(ip) => (*ip, None),
                Destination::Net(net) => (net.hosts().next().unwrap_or(net.addr()), None),
                Destination::Name(n) => (fresh, Some(n.clone())),
                Destination::OneLabelBelow(s) => (fresh, Some(format!("selftest.{s}"))),
                Destination::AnyDepthBelow(s) => (fresh, Some(format!("a.selftest.{s}"))),
            };
            out.push(Reachable {
                rule: i,
                proto,
                port,
                ip,
                name,
            });
        }
        out
    }

    fn trial(
        &self,
        mutation: &'static str,
        description: String,
        expect: Expect,
        expected_rules: &[&'static str],
        body: impl FnOnce(&mut String) -> i64,
    ) -> Trial {
        let mut records = String::new();
        self.spawn(&mut records);
        let end = body(&mut records);
        self.terminate(&mut records, end + 60);
        let lateness = self.policy.monitor.lateness_secs;
        Trial {
            profile: self.label.clone(),
            mutation,
            description,
            expect,
            expected_rules: expected_rules.to_vec(),
            records,
            advance_to: ts(end + 120 + lateness + self.policy.monitor.incident_quiet_secs),
            allowed_by: None,
        }
    }

    fn all_trials(&self, out: &mut Vec<Trial>) {
        let reachable = self.reachable();
        let p = self.profile;

        // Compliant: every allowed destination once, via the corporate resolver.
        out.push(self.trial(
            "compliant",
            format!(
                "reach each of the {} allowed destinations once",
                reachable.len()
            ),
            Expect::Quiet,
            &[],
            |rec| {
                for (i, r) in reachable.iter().enumerate() {
                    self.reach(rec, 10 + i as i64, r);
                }
                10 + reachable.len() as i64
            },
        ));

        for r in &reachable {
            let rule = &p.allowed_outbound[r.rule];
            let target = r.name.clone().unwrap_or_else(|| r.ip.to_string());
            // Port ±1, unless another rule of the profile allows that port there.
            for port in [r.port.checked_add(1), r.port.checked_sub(1)]
                .into_iter()
                .flatten()
            {
                let names: Vec<&str> = r.name.as_deref().into_iter().collect();
                if p.allowed_outbound.iter().any(|o| {
                    !matches!(o.destination, Destination::Any)
                        && o.allows(r.proto, port, r.ip, &names)
                }) {
                    continue;
                }
                let mut trial = self.trial(
                    "port_off_by_one",
                    format!(
                        "{target}:{port}/{} (rule `{rule}` allows {})",
                        r.proto, rule.port
                    ),
                    Expect::Alert,
                    &["egress.not_allowed"],
                    |rec| {
                        self.reach(
                            rec,
                            10,
                            &Reachable {
                                port,
                                ..r.clone_shallow()
                            },
                        );
                        10
                    },
                );
                trial.allowed_by = self.admitting(r.proto, port, r.ip, r.name.as_deref());
                out.push(trial);
            }
            // Names just outside the rule's.
            let mut names: Vec<(&'static str, String)> = Vec::new();
            match &rule.destination {
                Destination::Name(n) => {
                    if let Some(up) = parent(n) {
                        names.push(("sibling_domain", format!("selftest-sibling.{up}")));
                        names.push(("parent_domain", up.to_string()));
                    }
                    names.push(("suffix_appended", format!("{n}.selftest-attacker.net")));
                }
                Destination::OneLabelBelow(s) => {
                    names.push(("parent_domain", s.clone()));
                    names.push(("two_labels_below", format!("a.b.{s}")));
                    names.push(("lookalike_domain", format!("selftest.not{s}")));
                    names.push((
                        "suffix_appended",
                        format!("selftest.{s}.selftest-attacker.net"),
                    ));
                }
                Destination::AnyDepthBelow(s) => {
                    names.push(("lookalike_domain", format!("selftest.not{s}")));
                    names.push((
                        "suffix_appended",
                        format!("selftest.{s}.selftest-attacker.net"),
                    ));
                }
                _ => {}
            }
            for (mutation, name) in names {
                if self.explicitly_allowed(r.proto, r.port, &name) {
                    continue;
                }
                let ip = self.fresh_ip(50 + out.len());
                let mut trial = self.trial(
                    mutation,
                    format!("{name}:{}/{} (rule `{rule}`)", r.port, r.proto),
                    Expect::Alert,
                    &["egress.not_allowed"],
                    |rec| {
                        self.dns(rec, 10, &name, Some(ip));
                        self.flow(rec, 11, ip, r.port, r.proto);
                        11
                    },
                );
                trial.allowed_by = self.admitting(r.proto, r.port, ip, Some(&name));
                out.push(trial);
            }
            // Addresses just outside.
            let outside: Vec<IpAddr> = match &rule.destination {
                Destination::Ip(ip) => neighbours(*ip, *ip),
                Destination::Net(net) => neighbours(net.network(), net.broadcast()),
                _ => Vec::new(),
            };
            for ip in outside {
                if self.explicitly_allowed_ip(r.proto, r.port, ip) {
                    continue;
                }
                let mut trial = self.trial(
                    "address_outside_cidr",
                    format!("{ip}:{}/{} (rule `{rule}`)", r.port, r.proto),
                    Expect::Alert,
                    &["egress.not_allowed"],
                    |rec| {
                        self.flow(rec, 10, ip, r.port, r.proto);
                        10
                    },
                );
                trial.allowed_by = self.admitting(r.proto, r.port, ip, None);
                out.push(trial);
            }
        }

        // Somewhere no rule names, on every port the profile allows and on one it does not.
        let mut ports: Vec<(Proto, u16)> = p
            .allowed_outbound
            .iter()
            .filter(|r| !is_dns_rule(r))
            .filter_map(|r| {
                Some((
                    proto_of(r)?,
                    if r.port.contains(443) {
                        443
                    } else {
                        r.port.low
                    },
                ))
            })
            .collect();
        ports.push((Proto::Tcp, 4444));
        ports.dedup();
        for (proto, port) in ports {
            let ip = self.fresh_ip(600);
            let mut trial = self.trial(
                "unlisted_destination",
                format!("{ip}:{port}/{proto}, an address no rule names"),
                Expect::Alert,
                &["egress.not_allowed"],
                |rec| {
                    self.flow(rec, 10, ip, port, proto);
                    10
                },
            );
            trial.allowed_by = self.admitting(proto, port, ip, None);
            out.push(trial);
        }

        // DNS to a resolver that is not the corporate one.
        let foreign = IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8));
        out.push(self.trial(
            "foreign_resolver",
            format!("DNS to {foreign} instead of a corporate resolver"),
            Expect::Alert,
            &["dns.foreign_resolver"],
            |rec| {
                self.dns_via(rec, 10, "selftest.example.com", "A", None, foreign);
                self.flow(rec, 10, foreign, 53, Proto::Udp);
                10
            },
        ));

        // Tunnelling: many long unique subdomains of one domain.
        out.push(self.trial(
            "dns_tunnelling",
            "40 queries for unique 32-character subdomains of one domain".into(),
            Expect::Alert,
            &["dns.tunneling"],
            |rec| {
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                for i in 0..40 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let name = format!("{x:016x}{:016x}.t.selftest-tunnel.org", x.rotate_left(17));
                    self.dns_via(rec, 10 + i, &name, "TXT", None, self.resolver);
                }
                50
            },
        ));

        // Random-looking names (a domain generation algorithm).
        out.push(self.trial(
            "random_names",
            "queries for generated domains (xq7zk9w3v.com-style)".into(),
            Expect::Alert,
            &["dns.high_entropy"],
            |rec| {
                for (i, name) in ["xq7zk9w3v.com", "k8vz2qx7r.net", "zr4kq8xv2.org"]
                    .iter()
                    .enumerate()
                {
                    self.dns(rec, 10 + i as i64, name, None);
                }
                13
            },
        ));

        if let Some(first) = reachable.first() {
            // Volume just over baseline × multiplier within an hour.
            if let Some(base) = p.baseline_connections_per_hour {
                let multiplier = p
                    .volume_anomaly_threshold_multiplier
                    .unwrap_or(crate::rules::volume_anomaly::DEFAULT_MULTIPLIER);
                let count = (base as f64 * multiplier).floor() as i64 + 1;
                let spacing = (3000 / count.max(1)).max(1);
                out.push(self.trial(
                    "volume_over_threshold",
                    format!("{count} connections in an hour (baseline {base} × {multiplier} + 1)"),
                    Expect::Alert,
                    &["volume.anomaly"],
                    |rec| {
                        for i in 0..count {
                            self.reach(rec, 10 + i * spacing, first);
                        }
                        10 + count * spacing
                    },
                ));
            }
            // A retry loop: one destination past the sane rate.
            let rate = p.max_requests_per_minute as i64 + 1;
            out.push(self.trial(
                "retry_loop",
                format!("{rate} connections to one destination within a minute"),
                Expect::Alert,
                &["rate.runaway", "volume.anomaly"],
                |rec| {
                    if let Some(name) = &first.name {
                        self.dns(rec, 5, name, Some(first.ip));
                    }
                    for i in 0..rate {
                        self.flow(rec, 10 + i * 50 / rate, first.ip, first.port, first.proto);
                    }
                    60
                },
            ));
            // Active past spawn + lifetime + variance, by a minute.
            if let Some(lifetime) = p.expected_lifetime_minutes {
                let at = (lifetime as i64) * 60 + p.variance_secs() + 60;
                out.push(self.trial(
                    "outlives_lifetime",
                    format!("a connection {} minutes after spawn (lifetime {lifetime} + variance {} + 1)", at / 60, p.variance_secs() / 60),
                    Expect::Alert,
                    &["lifetime.exceeded"],
                    |rec| {
                        self.reach(rec, at, first);
                        at
                    },
                ));
            }
            // An action the declared plan does not contain.
            let planned = self.fresh_ip(650);
            out.push(self.trial(
                "undeclared_action",
                format!("a plan that declares only {planned}:443, then a call to {}", first.name.clone().unwrap_or(first.ip.to_string())),
                Expect::Alert,
                &["plan.undeclared"],
                |rec| {
                    line(
                        rec,
                        json!({
                            "type": "agent.plan", "ts": rfc3339(ts(5)), "agent_id": self.id,
                            "actions": [{"id": "declared", "dest": planned.to_string(), "port": 443, "proto": "tcp",
                                         "not_before": rfc3339(ts(0)), "not_after": rfc3339(ts(3600))}],
                        }),
                    );
                    self.reach(rec, 10, first);
                    10
                },
            ));
            // A connection the agent's heartbeat does not report.
            out.push(self.trial(
                "hidden_connection",
                format!(
                    "a heartbeat that reports nothing while {} was reached",
                    first.name.clone().unwrap_or(first.ip.to_string())
                ),
                Expect::Alert,
                &["heartbeat.mismatch"],
                |rec| {
                    self.reach(rec, 30, first);
                    line(
                        rec,
                        json!({
                            "type": "agent.heartbeat", "ts": rfc3339(ts(300)), "agent_id": self.id,
                            "window_start": rfc3339(ts(0)), "window_end": rfc3339(ts(300)),
                            "connections": [],
                        }),
                    );
                    300
                },
            ));
        }
    }

    /// The rule (of the profile, or the approvals) that admits this connection.
    fn admitting(&self, proto: Proto, port: u16, ip: IpAddr, name: Option<&str>) -> Option<String> {
        let names: Vec<&str> = name.into_iter().collect();
        if let Some(rule) = self.profile.allowing_rule(proto, port, ip, &names) {
            return Some(format!("allowed_outbound rule `{rule}`"));
        }
        self.policy
            .approvals
            .iter()
            .find(|r| r.allows(proto, port, ip, &names))
            .map(|rule| format!("[approvals] entry `{rule}`"))
    }

    /// A rule of the profile names this host exactly (so it is not a mutation).
    fn explicitly_allowed(&self, proto: Proto, port: u16, name: &str) -> bool {
        self.profile.allowed_outbound.iter().any(|r| {
            matches!(&r.destination, Destination::Name(n) if n == name)
                && r.protocol.matches(proto)
                && r.port.contains(port)
        })
    }

    fn explicitly_allowed_ip(&self, proto: Proto, port: u16, ip: IpAddr) -> bool {
        self.profile.allowed_outbound.iter().any(|r| {
            matches!(r.destination, Destination::Ip(_) | Destination::Net(_))
                && r.allows(proto, port, ip, &[])
        })
    }
}

impl Reachable {
    fn clone_shallow(&self) -> Reachable {
        Reachable {
            rule: self.rule,
            proto: self.proto,
            port: self.port,
            ip: self.ip,
            name: self.name.clone(),
        }
    }
}

/// The addresses just below `low` and just above `high`.
fn neighbours(low: IpAddr, high: IpAddr) -> Vec<IpAddr> {
    let step = |ip: IpAddr, up: bool| -> Option<IpAddr> {
        match ip {
            IpAddr::V4(v4) => {
                let n = u32::from(v4);
                let m = if up {
                    n.checked_add(1)?
                } else {
                    n.checked_sub(1)?
                };
                Some(IpAddr::V4(Ipv4Addr::from(m)))
            }
            IpAddr::V6(v6) => {
                let n = u128::from(v6);
                let m = if up {
                    n.checked_add(1)?
                } else {
                    n.checked_sub(1)?
                };
                Some(IpAddr::V6(std::net::Ipv6Addr::from(m)))
            }
        }
    };
    [step(low, false), step(high, true)]
        .into_iter()
        .flatten()
        .collect()
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
        let results = run(include_str!("../../testdata/policy.toml"));
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
        let policy = include_str!("../../testdata/policy.toml").replace(
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
        let policy = include_str!("../../testdata/policy.toml")
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
