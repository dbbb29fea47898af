//! `egress.unknown_agent`: traffic from an address inside `agent_subnets` that
//! no live agent held when the traffic started.
//!
//! One incident per source address (not per destination): a rogue process
//! reaching a hundred hosts is one thing to investigate, not a hundred.

use super::{Finding, RuleInfo, Severity, Subject, endpoint};
use crate::policy::Monitor;
use std::net::IpAddr;

pub const RULE: RuleInfo = RuleInfo {
    id: "egress.unknown_agent",
    description: "Traffic from an agent subnet address that no live agent holds.",
    severity: Severity::Medium,
    tags: &["egress", "inventory", "network"],
};

/// `what` describes the traffic, e.g. `connected to 1.2.3.4:443/tcp`.
pub fn check(src: IpAddr, monitor: &Monitor, what: &str) -> Option<Finding> {
    if !monitor.in_agent_subnet(src) {
        return None;
    }
    let subject = Subject::Address(src);
    Some(Finding::new(
        &RULE,
        &subject,
        None,
        format!("{subject} in an agent subnet {what}, but no live agent holds that address"),
    ))
}

/// The description of a flow for [`check`]'s summary.
pub fn describe_flow(dst: IpAddr, port: u16, proto: crate::record::Proto) -> String {
    format!("connected to {}/{proto}", endpoint(&dst.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::policy;
    use super::*;
    use crate::record::Proto;

    #[test]
    fn fires_inside_agent_subnets_only() {
        let p = policy();
        let what = describe_flow("198.51.100.1".parse().unwrap(), 443, Proto::Tcp);
        let f = check("10.20.9.9".parse().unwrap(), &p.monitor, &what).expect("must fire");
        assert_eq!(f.incident, "10.20.9.9/egress.unknown_agent");
        assert_eq!(
            f.summary,
            "unknown host 10.20.9.9 in an agent subnet connected to 198.51.100.1:443/tcp, but no live agent holds that address"
        );
        assert_eq!(f.rule.severity, Severity::Medium);
        // Near miss: just outside the /16.
        assert!(check("10.21.0.1".parse().unwrap(), &p.monitor, &what).is_none());
    }
}
