//! The engine's clock: event time, never the wall clock.
//!
//! `now` is the latest event time seen; the *watermark* trails it by the
//! lateness allowance, because flow exporters report minutes after the fact.
//! Time-driven checks (a silent agent past its lifetime, a missing heartbeat, a
//! heartbeat window compared with its flows, a quiet incident closing) judge a
//! moment only once the watermark has passed it, so late records are counted.

use crate::changes::LoggedHeap;
use crate::name::Name;
use crate::time::{NANOS_PER_SEC, Timestamp};
use std::cmp::Reverse;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Clock {
    now: Option<Timestamp>,
    lateness_nanos: i64,
    max_step_nanos: i64,
}

crate::changes::replaced_by_later!(Clock);

impl Clock {
    pub fn new(lateness_secs: i64, max_step_secs: i64) -> Clock {
        Clock {
            now: None,
            lateness_nanos: lateness_secs.saturating_mul(NANOS_PER_SEC),
            max_step_nanos: max_step_secs.saturating_mul(NANOS_PER_SEC),
        }
    }

    pub fn set_lateness(&mut self, lateness_secs: i64, max_step_secs: i64) {
        self.lateness_nanos = lateness_secs.saturating_mul(NANOS_PER_SEC);
        self.max_step_nanos = max_step_secs.saturating_mul(NANOS_PER_SEC);
    }

    /// Moves event time forward to `t` (never back), by at most one step: a
    /// single record stamped far in the future cannot expire everything.
    pub fn observe(&mut self, t: Timestamp) {
        self.now = Some(match self.now {
            None => t,
            Some(now) if t > now => {
                Timestamp(now.0.saturating_add((t.0 - now.0).min(self.max_step_nanos)))
            }
            Some(now) => now,
        });
    }

    /// Moves event time to `t` without the step bound: the host's explicit
    /// "time has passed" when input is idle.
    pub fn advance_to(&mut self, t: Timestamp) {
        if self.now.is_none_or(|now| t > now) {
            self.now = Some(t);
        }
    }

    /// Until this moment every record has (probably) arrived.
    /// The latest event time seen (or advanced to).
    pub fn now(&self) -> Option<Timestamp> {
        self.now
    }

    pub fn watermark(&self) -> Option<Timestamp> {
        self.now
            .map(|now| Timestamp(now.0.saturating_sub(self.lateness_nanos)))
    }
}

/// What a deadline is for; each is re-checked against current state when it
/// comes due, so superseded deadlines simply find nothing to do. Saved as
/// `[code, name]`: a fleet has several deadlines per agent, and the
/// variant's name would be most of each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(into = "(u8, Name)", try_from = "(u8, Name)")]
pub enum Due {
    /// The agent's lifetime (plus variance and extensions) ends.
    Lifetime(Name),
    /// The agent's next heartbeat should have arrived.
    Heartbeat(Name),
    /// A heartbeat window can be compared with the flows seen in it.
    HeartbeatWindow(Name),
    /// An incident may have been quiet long enough to close.
    IncidentQuiet(Name),
    /// The agent's hour of volume crossed its baseline in a minute now complete.
    Volume(Name),
    /// A call off its schedule, held until its minute is complete.
    Schedule(Name),
    /// A flood limit's minute that held incidents back has ended.
    FloodSummary(Name),
}

impl From<Due> for (u8, Name) {
    fn from(due: Due) -> (u8, Name) {
        match due {
            Due::Lifetime(n) => (0, n),
            Due::Heartbeat(n) => (1, n),
            Due::HeartbeatWindow(n) => (2, n),
            Due::IncidentQuiet(n) => (3, n),
            Due::Volume(n) => (4, n),
            Due::Schedule(n) => (5, n),
            Due::FloodSummary(n) => (6, n),
        }
    }
}

impl TryFrom<(u8, Name)> for Due {
    type Error = String;
    fn try_from((code, n): (u8, Name)) -> Result<Due, String> {
        Ok(match code {
            0 => Due::Lifetime(n),
            1 => Due::Heartbeat(n),
            2 => Due::HeartbeatWindow(n),
            3 => Due::IncidentQuiet(n),
            4 => Due::Volume(n),
            5 => Due::Schedule(n),
            6 => Due::FloodSummary(n),
            _ => return Err(format!("unknown deadline kind {code}")),
        })
    }
}

/// Pending deadlines in time order, bounded: past the cap the earliest are
/// handled at once (early, never lost) and counted.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Deadlines {
    heap: LoggedHeap<Reverse<(Timestamp, Due)>>,
    cap: usize,
    pub forced: u64,
}

crate::changes::apply_changes_by_field!(Deadlines { heap, cap, forced });

impl Deadlines {
    pub fn new(cap: usize) -> Deadlines {
        Deadlines {
            heap: LoggedHeap::new(),
            cap: cap.max(16),
            forced: 0,
        }
    }

