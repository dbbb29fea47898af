//! `egress.unknown_agent`: traffic from an address inside `agent_subnets` that
//! no live agent held when the traffic started.
//!
//! One incident per source address (not per destination): a rogue process
//! reaching a hundred hosts is one thing to investigate, not a hundred.

use super::{Detector, Finding, RuleInfo, Seen, Severity, Subject};
use crate::policy::Monitor;
use std::net::IpAddr;

pub const RULE: RuleInfo = RuleInfo {
    id: "egress.unknown_agent",
    description: "Traffic from an agent subnet address that no live agent holds.",
    severity: Severity::Medium,
    tags: &["egress", "inventory", "network"],
};

/// `what` describes the traffic (e.g. `connected to 1.2.3.4:443/tcp`); it is
/// only worded when the rule fires, not for every flow from outside.
pub fn check(src: IpAddr, monitor: &Monitor, what: impl FnOnce() -> String) -> Option<Finding> {
    if !monitor.in_agent_subnet(src) {
        return None;
    }
    let subject = Subject::Address(src);
    Some(Finding::new(
        &RULE,
        &subject,
        None,
        format!(
            "{subject} in an agent subnet {}, but no live agent holds that address",
            what()
        ),
    ))
}

/// Runs on records from an address no live agent held.
pub struct UnknownAgent;

impl Detector for UnknownAgent {
    fn rule(&self) -> &'static RuleInfo {
        &RULE
    }

    fn inspect(&self, seen: &Seen) -> Option<Finding> {
        match seen.subject {
            Subject::Address(src) => check(src, seen.monitor, || seen.event.describe()),
            Subject::Agent(_) | Subject::Log(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Observed;
    use super::super::test_support::{agent, flow, policy};
    use super::*;
    use crate::net::Proto;

    #[test]
    fn fires_inside_agent_subnets_only() {
        let p = policy();
        let flow = flow("10.20.9.9", "198.51.100.1", 443, Proto::Tcp);
        let seen = |subject| Seen {
            subject,
            profile: None,
            monitor: &p.monitor,
            event: Observed::Flow {
                flow: &flow,
                names: &[],
            },
        };
        let f = UnknownAgent
            .inspect(&seen(Subject::Address(flow.src)))
            .expect("must fire");
        assert_eq!(f.incident, "10.20.9.9/egress.unknown_agent");
        assert_eq!(
            f.summary,
            "unknown host 10.20.9.9 in an agent subnet connected to 198.51.100.1:443/tcp, but no live agent holds that address"
        );
        assert_eq!(f.rule.severity, Severity::Medium);
        // Near misses: just outside the /16; an address a live agent holds.
        assert!(
            UnknownAgent
                .inspect(&seen(Subject::Address("10.21.0.1".parse().unwrap())))
                .is_none()
        );
        let holder = agent("data_collector_v1");
        assert!(
            UnknownAgent
                .inspect(&seen(Subject::Agent(&holder)))
                .is_none()
        );
    }
}
