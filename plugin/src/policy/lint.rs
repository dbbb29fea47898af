//! `clawwatch check`'s lints: a policy can load and still not say what its
//! author meant. Each lint names where it is and what to do about it.

use super::{Destination, Policy, Ports, Profile, Protocol, Rule};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Worth knowing; the policy does what it says.
    Info,
    /// Probably not what was meant: `check` exits 1.
    Warning,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub level: Level,
    /// Stable id, e.g. `over-broad-destination`.
    pub code: &'static str,
    /// Where: `agent_profile."x".allowed_outbound[2]`.
    pub place: String,
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}[{}] {}: {}",
            self.level.as_str(),
            self.code,
            self.place,
            self.message
        )
    }
}

/// Where operating systems pick the source ports of outgoing connections
/// (Linux's default range, inside IANA's dynamic ports).
const EPHEMERAL_LOW: u16 = 32768;
const EPHEMERAL_HIGH: u16 = 60999;

fn profile_place(p: &Profile) -> String {
    match &p.context {
        Some(ctx) => format!("agent_profile.\"{}\".context.\"{ctx}\"", p.name),
        None => format!("agent_profile.\"{}\"", p.name),
    }
}

fn is_dns(rule: &Rule) -> bool {
    rule.port.contains(53)
        && rule.port.low == 53
        && rule.port.high == 53
        && matches!(rule.protocol, Protocol::Udp | Protocol::Tcp | Protocol::Any)
}

/// Top-level domains whose registrations are restricted to vetted institutions.
const RESTRICTED_SUFFIXES: &[&str] = &["edu", "gov", "mil", "int"];

/// Whether a name's suffix is itself a public suffix (`com`, `co.uk`, `s3.amazonaws.com`).
fn is_public_suffix(name: &str) -> bool {
    psl::suffix_str(name) == Some(name)
}

/// Whether `a` admits everything `b` admits.
fn covers(a: &Rule, b: &Rule) -> bool {
    let protocol = a.protocol == Protocol::Any || a.protocol == b.protocol;
    let ports = a.port.low <= b.port.low && b.port.high <= a.port.high;
    protocol && ports && destination_covers(&a.destination, &b.destination)
}

fn below(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix)
        .is_some_and(|p| p.ends_with('.') && p.len() > 1)
}

fn destination_covers(a: &Destination, b: &Destination) -> bool {
    use Destination::*;
    match (a, b) {
        (Any, _) => true,
        (_, Any) => false,
        (Net(net), Ip(ip)) => net.contains(ip),
        (Net(outer), Net(inner)) => outer.contains(inner),
        (AnyDepthBelow(s), Name(n)) => below(n, s),
        (AnyDepthBelow(s), OneLabelBelow(t) | AnyDepthBelow(t)) => t == s || below(t, s),
        (OneLabelBelow(s), Name(n)) => below(n, s) && !n[..n.len() - s.len() - 1].contains('.'),
        (a, b) => a == b,
    }
}

fn rule_lints(rules: &[Rule], place: &str, approvals: bool, out: &mut Vec<Lint>) {
    for (i, rule) in rules.iter().enumerate() {
        let here = format!("{place}[{i}]");
        if let Some(j) = rules[..i].iter().position(|r| r == rule) {
            out.push(Lint {
                level: Level::Warning,
                code: "duplicate-rule",
                place: here.clone(),
                message: format!("repeats [{j}] ({rule}); remove one"),
            });
            continue;
        }
        if let Some(j) = rules
            .iter()
            .enumerate()
            .position(|(j, r)| j != i && r != rule && covers(r, rule))
        {
            out.push(Lint { level: Level::Warning, code: "redundant-rule", place: here.clone(), message: format!("{rule} is already allowed by [{j}] ({}); it can never be the rule that matters", rules[j]) });
        }
        match &rule.destination {
            Destination::Any if approvals => out.push(Lint { level: Level::Warning, code: "over-broad-destination", place: here.clone(), message: format!("{rule} approves every unplanned call to any host on {}", rule.port) }),
            Destination::Any if !is_dns(rule) => out.push(Lint {
                level: Level::Warning,
                code: "over-broad-destination",
                place: here.clone(),
                message: format!("{rule} allows any host: name the hosts this agent type needs (ANY is meant for DNS, port 53)"),
            }),
            Destination::AnyDepthBelow(s) | Destination::OneLabelBelow(s) if is_public_suffix(s) => out.push(if RESTRICTED_SUFFIXES.contains(&s.as_str()) {
                Lint { level: Level::Info, code: "broad-destination", place: here.clone(), message: format!("{} covers every domain under `{s}` (registration there is restricted)", rule.destination) }
            } else {
                Lint {
                    level: Level::Warning,
                    code: "over-broad-destination",
                    place: here.clone(),
                    message: format!("{} covers every domain under the public suffix `{s}`: anyone can register a name there", rule.destination),
                }
            }),
            Destination::Net(net) if net.prefix_len() < if net.addr().is_ipv4() { 8 } else { 32 } => {
                out.push(Lint { level: Level::Warning, code: "over-broad-destination", place: here.clone(), message: format!("{net} covers a large share of the Internet") })
            }
            _ => {}
        }
        if rule.port == Ports::ANY
            && rule.protocol != Protocol::Icmp
            && !matches!(rule.destination, Destination::Any)
        {
            out.push(Lint {
                level: Level::Info,
                code: "any-port",
                place: here,
                message: format!("{rule} allows every port of {}", rule.destination),
            });
        }
    }
}

