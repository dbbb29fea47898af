//! Findings grouped into incidents by (agent, rule, destination), so a retry
//! loop of ten thousand requests is one alert with a count, not ten thousand.
//! An incident quiet for the quiet period closes; the next finding opens a
//! new one.

use crate::bounded::BoundedMap;
use crate::name::Name;
use crate::registry::AgentInfo;
use crate::rules::{Finding, RuleInfo, Severity};
use crate::time::Timestamp;
use std::rc::Rc;

/// An incident as its records report it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Incident {
    pub id: Name,
    #[serde(with = "crate::rules::rule_by_id")]
    pub rule: &'static RuleInfo,
    pub severity: Severity,
    pub alerting: bool,
    /// Shared with the agent's records while its names stay the same.
    pub agent: Option<Rc<AgentInfo>>,
    /// The first finding's summary (boxed text, not a `String`: 8 bytes less
    /// in every open incident).
    #[serde(with = "crate::name::words")]
    pub summary: Box<str>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub count: u64,
    /// What the record that opened it said of its endpoints, when the output
    /// field set reports evidence (ECS, OCSF).
    #[serde(default)]
    pub evidence: Option<Box<crate::record::Endpoints>>,
}

/// What happened to an incident when a finding arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// The finding opened the incident: this is the alert.
    pub new: bool,
    /// Findings in the incident so far, this one included.
    pub count: u64,
}

/// What a quiet-period check found.
#[derive(Debug, PartialEq)]
pub enum Closing {
    /// Closed at the end of its quiet period (the time given).
    Closed(Incident, Timestamp),
    /// Still active: check again then.
    NotBefore(Timestamp),
    /// Already closed, or forgotten under the cap.
    Gone,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Incidents {
    open: BoundedMap<Name, Incident>,
    quiet_nanos: i64,
    opened: u64,
    closed: u64,
    /// Incidents forgotten to make room, waiting for their closing records.
    #[serde(skip)]
    evicted: Vec<Incident>,
}

crate::changes::apply_changes_by_field!(Incidents {
    open,
    quiet_nanos,
    opened,
    closed,
    evicted
});

impl Incidents {
    pub fn new(max_incidents: usize, quiet_secs: i64) -> Incidents {
        Incidents {
            open: BoundedMap::new(max_incidents),
            quiet_nanos: quiet_secs.saturating_mul(crate::time::NANOS_PER_SEC),
            opened: 0,
            closed: 0,
            evicted: Vec::new(),
        }
    }

    pub fn set_quiet(&mut self, quiet_secs: i64) {
        self.quiet_nanos = quiet_secs.saturating_mul(crate::time::NANOS_PER_SEC);
    }

    /// Records `finding` at event time `t`; on a new incident also returns it,
    /// keeping `evidence` (the endpoints of the record that opened it).
    pub fn observe(
        &mut self,
        finding: &Finding,
        agent: Option<&Rc<AgentInfo>>,
        evidence: Option<&crate::record::Endpoints>,
        t: Timestamp,
    ) -> (Occurrence, Option<Incident>) {
        if let Some(incident) = self.open.get_mut(finding.incident.as_str()) {
            if t.0.saturating_sub(incident.last_seen.0) <= self.quiet_nanos {
                incident.count += 1;
                // Late records must not move the incident back in time.
                incident.last_seen = incident.last_seen.max(t);
                incident.first_seen = incident.first_seen.min(t);
                return (
                    Occurrence {
                        new: false,
                        count: incident.count,
                    },
                    None,
                );
            }
            self.closed += 1;
        }
        let incident = Incident {
            id: Name::from(finding.incident.as_str()),
            rule: finding.rule,
            severity: finding.severity,
            alerting: finding.alerting,
            agent: agent.cloned(),
            summary: finding.summary.as_str().into(),
            first_seen: t,
            last_seen: t,
            count: 1,
            evidence: evidence.map(|e| Box::new(e.clone())),
        };
        if let Some((_, forgotten)) = self
            .open
            .insert_evicting(incident.id.clone(), incident.clone())
        {
            self.closed += 1;
            self.evicted.push(forgotten);
        }
        self.opened += 1;
        (
            Occurrence {
                new: true,
                count: 1,
            },
            Some(incident),
        )
    }

