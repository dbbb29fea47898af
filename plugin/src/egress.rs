//! The one judgement of an agent's outbound call, whether a flow record saw
//! it by address or an egress proxy by name: its profile's `allowed_outbound`,
//! its declared plan and schedule, and the approvals that may excuse it.
//!
//! One call raises at most one alert: a call outside `allowed_outbound` is
//! that finding alone (its summary says when the plan lacks it too), and
//! `plan.undeclared` is for calls the policy allows but the plan does not.

use crate::policy::{Policy, Profile};
use crate::record::Flow;
use crate::registry::Agent;
use crate::rules::activity::Activity;
use crate::rules::{
    Finding, Subject, approval_granted, egress_not_allowed, endpoint, plan_undeclared,
    schedule_deviation,
};

/// What the call is, beyond its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A call the agent opened.
    Call,
    /// Infrastructure (DNS to a corporate resolver): judged by the policy,
    /// never an action of the plan.
    Infrastructure,
    /// An answer from the agent's service port that no peer's connection
    /// explained within the lateness allowance: judged as a call, and keyed
    /// by the peer (its port is the peer's own, not a service).
    UnansweredReply,
}

/// Judges one outbound call of `agent`; `names` are the DNS names the agent
/// had for the destination (sorted), or the names it asked a proxy for.
pub fn judge(
    policy: &Policy,
    agent: &Agent,
    profile: Option<&Profile>,
    activity: &Activity,
    flow: &Flow,
    names: &[&str],
    shape: Shape,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut not_allowed = egress_not_allowed::check(flow, agent, profile, names);
    let mut undeclared = None;
    if let (Some(plan), false) = (&activity.plan, shape == Shape::Infrastructure) {
        let covering = plan_undeclared::covering(plan, flow, names);
        if covering.is_empty() {
            undeclared = plan_undeclared::check(agent, plan, flow, names);
        } else {
            let variance = profile.map_or(0, Profile::variance_secs);
            findings.extend(schedule_deviation::check(
                agent, &covering, flow, variance, names,
            ));
        }
    }
    if not_allowed.is_some() || undeclared.is_some() {
        if let Some(approval) =
            approval_granted::find(&policy.approvals, activity.grants(), flow, names)
        {
            let unplanned = match (&not_allowed, &undeclared) {
                (Some(_), Some(_)) => "outside allowed_outbound and its plan",
                (Some(_), None) => "outside allowed_outbound",
                _ => "outside its plan",
            };
            findings.push(approval_granted::finding(
                agent, flow, names, &approval, unplanned,
            ));
            (not_allowed, undeclared) = (None, None);
        }
    }
    match (not_allowed, undeclared) {
        (Some(mut n), Some(_)) => {
            n.summary.push_str(" (nor in its declared plan)");
            findings.push(n);
        }
        (n, u) => findings.extend(n.or(u)),
    }
    if shape == Shape::UnansweredReply {
        for f in findings.iter_mut() {
            let peer = endpoint(&flow.dst.to_string(), flow.dst_port);
            let target = format!("{} from :{}", flow.dst, flow.src_port);
            *f = Finding::new(
                f.rule,
                &Subject::Agent(agent),
                Some(&target),
                format!(
                    "{} (sent from its service port {} to {peer}, but not as an answer to a connection from that peer)",
                    f.summary, flow.src_port
                ),
            )
            .with_severity(f.severity);
        }
    }
    findings
}
