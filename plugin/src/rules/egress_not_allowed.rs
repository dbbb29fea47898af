//! `egress.not_allowed`: an agent connected to a destination, port or protocol
//! its profile's `allowed_outbound` does not list.
//!
//! The destination is judged by address and by every name the agent's own DNS
//! answers gave that address, so FQDN rules hold for IP-level flows. An agent
//! whose profile is missing from the policy is allowed nothing.

use super::{Finding, RuleInfo, Severity, Subject, endpoint, ip_text};
use crate::policy::Profile;
use crate::record::Flow;
use crate::registry::Agent;

pub const RULE: RuleInfo = RuleInfo {
    id: "egress.not_allowed",
    description: "An agent connected to a destination/port/protocol its profile does not allow.",
    severity: Severity::High,
    tags: &["egress", "policy", "network"],
};

/// Judges one outbound flow of `agent`; `names` are the DNS names the agent had for the destination.
pub fn check(
    flow: &Flow,
    agent: &Agent,
    profile: Option<&Profile>,
    names: &[&str],
) -> Option<Finding> {
    if profile.is_some_and(|p| {
        p.allowing_rule(flow.proto, flow.dst_port, flow.dst, names)
            .is_some()
    }) {
        return None;
    }
    // Only a firing rule pays for the text, built by hand (see `Finding::new`).
    let dst = ip_text(flow.dst);
    let target = endpoint(names.first().copied().unwrap_or(&dst), flow.dst_port);
    let subject = Subject::Agent(agent);
    let mut summary = String::with_capacity(128);
    subject.push_to(&mut summary);
    summary.push_str(" connected to ");
    summary.push_str(&target);
    summary.push('/');
    flow.proto.push_name(&mut summary);
    // A call known by name only (through a proxy) has no address to show.
    if !names.is_empty() && !flow.dst.is_unspecified() {
        summary.push_str(" (");
        summary.push_str(&dst);
        summary.push(')');
    }
    match profile {
        None => {
            summary.push_str(", but profile \"");
            summary.push_str(&agent.info.profile);
            summary.push_str("\" is not in the policy, so nothing is allowed");
        }
        Some(_) => summary.push_str(", not in allowed_outbound"),
    }
    Some(Finding::new(&RULE, &subject, Some(&target), summary))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, flow, policy};
    use super::*;
    use crate::net::Proto;

    #[test]
    fn fires_on_a_destination_outside_allowed_outbound() {
        let p = policy();
        let a = agent("data_collector_v1");
        let f = flow("10.20.0.15", "203.0.113.9", 8443, Proto::Tcp);
        let finding = check(&f, &a, p.profile("data_collector_v1", None), &[]).expect("must fire");
        assert_eq!(
            finding.incident,
            "0x8a3f/egress.not_allowed/203.0.113.9:8443"
        );
        assert_eq!(
            finding.summary,
            "data_collector_v1 0x8a3f connected to 203.0.113.9:8443/tcp, not in allowed_outbound"
        );
        assert_eq!(finding.rule.severity, Severity::High);
    }

    #[test]
    fn near_miss_allowed_name_via_dns_does_not_fire() {
        let p = policy();
        let a = agent("data_collector_v1");
        let f = flow("10.20.0.15", "93.184.216.34", 443, Proto::Tcp);
        let profile = p.profile("data_collector_v1", None);
        assert!(check(&f, &a, profile, &["api.internal.example.net"]).is_none());
        // Same address without the DNS answer, or on the next port, or another protocol: fires.
        assert!(check(&f, &a, profile, &[]).is_some());
        assert!(
            check(
                &flow("10.20.0.15", "93.184.216.34", 444, Proto::Tcp),
                &a,
                profile,
                &["api.internal.example.net"]
            )
            .is_some()
        );
        assert!(
            check(
                &flow("10.20.0.15", "93.184.216.34", 443, Proto::Udp),
                &a,
                profile,
                &["api.internal.example.net"]
            )
            .is_some()
        );
    }

    #[test]
    fn port_ranges_and_cidrs_bound_exactly() {
        let p = policy();
        let a = agent("data_collector_v1");
        let profile = p.profile("data_collector_v1", None);
        assert!(
            check(
                &flow("10.20.0.15", "10.30.0.255", 8100, Proto::Tcp),
                &a,
                profile,
                &[]
            )
            .is_none()
        );
        assert!(
            check(
                &flow("10.20.0.15", "10.30.1.0", 8100, Proto::Tcp),
                &a,
                profile,
                &[]
            )
            .is_some()
        );
        assert!(
            check(
                &flow("10.20.0.15", "10.30.0.1", 8101, Proto::Tcp),
                &a,
                profile,
                &[]
            )
            .is_some()
        );
    }

    #[test]
    fn unknown_profile_allows_nothing_and_says_why() {
        let a = agent("ghost_v9");
        let finding = check(
            &flow("10.20.0.15", "93.184.216.34", 443, Proto::Tcp),
            &a,
            None,
            &["api.internal.example.net"],
        )
        .unwrap();
        assert!(
            finding
                .summary
                .contains("profile \"ghost_v9\" is not in the policy"),
            "{}",
            finding.summary
        );
        assert_eq!(
            finding.incident,
            "0x8a3f/egress.not_allowed/api.internal.example.net:443"
        );
    }
}
