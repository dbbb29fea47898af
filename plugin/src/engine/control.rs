//! Control records: spawns and terminations, plans and intents, the
//! OpenClaw gateway's sessions, telemetry chains and heartbeats.

use super::*;
use crate::name::Name;

impl Engine {
    /// Binds an agent's addresses from its spawn and arms its deadlines.
    pub(super) fn spawn(&mut self, s: &Spawn) -> Note {
        self.learnt.registry.spawn(s);
        let mut note = Note::new(Stream::Control, Verdict::Allow);
        if let Some(agent) = self.learnt.registry.agent(&s.agent_id) {
            let profile = agent.info.profile_in(&self.policy);
            if profile.is_none() {
                note.note = Some(format!(
                    "profile \"{}\" is not in the policy: this agent is allowed no traffic",
                    agent.info.profile
                ));
            }
            if let Some(deadline) = lifetime_exceeded::deadline(agent, profile) {
                self.learnt
                    .deadlines
                    .schedule(deadline, Due::Lifetime(agent.info.id.clone()));
            }
            let mut activity = Activity::default();
            if let Some(overdue) = heartbeat_missing::overdue_at(profile, agent.spawned, None) {
                activity.heartbeat_overdue = OptionalTimestamp::from(overdue);
                self.learnt
                    .deadlines
                    .schedule(overdue, Due::Heartbeat(agent.info.id.clone()));
            }
            self.learnt
                .activities
                .insert(agent.info.id.clone(), activity);
            note.attribute(agent);
        }
        note
    }

    /// A tool call's destination, announced: it says which agent a flow from
    /// a shared address belongs to, and joins the agent's declared plan if it
    /// has one (an agent without a plan is not judged against intents).
    /// Returns the note that says which.
    pub(super) fn declare_intent(
        &mut self,
        agent_id: &str,
        action: PlannedAction,
        what: &str,
    ) -> String {
        let shares_address = self
            .learnt
            .registry
            .agent(agent_id)
            .is_some_and(|a| a.ips.is_empty());
        if shares_address {
            if self.learnt.shared_intents.len() >= MAX_SHARED_INTENTS {
                self.learnt.shared_intents.pop_front();
            }
            self.learnt
                .shared_intents
                .push_back((Name::from(agent_id), action.clone()));
        }
        let plan = self
            .learnt
            .activities
            .get_mut(agent_id)
            .and_then(|a| a.plan.as_mut());
        match (plan, shares_address) {
            (Some(plan), _) => {
                if plan.len() >= crate::record::MAX_PLANNED_ACTIONS {
                    plan.remove(0);
                }
                plan.push(action);
                format!("{what}: joins its declared plan")
            }
            (None, true) if self.policy.inputs.openclaw.gateway.is_some() => {
                format!("{what}: a flow to it from the gateway's shared address is this agent's")
            }
            (None, true) => format!(
                "{what}: recorded; the agent has no address of its own ([inputs.openclaw] gateway_addresses names the one it shares)"
            ),
            (None, false) => format!("{what}: no declared plan, so recorded for attribution only"),
        }
    }

    /// An openclaw-telemetry line: activity of its agent (or the gateway's),
    /// a tool call's intent, and one more link of the hash chain.
    pub(super) fn judge_telemetry(&mut self, line: TelemetryLine) -> (Note, Vec<Finding>) {
        let gateway = (self.policy.inputs.openclaw.gateway.as_ref()).map(|g| g.agent_id.clone());
        let mut note = match (&line.agent, &gateway) {
            (Some(spawn), _) => self.ensure_agent(spawn),
            (None, Some(gw)) => self.control_note(gw, Update::Applied),
            (None, None) => Note::new(Stream::Control, Verdict::Allow),
        };
        let what = match &line.tool {
            Some(tool) => format!("telemetry seq {}: {} {tool}", line.seq, line.kind),
            None => format!("telemetry seq {}: {}", line.seq, line.kind),
        };
        let mut remarks = vec![what.clone()];
        if let (Some(spawn), Some(action)) = (&line.agent, line.intent.clone()) {
            remarks[0] = self.declare_intent(&spawn.agent_id, action, &what);
        }
        let (problems, remark) = self.learnt.chains.follow(&line);
        remarks.extend(remark);
        note.note = Some(remarks.join("; "));
        if problems.is_empty() {
            return (note, Vec::new());
        }
        // The log belongs to the gateway that writes it, else to the agent it names.
        let owner = gateway.or_else(|| line.agent.as_ref().map(|s| s.agent_id.clone()));
        let finding = match owner
            .as_deref()
            .and_then(|id| self.learnt.registry.agent(id))
        {
            Some(agent) => {
                telemetry_chain_broken::finding(&Subject::Agent(agent), &line, &problems)
            }
            None => telemetry_chain_broken::finding(
                &Subject::Log("openclaw-telemetry"),
                &line,
                &problems,
            ),
        };
        (note, vec![finding])
    }

    /// A framework agent known by its activity: spawned by the first of it.
    pub(super) fn ensure_agent(&mut self, s: &Spawn) -> Note {
        if self.learnt.registry.agent(&s.agent_id).is_none() {
            return self.spawn(s);
        }
        self.control_note(&s.agent_id, Update::Applied)
    }

