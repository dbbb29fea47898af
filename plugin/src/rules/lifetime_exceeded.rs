//! `lifetime.exceeded`: an agent still active (or still alive and silent) after
//! spawn + expected lifetime + extensions granted by `agent.policy` + the
//! profile's `allowed_time_variance_minutes`.
//!
//! Record-driven (a flow or query after the deadline) and time-driven (event
//! time passes the deadline with no terminate) findings share one incident.

use super::{Detector, Finding, RuleInfo, Seen, Severity, Subject};
use crate::policy::Profile;
use crate::registry::Agent;
use crate::time::Timestamp;

pub const RULE: RuleInfo = RuleInfo {
    id: "lifetime.exceeded",
    description: "Network activity, or an agent still alive, after spawn + expected lifetime (+ variance and extensions).",
    severity: Severity::Low,
    tags: &["lifetime", "task"],
};

/// When the agent's window closes; `None` when no lifetime is known.
pub fn deadline(agent: &Agent, profile: Option<&Profile>) -> Option<Timestamp> {
    let minutes = agent
        .lifetime_minutes
        .or_else(|| profile.and_then(|p| p.expected_lifetime_minutes))?;
    let variance = profile.map_or(0, Profile::variance_secs);
    Some(
        agent
            .spawned
            .plus_minutes(minutes.saturating_add(agent.extended_minutes) as i64)
            .plus_secs(variance),
    )
}

fn finding(agent: &Agent, deadline: Timestamp, what: &str) -> Finding {
    let subject = Subject::Agent(agent);
    Finding::new(
        &RULE,
        &subject,
        None,
        format!(
            "{subject} {what} after its lifetime ended at {}",
            deadline.to_rfc3339()
        ),
    )
}

/// Activity at `t` after the deadline; `what` describes it (e.g. "connected
/// to x:443/tcp") and is only built when the rule fires.
pub fn check_activity(
    agent: &Agent,
    profile: Option<&Profile>,
    t: Timestamp,
    what: impl FnOnce() -> String,
) -> Option<Finding> {
    let deadline = deadline(agent, profile)?;
    (t > deadline).then(|| finding(agent, deadline, &what()))
}

/// Runs on everything an agent does: activity past its deadline.
pub struct PastLifetime;

impl Detector for PastLifetime {
    fn rule(&self) -> &'static RuleInfo {
        &RULE
    }

    fn inspect(&self, seen: &Seen) -> Option<Finding> {
        let Subject::Agent(agent) = seen.subject else {
            return None;
        };
        check_activity(agent, seen.profile, seen.event.ts(), || {
            seen.event.describe()
        })
    }
}

/// Event time (the watermark) has passed the deadline and the agent was not
/// terminated before it.
pub fn check_silent(
    agent: &Agent,
    profile: Option<&Profile>,
    watermark: Timestamp,
) -> Option<Finding> {
    let deadline = deadline(agent, profile)?;
    let alive_past = agent.terminated.get().is_none_or(|end| end > deadline);
    (watermark > deadline && alive_past).then(|| finding(agent, deadline, "is still alive"))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, policy, profile_of, ts};
    use super::*;

    #[test]
    fn activity_after_lifetime_plus_variance_fires() {
        let p = policy();
        let profile = profile_of(&p, "data_collector_v1");
        let a = agent("data_collector_v1"); // spawned 14:30, lifetime 120, variance 15
        assert_eq!(
            deadline(&a, Some(profile)),
            Some(ts("2026-11-24T16:45:00Z"))
        );
        let f = check_activity(&a, Some(profile), ts("2026-11-24T16:46:00Z"), || {
            "connected to 1.2.3.4:443/tcp".into()
        })
        .expect("fires");
        assert_eq!(f.incident, "0x8a3f/lifetime.exceeded");
        assert_eq!(f.rule.severity, Severity::Low);
        // Near miss: within the variance.
        assert!(
            check_activity(&a, Some(profile), ts("2026-11-24T16:44:00Z"), || "x".into()).is_none()
        );
    }

    #[test]
    fn extensions_and_spawn_lifetimes_move_the_deadline() {
        let p = policy();
        let profile = profile_of(&p, "data_collector_v1");
        let mut a = agent("data_collector_v1");
        a.extended_minutes = 60;
        assert!(
            check_activity(&a, Some(profile), ts("2026-11-24T17:40:00Z"), || "x".into()).is_none()
        );
        a.lifetime_minutes = Some(10);
        assert_eq!(
            deadline(&a, Some(profile)),
            Some(ts("2026-11-24T15:55:00Z"))
        );
        assert!(
            deadline(&agent("x"), None).is_none(),
            "no lifetime known: never fires"
        );
    }

    #[test]
    fn silent_agents_fire_when_event_time_passes_unless_terminated_in_time() {
        let p = policy();
        let profile = profile_of(&p, "data_collector_v1");
        let mut a = agent("data_collector_v1");
        assert!(check_silent(&a, Some(profile), ts("2026-11-24T16:44:00Z")).is_none());
        assert!(
            check_silent(&a, Some(profile), ts("2026-11-24T16:46:00Z"))
                .unwrap()
                .summary
                .contains("is still alive")
        );
        a.terminated = ts("2026-11-24T16:00:00Z").into();
        assert!(check_silent(&a, Some(profile), ts("2026-11-24T16:46:00Z")).is_none());
    }
}
