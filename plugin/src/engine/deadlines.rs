//! Checks driven by event time rather than by a record: lifetimes,
//! heartbeats, schedules and volume, as their deadlines pass.

use super::*;
use crate::name::Name;

impl Engine {
    /// Handles every deadline the watermark has passed.
    pub(super) fn run_due(&mut self) {
        let Some(watermark) = self.learnt.clock.watermark() else {
            return;
        };
        self.reporting_due = true;
        self.run_due_until(watermark);
        self.reporting_due = false;
    }

    pub(super) fn run_due_until(&mut self, watermark: Timestamp) {
        while let Some(pending) = self.learnt.conversations.due(watermark) {
            self.judge_unanswered(pending);
        }
        let mut may_force = self.learnt.deadlines.excess();
        while let Some((at, due)) = self.learnt.deadlines.pop_due(watermark, &mut may_force) {
            match due {
                Due::Volume(id) => self.volume_due(&id, at),
                Due::Schedule(id) => self.schedule_due(&id),
                Due::FloodSummary(key) => {
                    if let Some(held) = self.learnt.flood.take_summary(&key) {
                        self.emitted.push(IncidentRecord {
                            incident: crate::incidents::Incident {
                                id: Name::from(format!(
                                    "{}/{}/suppressed@{}",
                                    held.scope,
                                    held.rule.id,
                                    held.start.to_rfc3339()
                                )),
                                rule: held.rule,
                                severity: held.rule.severity,
                                alerting: true,
                                agent: None,
                                summary: held.summary().into(),
                                first_seen: held.start,
                                last_seen: held.end,
                                count: held.count,
                                evidence: None,
                            },
                            status: IncidentStatus::Suppressed,
                            ts: held.end,
                        });
                    }
                }
                Due::Lifetime(id) => self.lifetime_due(&id, at, watermark),
                Due::Heartbeat(id) => self.heartbeat_due(&id, at),
                Due::HeartbeatWindow(id) => self.heartbeat_window_due(&id, watermark),
                Due::IncidentQuiet(id) => {
                    match self.learnt.incidents.close_if_quiet(&id, watermark) {
                        Closing::Closed(incident, ts) => {
                            if incident.alerting {
                                self.emitted.push(IncidentRecord {
                                    incident,
                                    status: IncidentStatus::Closed,
                                    ts,
                                });
                            }
                        }
                        Closing::NotBefore(next) => {
                            self.learnt.deadlines.schedule(next, Due::IncidentQuiet(id))
                        }
                        Closing::Gone => {}
                    }
                }
            }
        }
    }

    pub(super) fn agent_and_profile(&mut self, id: &str) -> Option<(Agent, Option<Profile>)> {
        let agent = self.learnt.registry.agent(id)?.clone();
        let profile = agent.info.profile_in(&self.policy).cloned();
        Some((agent, profile))
    }

    pub(super) fn lifetime_due(&mut self, id: &str, at: Timestamp, watermark: Timestamp) {
        let Some((agent, profile)) = self.agent_and_profile(id) else {
            return;
        };
        let Some(deadline) = lifetime_exceeded::deadline(&agent, profile.as_ref()) else {
            return;
        };
        if deadline != at {
            return; // superseded: an extension scheduled the new deadline
        }
        if let Some(finding) = lifetime_exceeded::check_silent(&agent, profile.as_ref(), watermark)
        {
            self.report(vec![finding], Some(&agent.info), deadline);
        }
    }

    pub(super) fn heartbeat_due(&mut self, id: &str, at: Timestamp) {
        let Some(activity) = self.learnt.activities.peek_mut(id) else {
            return;
        };
        if activity.heartbeat_overdue.get() != Some(at) {
            return; // superseded by a later heartbeat
        }
        activity.heartbeat_overdue = OptionalTimestamp::NONE;
        let last = activity.last_heartbeat_end.get();
        let Some((agent, _)) = self.agent_and_profile(id) else {
            return;
        };
        if let Some(finding) = heartbeat_missing::check(&agent, last, at) {
            self.report(vec![finding], Some(&agent.info), at);
        }
    }

    pub(super) fn heartbeat_window_due(&mut self, id: &str, watermark: Timestamp) {
        let Some((agent, _)) = self.agent_and_profile(id) else {
            return;
        };
        let Some(activity) = self.learnt.activities.peek_mut(id) else {
            return;
        };
        let (mut ready, waiting): (Vec<Heartbeat>, Vec<Heartbeat>) =
            std::mem::take(&mut activity.pending_heartbeats)
                .into_iter()
                .partition(|hb| hb.window_end <= watermark);
        activity.pending_heartbeats = waiting;
        ready.sort_by_key(|hb| hb.window_start);
        let dns = &mut self.learnt.dns;
        let mut names_of = |ip: IpAddr, t: Timestamp| -> Vec<String> {
            agent
                .ips
                .iter()
                .flat_map(|client| {
                    dns.names_at(*client, ip, t)
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let mut reports = Vec::new();
        for hb in ready {
            let findings = heartbeat_mismatch::check(
                &agent,
                &hb,
                activity,
                &mut names_of,
                &self.policy.monitor,
            );
            reports.push((findings, hb.window_end));
        }
        activity.forget_contacts_before(Timestamp(
            watermark.0 - activity::CONTACT_HISTORY_SECS * crate::time::NANOS_PER_SEC,
        ));
        let info = agent.info.clone();
        for (findings, at) in reports {
            self.report(findings, Some(&info), at);
        }
    }

    /// A call off its schedule, once its minute is complete: part of a retry
    /// loop (`rate.runaway` from two minutes before it on), it is that incident.
    pub(super) fn schedule_due(&mut self, id: &str) {
        let Some((agent, _)) = self.agent_and_profile(id) else {
            return;
        };
        let Some(activity) = self.learnt.activities.peek_mut(id) else {
            return;
        };
        let Some((at, finding)) = activity.take_held_deviation() else {
            return;
        };
        let looping = activity
            .runaway_at()
            .get()
            .is_some_and(|r| r.0 >= at.0 - 120 * crate::time::NANOS_PER_SEC);
        if !looping {
            self.report(vec![finding], Some(&agent.info), at);
        }
    }

    /// The hour's volume, once the minute that crossed the baseline is complete.
    pub(super) fn volume_due(&mut self, id: &str, at: Timestamp) {
        let Some((agent, Some(profile))) = self.agent_and_profile(id) else {
            return;
        };
        let Some(activity) = self.learnt.activities.peek_mut(id) else {
            return;
        };
        activity.volume_due = OptionalTimestamp::NONE;
        let mut findings = volume_anomaly::check(
            &agent,
            &profile,
            &self.learnt.baselines,
            activity.volume.totals(),
        );
        // A retry loop in the hour is its own incident (rate.runaway): the
        // connections it made are not a second one.
        if activity
            .runaway_at()
            .get()
            .is_some_and(|r| at.0 - r.0 <= 3600 * crate::time::NANOS_PER_SEC)
        {
            findings.retain(|f| !volume_anomaly::counts_connections(f));
        }
        self.report(findings, Some(&agent.info), at);
    }
}
