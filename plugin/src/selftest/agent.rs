//! The agent a profile's trials are played by, and the records it writes.

use super::{Expect, Trial, line, rfc3339, ts};
use crate::net::Proto;
use crate::policy::{Destination, Policy, Profile, Protocol, Rule};
use serde_json::Value;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};

/// The agent one profile's trials are played by.
pub(super) struct TestAgent<'p> {
    pub policy: &'p Policy,
    pub profile: &'p Profile,
    label: String,
    pub id: String,
    ip: IpAddr,
    pub resolver: IpAddr,
}

/// A destination the profile allows, made concrete.
pub(super) struct Reachable {
    pub rule: usize,
    pub proto: Proto,
    pub port: u16,
    pub ip: IpAddr,
    /// The name that was resolved to reach it, when the rule names hosts.
    pub name: Option<String>,
}

pub(super) fn proto_of(rule: &Rule) -> Option<Proto> {
    match rule.protocol {
        Protocol::Tcp | Protocol::Any => Some(Proto::Tcp),
        Protocol::Udp => Some(Proto::Udp),
        Protocol::Icmp => None,
    }
}

pub(super) fn is_dns_rule(rule: &Rule) -> bool {
    rule.port.contains(53) && rule.port.low == rule.port.high
}

pub(super) fn parent(name: &str) -> Option<&str> {
    let (_, rest) = name.split_once('.')?;
    rest.contains('.').then_some(rest)
}

impl<'p> TestAgent<'p> {
    pub(super) fn new(policy: &'p Policy, profile: &'p Profile, n: usize) -> TestAgent<'p> {
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
    pub(super) fn fresh_ip(&self, k: usize) -> IpAddr {
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

    pub(super) fn spawn(&self, records: &mut String) {
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

    pub(super) fn terminate(&self, records: &mut String, at: i64) {
        line(
            records,
            json!({"type": "agent.terminate", "ts": rfc3339(ts(at)), "agent_id": self.id}),
        );
    }

    pub(super) fn dns(&self, records: &mut String, at: i64, name: &str, answer: Option<IpAddr>) {
        self.dns_via(records, at, name, "A", answer, self.resolver);
    }

    pub(super) fn dns_via(
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

    pub(super) fn flow(&self, records: &mut String, at: i64, dst: IpAddr, port: u16, proto: Proto) {
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
    pub(super) fn reach(&self, records: &mut String, at: i64, r: &Reachable) {
        if let Some(name) = &r.name {
            self.dns(records, at, name, Some(r.ip));
        }
        self.flow(records, at, r.ip, r.port, r.proto);
    }

    /// One concrete destination per rule that names one (not `ANY`, not DNS).
    pub(super) fn reachable(&self) -> Vec<Reachable> {
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

    pub(super) fn trial(
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

    /// The rule (of the profile, or the approvals) that admits this connection.
    pub(super) fn admitting(
        &self,
        proto: Proto,
        port: u16,
        ip: IpAddr,
        name: Option<&str>,
    ) -> Option<String> {
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
    pub(super) fn explicitly_allowed(&self, proto: Proto, port: u16, name: &str) -> bool {
        self.profile.allowed_outbound.iter().any(|r| {
            matches!(&r.destination, Destination::Name(n) if n == name)
                && r.protocol.matches(proto)
                && r.port.contains(port)
        })
    }

    pub(super) fn explicitly_allowed_ip(&self, proto: Proto, port: u16, ip: IpAddr) -> bool {
        self.profile.allowed_outbound.iter().any(|r| {
            matches!(r.destination, Destination::Ip(_) | Destination::Net(_))
                && r.allows(proto, port, ip, &[])
        })
    }
}

impl Reachable {
    pub(super) fn clone_shallow(&self) -> Reachable {
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
pub(super) fn neighbours(low: IpAddr, high: IpAddr) -> Vec<IpAddr> {
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