    /// The OpenClaw gateway the policy declares is an agent from the start
    /// of time: it holds its address before any event names it.
    pub(super) fn bind_gateway(&mut self) {
        let Some(gateway) = &self.policy.inputs.openclaw.gateway else {
            return;
        };
        let current = self
            .learnt
            .registry
            .agent(&gateway.agent_id)
            .is_some_and(|a| {
                a.ips[..] == gateway.ips[..]
                    && *a.info.profile == *gateway.profile
                    && a.terminated.get().is_none()
            });
        if !current {
            self.learnt.registry.spawn(&Spawn {
                ts: Timestamp(0),
                agent_id: gateway.agent_id.clone(),
                agent_type: gateway.profile.clone(),
                deployment: None,
                profile: Some(gateway.profile.clone()),
                ips: gateway.ips.clone(),
                task_id: None,
                expected_lifetime_minutes: None,
            });
        }
    }

    /// The agent a flow from the gateway's shared address belongs to: the
    /// latest whose tool call declared its destination, else the gateway.
    pub(super) fn attribute_shared(&mut self, holder: Name, flow: &Flow) -> (Name, Option<String>) {
        let is_gateway =
            (self.policy.inputs.openclaw.gateway.as_ref()).is_some_and(|g| *g.agent_id == *holder);
        if !is_gateway {
            return (holder, None);
        }
        let end = flow.end.map_or(flow.ts, |e| e.max(flow.ts));
        let names = self
            .learnt
            .dns
            .names_for_connection(flow.src, flow.dst, flow.ts, end);
        let declared = (self.learnt.shared_intents.iter().rev())
            .find(|(_, action)| crate::rules::plan_undeclared::covers(action, flow, &names));
        match declared {
            Some((agent, action)) => {
                let call = action.id.as_deref().map(|id| format!(" {id}"));
                let note = format!(
                    "from the gateway's shared address: agent {agent}'s tool call{} declared this destination",
                    call.unwrap_or_default()
                );
                (agent.clone(), Some(note))
            }
            None => (
                holder,
                Some("from the gateway's shared address, and no agent's tool call declared this destination: judged as the gateway's own call".into()),
            ),
        }
    }

    /// Stamps the note with its event time and files its findings.
    pub(super) fn finish(&mut self, mut note: Note, findings: Vec<Finding>, ts: Timestamp) -> Note {
        note.ts = Some(ts);
        if let (Some(current), Some(direction)) = (&mut self.current, note.direction) {
            current.direction = Some(direction.to_string());
        }
        note.findings = self.report(findings, note.agent.as_ref(), ts);
        if note.findings.iter().any(|r| r.finding.alerting) {
            note.verdict = Verdict::Alert;
        } else if note
            .findings
            .iter()
            .any(|r| r.finding.rule.id == approval_granted::RULE.id)
        {
            note.verdict = Verdict::Approved;
        }
        note
    }

    pub(super) fn control_note(&mut self, agent_id: &str, update: Update) -> Note {
        match (update, self.learnt.registry.agent(agent_id)) {
            (Update::Applied, Some(agent)) => {
                let mut note = Note::new(Stream::Control, Verdict::Allow);
                note.attribute(agent);
                note
            }
            _ => {
                let mut note = Note::new(Stream::Control, Verdict::Unattributed);
                note.note = Some(format!(
                    "agent \"{agent_id}\" is not known (never spawned, or forgotten under max_agents)"
                ));
                note
            }
        }
    }

    pub(super) fn judge_heartbeat(&mut self, hb: Heartbeat) -> (Note, Vec<Finding>) {
        let Some(agent) = self.learnt.registry.agent(&hb.agent_id) else {
            return (
                self.control_note(&hb.agent_id, Update::UnknownAgent),
                Vec::new(),
            );
        };
        let mut note = Note::new(Stream::Heartbeat, Verdict::Allow);
        note.attribute(agent);
        let id = agent.info.id.clone();
        let profile = agent.info.profile_in(&self.policy);
        let overdue = heartbeat_missing::overdue_at(
            profile,
            hb.window_end,
            Some(hb.window_end.0 - hb.window_start.0),
        );
        self.heard_from(id.clone(), hb.window_end, overdue);
        let activity = self
            .learnt
            .activities
            .get_or_insert_with(id.clone(), Activity::default);
        let window_end = hb.window_end;
        if !activity.queue_heartbeat(hb) {
            note.note = Some(
                "too many heartbeats waiting for their flows; the oldest was dropped unchecked"
                    .into(),
            );
        }
        self.learnt
            .deadlines
            .schedule(window_end, Due::HeartbeatWindow(id));
        (note, Vec::new())
    }

    /// The agent was heard from up to `at`: the next heartbeat is due by `overdue`.
    pub(super) fn heard_from(&mut self, id: Name, at: Timestamp, overdue: Option<Timestamp>) {
        let activity = self
            .learnt
            .activities
            .get_or_insert_with(id.clone(), Activity::default);
        if activity
            .last_heartbeat_end
            .get()
            .is_none_or(|last| at > last)
        {
            activity.last_heartbeat_end = OptionalTimestamp::from(at);
            activity.heartbeat_overdue = overdue.into();
            if let Some(due) = overdue {
                self.learnt.deadlines.schedule(due, Due::Heartbeat(id));
            }
        }
    }
}