    /// Meets the running policy's cap after a restore; the excess is handled
    /// early at the next check, as when the cap is reached in use.
    pub fn recap(&mut self, cap: usize) {
        self.cap = cap.max(16);
    }

    pub fn schedule(&mut self, at: Timestamp, due: Due) {
        self.heap.push(Reverse((at, due)));
    }

    /// How many deadlines are over the cap: at most this many are forced
    /// out early in one round ([`Deadlines::pop_due`]).
    pub fn excess(&self) -> usize {
        self.heap.len().saturating_sub(self.cap)
    }

    /// The next deadline at or before `t`, or one forced out by the cap
    /// while `may_force` (from [`Deadlines::excess`]) lasts. The budget is
    /// what ends a round: a deadline handled early may schedule itself
    /// again, and forcing that one out too would never stop.
    pub fn pop_due(&mut self, t: Timestamp, may_force: &mut usize) -> Option<(Timestamp, Due)> {
        let Reverse((at, _)) = self.heap.peek()?;
        if *at > t {
            if *may_force == 0 || self.heap.len() <= self.cap {
                return None;
            }
            *may_force -= 1;
            self.forced += 1;
        }
        self.heap.pop().map(|Reverse(entry)| entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minutes: i64) -> Timestamp {
        Timestamp::from_secs(1_795_530_600 + minutes * 60)
    }

    #[test]
    fn watermark_trails_now_and_never_goes_back() {
        let mut c = Clock::new(600, 3600);
        assert_eq!(c.watermark(), None);
        c.observe(t(0));
        c.observe(t(30));
        c.observe(t(5));
        assert_eq!(c.watermark(), Some(t(20)));
    }

    #[test]
    fn a_far_future_record_moves_time_one_step_only() {
        let mut c = Clock::new(0, 3600);
        c.observe(t(0));
        c.observe(t(60 * 24 * 365));
        assert_eq!(c.watermark(), Some(t(60)));
        c.advance_to(t(600));
        assert_eq!(
            c.watermark(),
            Some(t(600)),
            "an explicit advance is not bounded"
        );
    }

    #[test]
    fn every_deadline_kind_is_saved_as_its_code_and_read_back() {
        let n = Name::from("agent-1");
        let all = [
            Due::Lifetime(n.clone()),
            Due::Heartbeat(n.clone()),
            Due::HeartbeatWindow(n.clone()),
            Due::IncidentQuiet(n.clone()),
            Due::Volume(n.clone()),
            Due::Schedule(n.clone()),
            Due::FloodSummary(n.clone()),
        ];
        let mut codes = std::collections::BTreeSet::new();
        for due in &all {
            let bytes = rmp_serde::to_vec(due).unwrap();
            assert_eq!(bytes.len(), 1 + 1 + 1 + n.len(), "[code, name]: {due:?}");
            assert!(codes.insert(bytes[1]), "{due:?} shares its code");
            assert_eq!(&rmp_serde::from_slice::<Due>(&bytes).unwrap(), due);
        }
        let unknown = rmp_serde::to_vec(&(7u8, "agent-1")).unwrap();
        let err = rmp_serde::from_slice::<Due>(&unknown)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown deadline kind 7"), "{err}");
    }

    #[test]
    fn deadlines_come_due_in_order_and_the_cap_forces_the_earliest() {
        let mut d = Deadlines::new(16);
        let id: Name = Name::from("a");
        d.schedule(t(10), Due::Lifetime(id.clone()));
        d.schedule(t(5), Due::Heartbeat(id.clone()));
        let mut budget = d.excess();
        assert_eq!(d.pop_due(t(4), &mut budget), None);
        assert_eq!(
            d.pop_due(t(20), &mut budget),
            Some((t(5), Due::Heartbeat(id.clone())))
        );
        assert_eq!(
            d.pop_due(t(20), &mut budget),
            Some((t(10), Due::Lifetime(id.clone())))
        );
        for i in 0..20 {
            d.schedule(t(100 + i), Due::Lifetime(id.clone()));
        }
        let mut forced = 0;
        let mut budget = d.excess();
        while d.pop_due(t(0), &mut budget).is_some() {
            forced += 1;
        }
        assert_eq!(forced, 4);
        assert_eq!(d.forced, 4);
    }

    /// A deadline forced out early whose handler schedules it again (it is
    /// not due yet) must not be forced out again in the same round: that
    /// loop never ended.
    #[test]
    fn a_forced_deadline_that_schedules_itself_again_ends_the_round() {
        let mut d = Deadlines::new(16);
        let id: Name = Name::from("a");
        for i in 0..17 {
            d.schedule(t(100 + i), Due::Lifetime(id.clone()));
        }
        let mut budget = d.excess();
        let mut rounds = 0;
        while let Some((at, due)) = d.pop_due(t(0), &mut budget) {
            d.schedule(at, due); // "not yet": the handler puts it back
            rounds += 1;
            assert!(rounds < 100, "forced out without end");
        }
        assert_eq!(rounds, 1);
    }
}
