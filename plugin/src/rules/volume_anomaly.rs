//! `volume.anomaly`: an agent's connections or bytes over the last hour exceed
//! its baseline × `volume_anomaly_threshold_multiplier`.
//!
//! Baselines belong to an agent type in a deployment context. They start at
//! the profile's `baseline_connections_per_hour` / `baseline_bytes_per_hour`
//! and, where the profile sets `adaptive_baseline`, follow each completed hour
//! slowly (an exponential average) within `baseline_max_drift` of the seed.

use super::{Finding, RuleInfo, Severity, Subject};
use crate::policy::Profile;
use crate::registry::Agent;
use crate::rules::activity::HourTotals;
use crate::time::{NANOS_PER_SEC, Timestamp};
use rustc_hash::FxHashMap;

pub const RULE: RuleInfo = RuleInfo {
    id: "volume.anomaly",
    description: "Connections or bytes per hour exceed the baseline × multiplier.",
    severity: Severity::Medium,
    tags: &["volume", "baseline"],
};

/// Used when a profile gives a baseline but no multiplier.
pub const DEFAULT_MULTIPLIER: f64 = 5.0;

/// Weight of one completed hour in an adaptive baseline.
const ADAPT_WEIGHT: f64 = 0.1;

/// Current baselines per (profile, context). Bounded by the policy: one entry
/// per profile and context at most.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Baselines {
    learned: FxHashMap<(String, Option<String>), (Option<f64>, Option<f64>)>,
}

// One entry per profile and context: small, saved whole.
crate::changes::replaced_by_later!(Baselines);

impl Baselines {
    /// (connections, bytes) per hour for the profile as it applies now.
    pub fn current(&self, profile: &Profile) -> (Option<f64>, Option<f64>) {
        let seed = (
            profile.baseline_connections_per_hour.map(|v| v as f64),
            profile.baseline_bytes_per_hour.map(|v| v as f64),
        );
        // Most fleets learn nothing (adaptive baselines are opt-in): no key to build.
        if self.learned.is_empty() {
            return seed;
        }
        match self
            .learned
            .get(&(profile.name.clone(), profile.context.clone()))
        {
            Some(learned) => (learned.0.or(seed.0), learned.1.or(seed.1)),
            None => seed,
        }
    }

    /// Moves an adaptive profile's baselines toward a completed hour.
    pub fn learn(&mut self, profile: &Profile, hour: HourTotals, max_drift: f64) {
        if !profile.adaptive_baseline {
            return;
        }
        let (conns, bytes) = self.current(profile);
        let step = |current: Option<f64>, seed: Option<u64>, observed: u64| {
            let (current, seed) = (current?, seed? as f64);
            let next = current + ADAPT_WEIGHT * (observed as f64 - current);
            Some(next.clamp(seed / max_drift, seed * max_drift))
        };
        let next = (
            step(
                conns,
                profile.baseline_connections_per_hour,
                hour.connections,
            ),
            step(bytes, profile.baseline_bytes_per_hour, hour.bytes),
        );
        self.learned
            .insert((profile.name.clone(), profile.context.clone()), next);
    }
}

/// Whether the hour is over the baseline at all (cheap: no finding built).
pub fn exceeds(profile: &Profile, baselines: &Baselines, hour: HourTotals) -> bool {
    let multiplier = profile
        .volume_anomaly_threshold_multiplier
        .unwrap_or(DEFAULT_MULTIPLIER);
    let (conns, bytes) = baselines.current(profile);
    let over = |observed: u64, baseline: Option<f64>| {
        baseline.is_some_and(|b| observed as f64 > b * multiplier)
    };
    over(hour.connections, conns) || over(hour.bytes, bytes)
}

/// When a crossing at `t` is judged: the end of its minute, so the minute's
/// connections (and a retry loop among them) are all counted first.
pub fn judged_at(t: Timestamp) -> Timestamp {
    let minute = 60 * NANOS_PER_SEC;
    Timestamp((t.0.div_euclid(minute) + 1) * minute)
}

/// Whether the finding is about the number of connections (not bytes).
pub fn counts_connections(f: &Finding) -> bool {
    f.incident.ends_with("/connections")
}

/// Judges the agent's last hour (including this connection).
pub fn check(
    agent: &Agent,
    profile: &Profile,
    baselines: &Baselines,
    hour: HourTotals,
) -> Vec<Finding> {
    let multiplier = profile
        .volume_anomaly_threshold_multiplier
        .unwrap_or(DEFAULT_MULTIPLIER);
    let (conns, bytes) = baselines.current(profile);
    let subject = Subject::Agent(agent);
    let mut findings = Vec::new();
    let mut judge = |what: &str, observed: u64, baseline: Option<f64>| {
        let Some(baseline) = baseline else { return };
        let limit = baseline * multiplier;
        if observed as f64 > limit {
            let f = Finding::new(
                &RULE,
                &subject,
                Some(what),
                format!(
                    "{subject} made {observed} {what} in the last hour, over {limit:.0} (baseline {baseline:.0} × {multiplier})"
                ),
            );
            findings.push(if profile.learning { f.learning() } else { f });
        }
    };
    judge("connections", hour.connections, conns);
    judge("bytes", hour.bytes, bytes);
    findings
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, policy, profile_of};
    use super::*;

    #[test]
    fn fires_past_baseline_times_multiplier_and_not_at_it() {
        let p = policy();
        let profile = profile_of(&p, "data_collector_v1"); // 12/h × 5 = 60; 1 MB/h × 5
        let a = agent("data_collector_v1");
        let b = Baselines::default();
        let f = check(
            &a,
            profile,
            &b,
            HourTotals {
                connections: 61,
                bytes: 10,
            },
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].incident, "0x8a3f/volume.anomaly/connections");
        assert!(f[0].alerting);
        assert!(
            check(
                &a,
                profile,
                &b,
                HourTotals {
                    connections: 60,
                    bytes: 5_000_000
                }
            )
            .is_empty(),
            "at the limit"
        );
        assert_eq!(
            check(
                &a,
                profile,
                &b,
                HourTotals {
                    connections: 1,
                    bytes: 5_000_001
                }
            )[0]
            .incident,
            "0x8a3f/volume.anomaly/bytes"
        );
    }

    #[test]
    fn learning_mode_records_without_alerting() {
        let mut p = policy().profile("data_collector_v1", None).unwrap().clone();
        p.learning = true;
        let f = check(
            &agent("data_collector_v1"),
            &p,
            &Baselines::default(),
            HourTotals {
                connections: 500,
                bytes: 0,
            },
        );
        assert!(!f[0].alerting);
        assert!(f[0].summary.starts_with("(learning)"));
    }

    #[test]
    fn adaptive_baselines_drift_within_bounds() {
        let mut p = policy().profile("data_collector_v1", None).unwrap().clone();
        let mut b = Baselines::default();
        b.learn(
            &p,
            HourTotals {
                connections: 1000,
                bytes: 0,
            },
            2.0,
        );
        assert_eq!(b.current(&p).0, Some(12.0), "not adaptive: the seed stays");
        p.adaptive_baseline = true;
        for _ in 0..200 {
            b.learn(
                &p,
                HourTotals {
                    connections: 1000,
                    bytes: 0,
                },
                2.0,
            );
        }
        assert_eq!(b.current(&p).0, Some(24.0), "capped at seed × drift");
        for _ in 0..200 {
            b.learn(
                &p,
                HourTotals {
                    connections: 0,
                    bytes: 0,
                },
                2.0,
            );
        }
        assert_eq!(b.current(&p).0, Some(6.0), "floored at seed / drift");
    }
}
