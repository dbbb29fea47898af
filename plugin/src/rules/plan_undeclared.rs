//! `plan.undeclared`: an agent that declared a plan (`agent.plan`) made a
//! network call no action of the plan covers. DNS to a corporate resolver is
//! infrastructure, not an action, and is never judged here.

use super::{Finding, RuleInfo, Severity, Subject, endpoint};
use crate::record::{Flow, PlannedAction};
use crate::registry::Agent;

pub const RULE: RuleInfo = RuleInfo {
    id: "plan.undeclared",
    description: "A network action the agent's declared plan does not contain.",
    severity: Severity::High,
    tags: &["intent", "plan"],
};

/// Whether `action` covers a flow to `flow.dst` (known by `names`), ignoring time.
pub fn covers(action: &PlannedAction, flow: &Flow, names: &[&str]) -> bool {
    action.port.is_none_or(|p| p == flow.dst_port)
        && action.proto.is_none_or(|p| p == flow.proto)
        && (action.dest.matches_ip(flow.dst)
            || (action.dest.is_name() && names.iter().any(|n| action.dest.matches_name(n))))
}

/// The plan's actions that cover the flow.
pub fn covering<'p>(
    plan: &'p [PlannedAction],
    flow: &Flow,
    names: &[&str],
) -> Vec<&'p PlannedAction> {
    plan.iter().filter(|a| covers(a, flow, names)).collect()
}

/// Fires when no action of the plan covers the flow.
pub fn check(
    agent: &Agent,
    plan: &[PlannedAction],
    flow: &Flow,
    names: &[&str],
) -> Option<Finding> {
    if plan.iter().any(|a| covers(a, flow, names)) {
        return None;
    }
    let subject = Subject::Agent(agent);
    let target = endpoint(
        names.first().copied().unwrap_or(&flow.dst.to_string()),
        flow.dst_port,
    );
    Some(Finding::new(
        &RULE,
        &subject,
        Some(&target),
        format!(
            "{subject} connected to {target}/{}, which its declared plan ({} actions) does not contain",
            flow.proto,
            plan.len()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, flow};
    use super::*;
    use crate::net::Destination;
    use crate::net::Proto;
    use crate::time::OptionalTimestamp;

    fn action(dest: &str, port: u16) -> PlannedAction {
        PlannedAction {
            id: None,
            dest: Destination::parse(dest).unwrap(),
            port: Some(port),
            proto: Some(Proto::Tcp),
            not_before: OptionalTimestamp::NONE,
            not_after: OptionalTimestamp::NONE,
            every_minutes: None,
        }
    }

    #[test]
    fn fires_on_calls_outside_the_plan() {
        let plan = vec![action("api.weather.example", 443)];
        let a = agent("data_collector_v1");
        let f = check(
            &a,
            &plan,
            &flow("10.20.0.15", "203.0.113.5", 443, Proto::Tcp),
            &["pastebin.example"],
        )
        .expect("fires");
        assert_eq!(f.incident, "0x8a3f/plan.undeclared/pastebin.example:443");
        assert_eq!(f.rule.severity, Severity::High);
    }

    #[test]
    fn near_misses_in_the_plan_do_not_fire() {
        let plan = vec![
            action("api.weather.example", 443),
            action("10.30.0.0/24", 8443),
        ];
        let a = agent("data_collector_v1");
        assert!(
            check(
                &a,
                &plan,
                &flow("10.20.0.15", "203.0.113.5", 443, Proto::Tcp),
                &["api.weather.example"]
            )
            .is_none()
        );
        assert!(
            check(
                &a,
                &plan,
                &flow("10.20.0.15", "10.30.0.9", 8443, Proto::Tcp),
                &[]
            )
            .is_none()
        );
        // The same host on another port is not in the plan.
        assert!(
            check(
                &a,
                &plan,
                &flow("10.20.0.15", "203.0.113.5", 444, Proto::Tcp),
                &["api.weather.example"]
            )
            .is_some()
        );
    }
}
