//! Where the agent may connect: once to each allowed destination (quiet),
//! and just outside each rule (a port one off, a sibling, parent or look-alike
//! name, a neighbouring address, an address no rule names).

use super::agent::{Reachable, TestAgent};
use super::agent::{is_dns_rule, neighbours, parent, proto_of};
use super::{Expect, Trial};
use crate::net::Proto;
use crate::policy::Destination;
use std::net::IpAddr;

/// Every allowed destination reached once, via the corporate resolver: no alert.
pub(super) fn compliant(agent: &TestAgent, reachable: &[Reachable], out: &mut Vec<Trial>) {
    // Compliant: every allowed destination once, via the corporate resolver.
    out.push(agent.trial(
        "compliant",
        format!(
            "reach each of the {} allowed destinations once",
            reachable.len()
        ),
        Expect::Quiet,
        &[],
        |rec| {
            for (i, r) in reachable.iter().enumerate() {
                agent.reach(rec, 10 + i as i64, r);
            }
            10 + reachable.len() as i64
        },
    ));
}

/// Each allowed destination mutated just outside its rule.
pub(super) fn just_outside(agent: &TestAgent, reachable: &[Reachable], out: &mut Vec<Trial>) {
    let p = agent.profile;
    for r in reachable {
        let rule = &p.allowed_outbound[r.rule];
        let target = r.name.clone().unwrap_or_else(|| r.ip.to_string());
        // Port ±1, unless another rule of the profile allows that port there.
        for port in [r.port.checked_add(1), r.port.checked_sub(1)]
            .into_iter()
            .flatten()
        {
            let names: Vec<&str> = r.name.as_deref().into_iter().collect();
            if p.allowed_outbound.iter().any(|o| {
                !matches!(o.destination, Destination::Any) && o.allows(r.proto, port, r.ip, &names)
            }) {
                continue;
            }
            let mut trial = agent.trial(
                "port_off_by_one",
                format!(
                    "{target}:{port}/{} (rule `{rule}` allows {})",
                    r.proto, rule.port
                ),
                Expect::Alert,
                &["egress.not_allowed"],
                |rec| {
                    agent.reach(
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
            trial.allowed_by = agent.admitting(r.proto, port, r.ip, r.name.as_deref());
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
            if agent.explicitly_allowed(r.proto, r.port, &name) {
                continue;
            }
            let ip = agent.fresh_ip(50 + out.len());
            let mut trial = agent.trial(
                mutation,
                format!("{name}:{}/{} (rule `{rule}`)", r.port, r.proto),
                Expect::Alert,
                &["egress.not_allowed"],
                |rec| {
                    agent.dns(rec, 10, &name, Some(ip));
                    agent.flow(rec, 11, ip, r.port, r.proto);
                    11
                },
            );
            trial.allowed_by = agent.admitting(r.proto, r.port, ip, Some(&name));
            out.push(trial);
        }
        // Addresses just outside.
        let outside: Vec<IpAddr> = match &rule.destination {
            Destination::Ip(ip) => neighbours(*ip, *ip),
            Destination::Net(net) => neighbours(net.network(), net.broadcast()),
            _ => Vec::new(),
        };
        for ip in outside {
            if agent.explicitly_allowed_ip(r.proto, r.port, ip) {
                continue;
            }
            let mut trial = agent.trial(
                "address_outside_cidr",
                format!("{ip}:{}/{} (rule `{rule}`)", r.port, r.proto),
                Expect::Alert,
                &["egress.not_allowed"],
                |rec| {
                    agent.flow(rec, 10, ip, r.port, r.proto);
                    10
                },
            );
            trial.allowed_by = agent.admitting(r.proto, r.port, ip, None);
            out.push(trial);
        }
    }
}

/// Somewhere no rule names, on every port the profile allows and on one it does not.
pub(super) fn unlisted(agent: &TestAgent, out: &mut Vec<Trial>) {
    let p = agent.profile;
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
        let ip = agent.fresh_ip(600);
        let mut trial = agent.trial(
            "unlisted_destination",
            format!("{ip}:{port}/{proto}, an address no rule names"),
            Expect::Alert,
            &["egress.not_allowed"],
            |rec| {
                agent.flow(rec, 10, ip, port, proto);
                10
            },
        );
        trial.allowed_by = agent.admitting(proto, port, ip, None);
        out.push(trial);
    }
}
