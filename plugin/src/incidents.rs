//! Findings grouped into incidents, so a retry loop of ten thousand requests is
//! one alert with a count, not ten thousand alerts.

use crate::bounded::BoundedMap;
use crate::time::Timestamp;

#[derive(Debug, Clone)]
struct Incident {
    last_seen: Timestamp,
    count: u64,
}

/// What happened to an incident when a finding arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// The finding opened the incident: this is the alert.
    pub new: bool,
    /// Findings in the incident so far, this one included.
    pub count: u64,
}

pub struct Incidents {
    open: BoundedMap<String, Incident>,
    quiet_nanos: i64,
    opened: u64,
}

impl Incidents {
    pub fn new(max_incidents: usize, quiet_secs: i64) -> Incidents {
        Incidents { open: BoundedMap::new(max_incidents), quiet_nanos: quiet_secs.saturating_mul(crate::time::NANOS_PER_SEC), opened: 0 }
    }

    /// Records a finding for incident `id` at event time `t`. An incident quiet
    /// for longer than the quiet period is closed and a new one opened.
    pub fn observe(&mut self, id: &str, t: Timestamp) -> Occurrence {
        if let Some(incident) = self.open.get_mut(id) {
            if t.0.saturating_sub(incident.last_seen.0) <= self.quiet_nanos {
                incident.count += 1;
                // Late records must not move the incident back in time.
                incident.last_seen = incident.last_seen.max(t);
                return Occurrence { new: false, count: incident.count };
            }
            incident.last_seen = t;
            incident.count = 1;
        } else {
            self.open.insert(id.to_string(), Incident { last_seen: t, count: 1 });
        }
        self.opened += 1;
        Occurrence { new: true, count: 1 }
    }

    pub fn opened(&self) -> u64 {
        self.opened
    }

    pub fn evictions(&self) -> u64 {
        self.open.evictions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minutes: i64) -> Timestamp {
        Timestamp::from_secs(1_795_530_600 + minutes * 60)
    }

    #[test]
    fn repeats_count_and_quiet_period_reopens() {
        let mut i = Incidents::new(16, 3600);
        assert_eq!(i.observe("a/r/x", t(0)), Occurrence { new: true, count: 1 });
        assert_eq!(i.observe("a/r/x", t(30)), Occurrence { new: false, count: 2 });
        assert_eq!(i.observe("a/r/x", t(5)), Occurrence { new: false, count: 3 }, "late record joins");
        assert_eq!(i.observe("a/r/y", t(31)), Occurrence { new: true, count: 1 });
        assert_eq!(i.observe("a/r/x", t(91)), Occurrence { new: true, count: 1 }, "quiet for 61 minutes");
        assert_eq!(i.opened(), 3);
    }
}