/// Lints a loaded policy. `expected_types`: the agent types the fleet runs, if known.
pub fn lint(policy: &Policy, expected_types: Option<&[String]>) -> Vec<Lint> {
    let mut out = Vec::new();
    let m = &policy.monitor;
    if m.agent_subnets.is_empty() {
        out.push(Lint {
            level: Level::Info,
            code: "rule-off",
            place: "monitor".into(),
            message: "no agent_subnets: egress.unknown_agent cannot fire".into(),
        });
    }
    if m.corp_resolvers.is_empty() {
        out.push(Lint {
            level: Level::Info,
            code: "rule-off",
            place: "monitor".into(),
            message: "no corp_resolvers: dns.foreign_resolver cannot fire".into(),
        });
    }
    rule_lints(&policy.approvals, "approvals.allow", true, &mut out);
    for p in policy.all_profiles() {
        let place = profile_place(p);
        if p.allowed_outbound.is_empty() {
            out.push(Lint {
                level: Level::Info,
                code: "allows-nothing",
                place: place.clone(),
                message: "allowed_outbound is empty: every connection is egress.not_allowed".into(),
            });
        }
        if p.context.is_none()
            || p.allowed_outbound
                != policy
                    .profile(&p.name, None)
                    .map(|b| b.allowed_outbound.clone())
                    .unwrap_or_default()
        {
            rule_lints(
                &p.allowed_outbound,
                &format!("{place}.allowed_outbound"),
                false,
                &mut out,
            );
        }
        if p.volume_anomaly_threshold_multiplier.is_some()
            && p.baseline_connections_per_hour.is_none()
            && p.baseline_bytes_per_hour.is_none()
        {
            out.push(Lint {
                level: Level::Warning,
                code: "cannot-fire",
                place: place.clone(),
                message: "volume_anomaly_threshold_multiplier without baseline_connections_per_hour or baseline_bytes_per_hour: volume.anomaly cannot fire".into(),
            });
        }
        if p.baseline_connections_per_hour == Some(0) {
            out.push(Lint {
                level: Level::Warning,
                code: "cannot-fire",
                place: place.clone(),
                message: "baseline_connections_per_hour = 0: every connection is a volume.anomaly"
                    .into(),
            });
        }
        if p.adaptive_baseline
            && p.baseline_connections_per_hour.is_none()
            && p.baseline_bytes_per_hour.is_none()
        {
            out.push(Lint {
                level: Level::Warning,
                code: "cannot-fire",
                place: place.clone(),
                message: "adaptive_baseline without a baseline to adapt".into(),
            });
        }
        if p.learning {
            out.push(Lint {
                level: Level::Info,
                code: "learning",
                place: place.clone(),
                message:
                    "learning mode: volume.anomaly and rate.runaway are recorded, never alerted"
                        .into(),
            });
        }
        for (i, l) in p.listen.iter().flatten().enumerate() {
            let place = format!("{place}.listen[{i}]");
            let ephemeral = l.port.low <= EPHEMERAL_HIGH && l.port.high >= EPHEMERAL_LOW;
            if l.port == Ports::ANY || ephemeral {
                out.push(Lint {
                    level: Level::Warning,
                    code: "over-broad-listen",
                    place,
                    message: format!(
                        "port {} includes the ephemeral ports ({EPHEMERAL_LOW}-{EPHEMERAL_HIGH}) the agents' own calls leave from: those calls would pass as answers and be judged only lateness_minutes later; list the service ports",
                        l.port
                    ),
                });
            } else if l.protocol == Protocol::Icmp {
                out.push(Lint {
                    level: Level::Warning,
                    code: "cannot-fire",
                    place,
                    message: "ICMP has no ports to serve on: this entry matches nothing".into(),
                });
            }
        }
        if p.max_requests_per_minute > 100_000 {
            out.push(Lint {
                level: Level::Warning,
                code: "cannot-fire",
                place: place.clone(),
                message: format!(
                    "max_requests_per_minute = {}: rate.runaway effectively never fires",
                    p.max_requests_per_minute
                ),
            });
        }
    }
    // Profiles the [inputs] tables name: a missing one leaves those agents allowed nothing.
    let oc = &policy.inputs.openclaw;
    let named = (oc
        .agent_type
        .iter()
        .map(|t| ("inputs.openclaw", "agent_type", t)))
    .chain(
        oc.agent_types
            .values()
            .map(|t| ("inputs.openclaw", "agent_types", t)),
    )
    .chain(
        oc.gateway
            .iter()
            .map(|g| ("inputs.openclaw", "gateway_profile", &g.profile)),
    )
    .chain(
        (policy.inputs.nanoclaw.framework.agent_type.iter())
            .map(|t| ("inputs.nanoclaw", "agent_type", t)),
    );
    for (place, key, name) in named {
        if policy.profile(name, None).is_none() {
            out.push(Lint {
                level: Level::Warning,
                code: "missing-profile",
                place: place.into(),
                message: format!(
                    "{key} names profile \"{name}\", which is not in the policy: those agents are allowed nothing"
                ),
            });
        }
    }
    if let Some(types) = expected_types {
        for name in policy.profile_names() {
            if !types.iter().any(|t| t == name) {
                out.push(Lint {
                    level: Level::Warning,
                    code: "unused-profile",
                    place: format!("agent_profile.\"{name}\""),
                    message: "no expected agent type uses this profile".into(),
                });
            }
        }
        for t in types {
            if policy.profile(t, None).is_none() {
                out.push(Lint {
                    level: Level::Warning,
                    code: "missing-profile",
                    place: "agent_profile".into(),
                    message: format!(
                        "agent type \"{t}\" has no profile: its agents are allowed nothing"
                    ),
                });
            }
        }
    }
    out.sort_by(|a, b| b.level.cmp(&a.level).then_with(|| a.place.cmp(&b.place)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(text: &str, types: Option<&[String]>) -> Vec<(String, &'static str)> {
        lint(&Policy::from_toml(text).unwrap(), types)
            .into_iter()
            .map(|l| (l.place, l.code))
            .collect()
    }

    const BASE: &str =
        "[monitor]\nagent_subnets = [\"10.20.0.0/16\"]\ncorp_resolvers = [\"10.0.0.53\"]\n";

    #[test]
    fn profiles_the_inputs_name_must_exist() {
        let text = format!(
            "{BASE}[inputs.openclaw]\nagent_types = {{ ops = \"operator\" }}\ngateway_addresses = [\"10.20.6.1\"]\n\n[agent_profile.\"operator\"]\nallowed_outbound = [{{ protocol = \"TCP\", port = 443, destination = \"example.org\" }}]\n"
        );
        let lints = lint(&Policy::from_toml(&text).unwrap(), None);
        let missing: Vec<_> = lints
            .iter()
            .filter(|l| l.code == "missing-profile")
            .collect();
        assert_eq!(missing.len(), 1, "{lints:?}");
        assert!(
            missing[0]
                .message
                .contains("gateway_profile names profile \"openclaw_gateway\"")
        );
    }

    #[test]
    fn the_bundled_policy_has_no_warning() {
        let lints = lint(
            &Policy::from_toml(include_str!("../../../testdata/policy.toml")).unwrap(),
            None,
        );
        assert!(lints.iter().all(|l| l.level == Level::Info), "{lints:#?}");
    }

    #[test]
    fn any_on_tcp_443_is_over_broad_but_on_dns_it_is_not() {
        let p = format!(
            "{BASE}[agent_profile.\"x\"]\nallowed_outbound = [{{ protocol = \"TCP\", port = 443, destination = \"ANY\" }}, {{ protocol = \"UDP\", port = 53, destination = \"ANY\" }}]\n"
        );
        assert_eq!(
            codes(&p, None),
            [(
                "agent_profile.\"x\".allowed_outbound[0]".to_string(),
                "over-broad-destination"
            )]
        );
    }

    #[test]
    fn wildcards_on_public_suffixes_and_huge_networks_are_over_broad() {
        let p = format!(
            "{BASE}[agent_profile.\"x\"]\nallowed_outbound = [{{ protocol = \"TCP\", port = 443, destination = \"**.com\" }}, {{ protocol = \"TCP\", port = 443, destination = \"*.co.uk\" }}, {{ protocol = \"TCP\", port = 443, destination = \"0.0.0.0/1\" }}, {{ protocol = \"TCP\", port = 443, destination = \"**.edu.example\" }}]\n"
        );
        let found = codes(&p, None);
        assert_eq!(
            found
                .iter()
                .filter(|(_, c)| *c == "over-broad-destination")
                .count(),
            3,
            "{found:?}"
        );
        assert!(
            !found.iter().any(|(place, _)| place.ends_with("[3]")),
            "a wildcard under a registered domain is fine"
        );
    }

    #[test]
    fn duplicates_and_rules_another_already_covers() {
        let p = format!(
            "{BASE}[agent_profile.\"x\"]\nallowed_outbound = [{{ protocol = \"TCP\", port = 443, destination = \"**.example.net\" }}, {{ protocol = \"TCP\", port = 443, destination = \"api.example.net\" }}, {{ protocol = \"TCP\", port = 443, destination = \"**.example.net\" }}, {{ protocol = \"TCP\", port = \"8000-8100\", destination = \"10.30.0.0/24\" }}, {{ protocol = \"TCP\", port = 8080, destination = \"10.30.0.7\" }}, {{ protocol = \"UDP\", port = 443, destination = \"api.example.net\" }}]\n"
        );
        let found = codes(&p, None);
        assert!(
            found.contains(&(
                "agent_profile.\"x\".allowed_outbound[1]".into(),
                "redundant-rule"
            )),
            "{found:?}"
        );
        assert!(
            found.contains(&(
                "agent_profile.\"x\".allowed_outbound[2]".into(),
                "duplicate-rule"
            )),
            "{found:?}"
        );
        assert!(
            found.contains(&(
                "agent_profile.\"x\".allowed_outbound[4]".into(),
                "redundant-rule"
            )),
            "{found:?}"
        );
        assert!(
            !found.iter().any(|(place, _)| place.ends_with("[5]")),
            "another protocol is not covered: {found:?}"
        );
    }

    #[test]
    fn thresholds_that_cannot_fire_and_rules_that_are_off() {
        let p = "[agent_profile.\"x\"]\nvolume_anomaly_threshold_multiplier = 3.0\nallowed_outbound = []\n";
        let found = codes(p, None);
        assert!(
            found.contains(&("agent_profile.\"x\"".into(), "cannot-fire")),
            "{found:?}"
        );
        assert_eq!(found.iter().filter(|(_, c)| *c == "rule-off").count(), 2);
        assert!(found.contains(&("agent_profile.\"x\"".into(), "allows-nothing")));
    }

    #[test]
    fn profiles_and_expected_agent_types_are_matched() {
        let p = format!(
            "{BASE}[agent_profile.\"a\"]\nallowed_outbound = []\n[agent_profile.\"b\"]\nallowed_outbound = []\n"
        );
        let found = codes(&p, Some(&["a".to_string(), "c".to_string()]));
        assert!(
            found.contains(&("agent_profile.\"b\"".into(), "unused-profile")),
            "{found:?}"
        );
        assert!(
            found.contains(&("agent_profile".into(), "missing-profile")),
            "{found:?}"
        );
    }

    #[test]
    fn listen_ports_that_cover_the_ephemeral_range_are_over_broad() {
        let p = format!(
            "{BASE}[agent_profile.\"api\"]\nallowed_outbound = [{{ protocol = \"UDP\", port = 53, destination = \"10.0.0.53\" }}]\nlisten = [{{ protocol = \"TCP\", port = 8080 }}, {{ protocol = \"TCP\", port = \"ANY\" }}, {{ protocol = \"UDP\", port = \"30000-40000\" }}, {{ protocol = \"ICMP\", port = 1 }}]\n"
        );
        assert_eq!(
            codes(&p, None),
            [
                (
                    "agent_profile.\"api\".listen[1]".to_string(),
                    "over-broad-listen"
                ),
                (
                    "agent_profile.\"api\".listen[2]".to_string(),
                    "over-broad-listen"
                ),
                ("agent_profile.\"api\".listen[3]".to_string(), "cannot-fire"),
            ]
        );
    }

    #[test]
    fn approvals_of_any_host_are_over_broad() {
        let p = format!(
            "{BASE}[approvals]\nallow = [{{ protocol = \"TCP\", port = 443, destination = \"ANY\" }}]\n"
        );
        assert_eq!(
            codes(&p, None),
            [("approvals.allow[0]".to_string(), "over-broad-destination")]
        );
    }
}
