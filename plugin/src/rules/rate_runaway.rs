//! `rate.runaway`: connections from one agent to one destination in a rolling
//! minute far beyond what any sane task needs (`max_requests_per_minute`):
//! the signature of a retry loop hammering an API.

use super::{Finding, RuleInfo, Severity, Subject, endpoint};
use crate::bounded::BoundedMap;
use crate::name::Name;
use crate::net::Addr;
use crate::policy::Profile;
use crate::record::Flow;
use crate::registry::Agent;
use crate::time::{NANOS_PER_SEC, Timestamp};

pub const RULE: RuleInfo = RuleInfo {
    id: "rate.runaway",
    description: "Request rate to one destination in a rolling minute far beyond the task's sane rate (retry loops).",
    severity: Severity::Medium,
    tags: &["rate", "loop"],
};

const SLOT_NANOS: i64 = 10 * NANOS_PER_SEC;
const SLOTS: usize = 6;

/// One (agent, destination)'s last minute in six 10-second slots.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Window {
    head: Option<i64>,
    counts: [u32; SLOTS],
}

impl Window {
    fn add(&mut self, t: Timestamp) -> u64 {
        let slot = t.0.div_euclid(SLOT_NANOS);
        match self.head {
            Some(head) if slot > head => {
                for s in (head + 1)..=slot.min(head + SLOTS as i64) {
                    self.counts[s.rem_euclid(SLOTS as i64) as usize] = 0;
                }
                self.head = Some(slot);
            }
            Some(head) if slot <= head - SLOTS as i64 => return self.total(),
            Some(_) => {}
            None => self.head = Some(slot),
        }
        let i = slot.rem_euclid(SLOTS as i64) as usize;
        self.counts[i] = self.counts[i].saturating_add(1);
        self.total()
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }
}

/// Rolling windows per (agent, destination address, port), least recently used forgotten first.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RateWindows {
    windows: BoundedMap<(Name, Addr, u16), Window>,
}

crate::changes::apply_changes_by_field!(RateWindows { windows });

impl RateWindows {
    pub fn new(cap: usize) -> RateWindows {
        RateWindows {
            windows: BoundedMap::new(cap),
        }
    }

    /// Counts one outbound connection and judges its destination's last minute.
    pub fn check(
        &mut self,
        agent: &Agent,
        profile: &Profile,
        flow: &Flow,
        name: Option<&str>,
    ) -> Option<Finding> {
        let window = self.windows.get_or_insert_with(
            (agent.info.id.clone(), Addr(flow.dst), flow.dst_port),
            Window::default,
        );
        let count = window.add(flow.ts);
        if count <= profile.max_requests_per_minute {
            return None;
        }
        let subject = Subject::Agent(agent);
        let target = endpoint(name.unwrap_or(&flow.dst.to_string()), flow.dst_port);
        let f = Finding::new(
            &RULE,
            &subject,
            Some(&target),
            format!(
                "{subject} opened {count} connections to {target}/{} within a minute (limit {})",
                flow.proto, profile.max_requests_per_minute
            ),
        );
        Some(if profile.learning { f.learning() } else { f })
    }

    /// Meets the running policy's cap after a restore.
    pub fn recap(&mut self, cap: usize) {
        self.windows.recap(cap);
    }

    pub fn evictions(&self) -> u64 {
        self.windows.evictions()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, flow, policy, profile_of};
    use super::*;
    use crate::net::Proto;

    #[test]
    fn a_retry_loop_fires_and_a_steady_rate_does_not() {
        let p = policy();
        let profile = profile_of(&p, "data_collector_v1"); // limit 30/min
        let a = agent("data_collector_v1");
        let mut w = RateWindows::new(16);
        let mut f = flow("10.20.0.15", "93.184.216.34", 443, Proto::Tcp);
        let start = f.ts;
        // 30 in one minute: at the limit, silent.
        for i in 0..30 {
            f.ts = start.plus_secs(i * 2);
            assert!(
                w.check(&a, profile, &f, Some("api.internal.example.net"))
                    .is_none(),
                "{i}"
            );
        }
        // A steady one every 3 s for ten minutes stays at 20/min: silent.
        let mut steady = RateWindows::new(16);
        for i in 0..200 {
            f.ts = start.plus_secs(i * 3);
            assert!(steady.check(&a, profile, &f, None).is_none());
        }
        // The 31st within the minute fires.
        f.ts = start.plus_secs(59);
        let finding = w
            .check(&a, profile, &f, Some("api.internal.example.net"))
            .expect("fires");
        assert_eq!(
            finding.incident,
            "0x8a3f/rate.runaway/api.internal.example.net:443"
        );
    }

    #[test]
    fn destinations_are_counted_apart() {
        let p = policy();
        let profile = profile_of(&p, "data_collector_v1");
        let a = agent("data_collector_v1");
        let mut w = RateWindows::new(64);
        for i in 0..40u32 {
            let f = flow("10.20.0.15", &format!("198.51.100.{i}"), 443, Proto::Tcp);
            assert!(w.check(&a, profile, &f, None).is_none());
        }
    }
}
