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
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(into = "SavedWindow", from = "SavedWindow")]
struct Window {
    /// The latest slot counted, [`NO_SLOT`] before the first. Any time's slot
    /// fits (nanoseconds since 1970 over ten seconds are under 2^30), and
    /// four bytes rather than an `Option<i64>`'s sixteen keep a window in
    /// 28 bytes: an agent holds one per destination.
    head: i32,
    counts: [u32; SLOTS],
}

const NO_SLOT: i32 = i32::MIN;

impl Default for Window {
    fn default() -> Window {
        Window {
            head: NO_SLOT,
            counts: [0; SLOTS],
        }
    }
}

/// A [`Window`] as saves hold it.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedWindow {
    head: Option<i64>,
    counts: [u32; SLOTS],
}

impl From<Window> for SavedWindow {
    fn from(w: Window) -> SavedWindow {
        SavedWindow {
            head: (w.head != NO_SLOT).then_some(i64::from(w.head)),
            counts: w.counts,
        }
    }
}

impl From<SavedWindow> for Window {
    fn from(w: SavedWindow) -> Window {
        Window {
            head: w.head.map_or(NO_SLOT, slot_of),
            counts: w.counts,
        }
    }
}

/// Any time's slot is within this of 0 (see [`Window::head`]).
const SLOT_RANGE: i64 = 1 << 30;

/// A slot number as a window holds it (a damaged save's is brought in range).
fn slot_of(slot: i64) -> i32 {
    slot.clamp(-SLOT_RANGE, SLOT_RANGE) as i32
}

impl Window {
    fn add(&mut self, t: Timestamp) -> u64 {
        let slot = slot_of(t.0.div_euclid(SLOT_NANOS));
        let head = self.head;
        if head == NO_SLOT {
            self.head = slot;
        } else if slot > head {
            for s in (head + 1)..=slot.min(head + SLOTS as i32) {
                self.counts[s.rem_euclid(SLOTS as i32) as usize] = 0;
            }
            self.head = slot;
        } else if slot <= head - SLOTS as i32 {
            return self.total();
        }
        let i = slot.rem_euclid(SLOTS as i32) as usize;
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
    fn a_window_is_saved_as_its_slot_and_counts_and_keeps_counting_once_read_back() {
        let mut w = Window::default();
        assert_eq!(
            rmp_serde::to_vec(&w).unwrap(),
            rmp_serde::to_vec(&(None::<i64>, [0u32; SLOTS])).unwrap()
        );
        let t = Timestamp::from_secs(1_795_530_600);
        w.add(t);
        w.add(t.plus_secs(15));
        let saved = rmp_serde::to_vec(&w).unwrap();
        let slot = t.plus_secs(15).0 / SLOT_NANOS;
        let mut counts = [0u32; SLOTS];
        counts[(slot - 1) as usize % SLOTS] = 1;
        counts[slot as usize % SLOTS] = 1;
        assert_eq!(saved, rmp_serde::to_vec(&(Some(slot), counts)).unwrap());
        let mut back: Window = rmp_serde::from_slice(&saved).unwrap();
        assert_eq!(back.add(t.plus_secs(30)), 3);
        // A minute later the first two have left the window.
        assert_eq!(back.add(t.plus_secs(75)), 2);
        // Times from 1677 to 2262 all have their own slot.
        for secs in [i64::MIN / 1_000_000_000, -1, 0, i64::MAX / 1_000_000_000] {
            let t = Timestamp::from_secs(secs);
            let mut w = Window::default();
            w.add(t);
            assert_eq!(i64::from(w.head), t.0.div_euclid(SLOT_NANOS), "{secs}");
        }
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
