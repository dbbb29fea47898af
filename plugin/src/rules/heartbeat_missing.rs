//! `heartbeat.missing`: a live agent that sends heartbeats stopped: event time
//! passed two intervals after its last window without a new one. The interval
//! is the profile's `heartbeat_interval_minutes`, else the length of the last
//! window. Agents of a profile with an interval are expected to start beating
//! within two intervals of their spawn.

use super::{Finding, RuleInfo, Severity, Subject};
use crate::policy::Profile;
use crate::registry::Agent;
use crate::time::{NANOS_PER_SEC, Timestamp, scaled_count};

pub const RULE: RuleInfo = RuleInfo {
    id: "heartbeat.missing",
    description: "An agent stops sending heartbeats while alive.",
    severity: Severity::Low,
    tags: &["heartbeat", "liveness"],
};

/// Missed intervals before the heartbeat counts as missing.
const TOLERATED_INTERVALS: i64 = 2;

/// When the next heartbeat is overdue, counting from `since` (the last window's
/// end, or the spawn) with the last window's length as fallback interval.
pub fn overdue_at(
    profile: Option<&Profile>,
    since: Timestamp,
    last_window_nanos: Option<i64>,
) -> Option<Timestamp> {
    let interval = profile
        .and_then(|p| p.heartbeat_interval_minutes)
        .map(|m| scaled_count(m, 60 * NANOS_PER_SEC))
        .or(last_window_nanos.filter(|n| *n > 0))?;
    Some(Timestamp(since.0.saturating_add(
        interval.saturating_mul(TOLERATED_INTERVALS),
    )))
}

/// Fires when the agent was alive at the overdue moment.
pub fn check(agent: &Agent, last_heard: Option<Timestamp>, overdue: Timestamp) -> Option<Finding> {
    if !agent.is_live_at(overdue) {
        return None;
    }
    let subject = Subject::Agent(agent);
    let since = match last_heard {
        Some(t) => format!("since its window ending {}", t.to_rfc3339()),
        None => "since it was spawned".to_string(),
    };
    Some(Finding::new(
        &RULE,
        &subject,
        None,
        format!(
            "{subject} sent no heartbeat {since} (overdue at {})",
            overdue.to_rfc3339()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, policy, profile_of, ts};
    use super::*;

    /// A policy's interval of any size (TOML allows up to 2^63 minutes) is
    /// no overflow: the heartbeat is overdue at the end of time.
    #[test]
    fn an_interval_past_nanoseconds_is_never_overdue() {
        let p = policy();
        let mut profile = profile_of(&p, "data_collector_v1").clone();
        for minutes in [1 << 53, u64::MAX] {
            profile.heartbeat_interval_minutes = Some(minutes);
            let since = ts("2026-11-24T14:00:00Z");
            assert_eq!(
                overdue_at(Some(&profile), since, None),
                Some(Timestamp(i64::MAX))
            );
        }
    }

    #[test]
    fn overdue_after_two_intervals_and_silent_once_terminated() {
        let p = policy();
        let profile = profile_of(&p, "data_collector_v1"); // 15-minute heartbeats
        let overdue = overdue_at(Some(profile), ts("2026-11-24T15:00:00Z"), None).unwrap();
        assert_eq!(overdue, ts("2026-11-24T15:30:00Z"));
        let mut a = agent("data_collector_v1");
        let f = check(&a, Some(ts("2026-11-24T15:00:00Z")), overdue).expect("fires");
        assert_eq!(f.incident, "0x8a3f/heartbeat.missing");
        a.terminated = ts("2026-11-24T15:10:00Z").into();
        assert!(check(&a, Some(ts("2026-11-24T15:00:00Z")), overdue).is_none());
    }

    #[test]
    fn without_a_profile_interval_the_window_length_is_used() {
        assert_eq!(
            overdue_at(None, ts("2026-11-24T15:00:00Z"), Some(300 * NANOS_PER_SEC)),
            Some(ts("2026-11-24T15:10:00Z"))
        );
        assert_eq!(
            overdue_at(None, ts("2026-11-24T15:00:00Z"), None),
            None,
            "no interval known: never overdue"
        );
    }
}