    /// Whether `finding` at `t` would open a new incident (none open for its
    /// key, or the open one quiet for longer than the quiet period).
    pub fn would_open(&self, finding: &Finding, t: Timestamp) -> bool {
        self.open
            .peek(finding.incident.as_str())
            .is_none_or(|i| t.0.saturating_sub(i.last_seen.0) > self.quiet_nanos)
    }

    /// When an incident's quiet period would end, if it is open.
    pub fn quiet_at(&self, id: &str) -> Option<Timestamp> {
        self.open
            .peek(id)
            .map(|i| Timestamp(i.last_seen.0.saturating_add(self.quiet_nanos)))
    }

    /// Closes the incident if it has been quiet up to `watermark`.
    pub fn close_if_quiet(&mut self, id: &str, watermark: Timestamp) -> Closing {
        match self.quiet_at(id) {
            None => Closing::Gone,
            Some(at) if at > watermark => Closing::NotBefore(at),
            Some(at) => {
                self.closed += 1;
                self.open
                    .remove(id)
                    .map_or(Closing::Gone, |incident| Closing::Closed(incident, at))
            }
        }
    }

    /// The incidents forgotten under the cap since the last call: each still
    /// gets its closing record.
    pub fn take_evicted(&mut self) -> Vec<Incident> {
        std::mem::take(&mut self.evicted)
    }

    /// Incidents open now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn opened(&self) -> u64 {
        self.opened
    }

    pub fn closed(&self) -> u64 {
        self.closed
    }

    /// Meets the running policy's cap after a restore.
    pub fn recap(&mut self, max_incidents: usize) {
        self.open.recap(max_incidents);
    }

    pub fn evictions(&self) -> u64 {
        self.open.evictions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::egress_not_allowed::RULE;

    fn t(minutes: i64) -> Timestamp {
        Timestamp::from_secs(1_795_530_600 + minutes * 60)
    }

    fn finding(id: &str) -> Finding {
        Finding {
            rule: &RULE,
            severity: Severity::High,
            alerting: true,
            incident: id.into(),
            summary: "s".into(),
        }
    }

    #[test]
    fn repeats_count_and_quiet_period_reopens() {
        let mut i = Incidents::new(16, 3600);
        assert_eq!(
            i.observe(&finding("a/r/x"), None, None, t(0)).0,
            Occurrence {
                new: true,
                count: 1
            }
        );
        assert_eq!(
            i.observe(&finding("a/r/x"), None, None, t(30)).0,
            Occurrence {
                new: false,
                count: 2
            }
        );
        assert_eq!(
            i.observe(&finding("a/r/x"), None, None, t(5)).0,
            Occurrence {
                new: false,
                count: 3
            },
            "late record joins"
        );
        assert_eq!(
            i.observe(&finding("a/r/y"), None, None, t(31)).0,
            Occurrence {
                new: true,
                count: 1
            }
        );
        assert_eq!(
            i.observe(&finding("a/r/x"), None, None, t(91)).0,
            Occurrence {
                new: true,
                count: 1
            },
            "quiet for 61 minutes"
        );
        assert_eq!(i.opened(), 3);
    }

    #[test]
    fn closes_only_after_the_quiet_period() {
        let mut i = Incidents::new(16, 3600);
        i.observe(&finding("a/r/x"), None, None, t(0));
        i.observe(&finding("a/r/x"), None, None, t(10));
        assert_eq!(i.close_if_quiet("a/r/x", t(60)), Closing::NotBefore(t(70)));
        match i.close_if_quiet("a/r/x", t(70)) {
            Closing::Closed(inc, _) => {
                assert_eq!((inc.count, inc.first_seen, inc.last_seen), (2, t(0), t(10)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(i.close_if_quiet("a/r/x", t(80)), Closing::Gone);
    }
}
