//! Findings into notes, incidents, flood limits and the `due[]` queue.

use super::*;

impl Engine {
    /// Files findings into incidents; new incidents (and approvals) also
    /// become records of their own.
    pub(super) fn report(
        &mut self,
        findings: Vec<Finding>,
        agent: Option<&Rc<AgentInfo>>,
        ts: Timestamp,
    ) -> Vec<Reported> {
        let mut findings = findings;
        findings.retain(|f| {
            self.scope
                .owns(f, agent.map(Rc::as_ref), &self.learnt.registry)
        });
        for finding in &findings {
            if let Some(i) = crate::rules::ALL
                .iter()
                .position(|r| r.id == finding.rule.id)
            {
                self.learnt.counters.by_rule[i] += 1;
            }
        }
        findings
            .into_iter()
            .map(|finding| {
                if finding.alerting && self.learnt.incidents.would_open(&finding, ts) {
                    if let flood::Admission::Held { summary_due } =
                        self.learnt.flood.admit(&finding, ts)
                    {
                        if let Some((key, at)) = summary_due {
                            self.learnt.deadlines.schedule(at, Due::FloodSummary(key));
                        }
                        return Reported {
                            finding,
                            new: false,
                            count: 0,
                            suppressed: true,
                        };
                    }
                }
                let (occurrence, opened) =
                    self.learnt
                        .incidents
                        .observe(&finding, agent, self.current.as_ref(), ts);
                for incident in self.learnt.incidents.take_evicted() {
                    if incident.alerting {
                        self.emitted.push(IncidentRecord {
                            incident,
                            status: IncidentStatus::Evicted,
                            ts,
                        });
                    }
                }
                if let Some(incident) = opened {
                    if let Some(at) = self.learnt.incidents.quiet_at(&incident.id) {
                        self.learnt
                            .deadlines
                            .schedule(at, Due::IncidentQuiet(incident.id.clone()));
                    }
                    if incident.alerting || incident.rule.id == approval_granted::RULE.id {
                        self.emitted.push(IncidentRecord {
                            incident,
                            status: IncidentStatus::Open,
                            ts,
                        });
                    }
                }
                let reported = Reported {
                    finding,
                    new: occurrence.new,
                    count: occurrence.count,
                    suppressed: false,
                };
                if self.reporting_due {
                    if self.learnt.due.len() == MAX_DUE_WAITING {
                        self.learnt.due.pop_front();
                        self.learnt.due_dropped += 1;
                    }
                    self.learnt.due.push_back(DueFinding {
                        reported: reported.clone(),
                        agent: agent.map(|a| a.id.clone()),
                        ts,
                    });
                }
                reported
            })
            .collect()
    }
}
