//! `schedule.deviation`: a planned connection made outside its schedule: before
//! `not_before` or after `not_after` by more than `allowed_time_variance_minutes`,
//! or, for a periodic action (`every_minutes`), further than the variance from
//! the nearest slot `not_before + k × every_minutes`.

use super::{Finding, RuleInfo, Severity, Subject, endpoint};
use crate::record::{Flow, PlannedAction};
use crate::registry::Agent;
use crate::time::{NANOS_PER_SEC, Timestamp, scaled_count};

pub const RULE: RuleInfo = RuleInfo {
    id: "schedule.deviation",
    description: "A scheduled (planned, periodic) connection outside ± the allowed variance.",
    severity: Severity::Low,
    tags: &["intent", "schedule"],
};

/// How far (ns) `t` lies outside the action's schedule; 0 when on time.
pub fn deviation_nanos(action: &PlannedAction, t: Timestamp) -> i64 {
    if let Some(nb) = action.not_before.get() {
        if t < nb {
            return nb.0 - t.0;
        }
    }
    if let Some(na) = action.not_after.get() {
        if t > na {
            return t.0 - na.0;
        }
    }
    match (action.every_minutes, action.not_before.get()) {
        (Some(every), Some(nb)) => {
            // Saturating: plans are bounded when read, but a restored one
            // from before that must not divide by a period wrapped to 0.
            let period = scaled_count(every, 60 * NANOS_PER_SEC).max(1);
            let offset = (t.0 - nb.0).rem_euclid(period);
            offset.min(period - offset)
        }
        _ => 0,
    }
}

/// `covering` are the plan actions that cover the flow; fires when each of
/// them is off schedule by more than `variance_secs`.
pub fn check(
    agent: &Agent,
    covering: &[&PlannedAction],
    flow: &Flow,
    variance_secs: i64,
    names: &[&str],
) -> Option<Finding> {
    let closest = covering
        .iter()
        .map(|a| (deviation_nanos(a, flow.ts), *a))
        .min_by_key(|(d, _)| *d)?;
    let (off, action) = closest;
    if off <= variance_secs * NANOS_PER_SEC {
        return None;
    }
    let subject = Subject::Agent(agent);
    let target = endpoint(
        names.first().copied().unwrap_or(&flow.dst.to_string()),
        flow.dst_port,
    );
    let which = action
        .id
        .as_deref()
        .map(|id| format!("planned action {id}"))
        .unwrap_or_else(|| "its planned action".into());
    Some(Finding::new(
        &RULE,
        &subject,
        Some(&target),
        format!(
            "{subject} connected to {target} {} minutes off the schedule of {which} (variance {} minutes)",
            off / (60 * NANOS_PER_SEC),
            variance_secs / 60
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, flow, ts};
    use super::*;
    use crate::net::Destination;
    use crate::net::Proto;
    use crate::time::OptionalTimestamp;

    fn hourly() -> PlannedAction {
        PlannedAction {
            id: Some("a1".into()),
            dest: Destination::parse("api.weather.example").unwrap(),
            port: Some(443),
            proto: Some(Proto::Tcp),
            not_before: ts("2026-11-24T14:00:00Z").into(),
            not_after: ts("2026-11-24T20:00:00Z").into(),
            every_minutes: Some(60),
        }
    }

    fn at(t: &str) -> Flow {
        let mut f = flow("10.20.0.15", "203.0.113.5", 443, Proto::Tcp);
        f.ts = ts(t);
        f
    }

    #[test]
    fn periodic_actions_are_judged_against_their_nearest_slot() {
        let a = agent("data_collector_v1");
        let action = hourly();
        assert!(
            check(&a, &[&action], &at("2026-11-24T15:14:00Z"), 15 * 60, &[]).is_none(),
            "14 minutes late"
        );
        assert!(
            check(&a, &[&action], &at("2026-11-24T15:46:00Z"), 15 * 60, &[]).is_none(),
            "14 minutes early for 16:00"
        );
        let f = check(
            &a,
            &[&action],
            &at("2026-11-24T15:30:00Z"),
            15 * 60,
            &["api.weather.example"],
        )
        .expect("half way between slots");
        assert!(
            f.summary
                .contains("30 minutes off the schedule of planned action a1"),
            "{}",
            f.summary
        );
        assert_eq!(
            f.incident,
            "0x8a3f/schedule.deviation/api.weather.example:443"
        );
    }

    /// Periods too long for nanoseconds (read from a save older than the
    /// bound on them) are judged, not divided by zero: 2^53 minutes in
    /// nanoseconds wrapped to 0.
    #[test]
    fn a_period_past_nanoseconds_is_judged_without_a_fault() {
        let mut action = hourly();
        action.not_after = OptionalTimestamp::NONE;
        for every in [1 << 53, u64::MAX, crate::record::MAX_EVERY_MINUTES] {
            action.every_minutes = Some(every);
            let t = ts("2026-11-24T15:00:00Z");
            let off = deviation_nanos(&action, t);
            assert_eq!(
                off,
                3600 * NANOS_PER_SEC,
                "every {every}: an hour after the first slot"
            );
        }
    }

    #[test]
    fn outside_the_window_fires_beyond_the_variance() {
        let a = agent("data_collector_v1");
        let mut action = hourly();
        action.every_minutes = None;
        assert!(check(&a, &[&action], &at("2026-11-24T13:50:00Z"), 15 * 60, &[]).is_none());
        assert!(check(&a, &[&action], &at("2026-11-24T13:40:00Z"), 15 * 60, &[]).is_some());
        assert!(check(&a, &[&action], &at("2026-11-24T20:16:00Z"), 15 * 60, &[]).is_some());
        assert!(
            check(&a, &[], &at("2026-11-24T20:16:00Z"), 15 * 60, &[]).is_none(),
            "nothing covers it: plan.undeclared's business"
        );
    }
}
