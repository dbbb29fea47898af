//! The engine: one record in, the same record plus its `clawwatch` note out,
//! followed by any incident or audit records the record (or the passage of
//! event time it brought) produced.
//!
//! It owns the compiled policy and everything learnt from the records (agent
//! registry, DNS answers, activity, baselines, incidents, deadlines) and knows
//! nothing of WIT or I/O, so it runs the same natively, inside the component
//! and in tests.

use crate::activity::{self, Activity};
use crate::bounded::BoundedMap;
use crate::clock::{Clock, Deadlines, Due};
use crate::direction::{Conversations, FromAgent, PendingReply, ToAgent};
use crate::dns_map::DnsMap;
use crate::egress::Shape;
use crate::flood;
use crate::incidents::{Closing, Incidents};
use crate::output::{
    AgentInfo, DueFinding, IncidentRecord, IncidentStatus, Note, Reported, Verdict,
};
use crate::policy::{Policy, PolicyError, Profile};
use crate::record::fields::Fields;
use crate::record::{
    CallingAgent, DnsQuery, Event, Flow, Heartbeat, PlannedAction, ProxiedCall, Recognized, Spawn,
    Stream, TelemetryLine, recognize_with,
};
use crate::registry::{Agent, Registry, Update};
use crate::rules::dns_tunneling::TunnelWindows;
use crate::rules::rate_runaway::RateWindows;
use crate::rules::volume_anomaly::Baselines;
use crate::rules::{
    Finding, Subject, approval_granted, dns_foreign_resolver, dns_high_entropy,
    egress_unknown_agent, heartbeat_mismatch, heartbeat_missing, lifetime_exceeded,
    schedule_deviation, telemetry_chain_broken, volume_anomaly,
};
use crate::siem::{Endpoints, FieldSet, Original};
use crate::time::Timestamp;
use std::net::IpAddr;
use std::rc::Rc;

/// Running totals; see the WIT `stats` record for their meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub allowed: u64,
    pub alerts: u64,
    pub approved: u64,
    pub unattributed: u64,
    pub not_applicable: u64,
    pub errors: u64,
    pub findings: u64,
    pub incidents_opened: u64,
    pub incidents_closed: u64,
    pub evictions: u64,
    pub agents: u64,
    pub dns_entries: u64,
    /// Records by `[stream][verdict]` (indexed as `Stream::ALL`, `Verdict::ALL`):
    /// records judged, and the incident and audit records written.
    pub records_by_stream: [[u64; Verdict::ALL.len()]; Stream::ALL.len()],
    /// Findings by rule, indexed as `rules::ALL`.
    pub findings_by_rule: [u64; crate::rules::ALL.len()],
    /// Incidents open now.
    pub incidents_open: u64,
}

/// What the engine counts as it goes; every total in [`Stats`] derives from these.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Counters {
    /// Records by `[stream][verdict]`: judged ones, and incident/audit records written.
    by_stream: [[u64; Verdict::ALL.len()]; Stream::ALL.len()],
    /// Findings by rule, indexed as `rules::ALL`.
    by_rule: [u64; crate::rules::ALL.len()],
}

/// Rate and tunnel windows: a few destinations or domains per agent.
fn window_cap(m: &crate::policy::Monitor) -> usize {
    m.max_agents.saturating_mul(4)
}

/// Lifetime, heartbeat and heartbeat-window deadlines per agent, one per incident.
fn deadline_cap(m: &crate::policy::Monitor) -> usize {
    m.max_agents
        .saturating_mul(4)
        .saturating_add(m.max_incidents)
}

/// What one output line is: its length (with its `\n`), its stream and its
/// verdict, so a carrier routes it without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLine {
    pub length: u32,
    pub stream: Stream,
    pub verdict: Verdict,
}

impl OutputLine {
    fn new(length: usize, stream: Stream, verdict: Verdict) -> OutputLine {
        OutputLine {
            length: u32::try_from(length).unwrap_or(u32::MAX),
            stream,
            verdict,
        }
    }
}

pub struct Engine {
    policy: Policy,
    /// Everything learnt from the records: what a snapshot saves.
    learnt: Learnt,
    /// Incident and audit records waiting to be written after the current record.
    emitted: Vec<IncidentRecord>,
    /// The format the current batch's records are in, when the host said so.
    stream_hint: Option<&'static str>,
    field_set: FieldSet,
    /// The current record's endpoints, when the field set reports them.
    current: Option<Endpoints>,
    /// Whether findings being reported came due rather than from the current record.
    reporting_due: bool,
}

/// Everything the engine learns from the records, in one place: the engine
/// works on it, a snapshot saves it whole and a restore replaces it whole.
/// The policy is not part of it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Learnt {
    registry: Registry,
    dns: DnsMap,
    incidents: Incidents,
    conversations: Conversations,
    activities: BoundedMap<Rc<str>, Activity>,
    baselines: Baselines,
    rates: RateWindows,
    tunnels: TunnelWindows,
    clock: Clock,
    deadlines: Deadlines,
    counters: Counters,
    /// Recent tool calls of agents without an address of their own (OpenClaw
    /// agents on their gateway's): which agent a flow from the shared address
    /// belongs to.
    shared_intents: std::collections::VecDeque<(Rc<str>, PlannedAction)>,
    /// The ends of the telemetry hash chains followed.
    chains: telemetry_chain_broken::Chains,
    /// Alert-flood limits on new incidents.
    flood: flood::FloodLimits,
    /// Findings that came due with event time, waiting for the next record
    /// to carry them (`clawwatch.due[]`), so carriers that cannot add records lose none.
    due: std::collections::VecDeque<DueFinding>,
    /// Due findings forgotten because the queue was full.
    due_dropped: u64,
}

impl Learnt {
    /// Nothing learnt yet, with the policy's caps and timings.
    fn new(m: &crate::policy::Monitor) -> Learnt {
        Learnt {
            registry: Registry::new(m.max_agents),
            dns: DnsMap::new(m.max_dns_entries, m.dns_ttl_grace_secs),
            incidents: Incidents::new(m.max_incidents, m.incident_quiet_secs),
            conversations: Conversations::new(m.max_dns_entries),
            activities: BoundedMap::new(m.max_agents),
            baselines: Baselines::default(),
            rates: RateWindows::new(window_cap(m)),
            tunnels: TunnelWindows::new(window_cap(m)),
            clock: Clock::new(m.lateness_secs, m.max_clock_step_secs),
            deadlines: Deadlines::new(deadline_cap(m)),
            counters: Counters::default(),
            shared_intents: std::collections::VecDeque::new(),
            chains: Default::default(),
            flood: flood::FloodLimits::new(
                m.max_new_incidents_per_minute,
                m.max_new_incidents_per_subnet_per_minute,
                m.max_incidents,
            ),
            due: std::collections::VecDeque::new(),
            due_dropped: 0,
        }
    }

    /// Meets the policy's caps (after a restore: least recently used first).
    fn recap(&mut self, m: &crate::policy::Monitor) {
        self.registry.recap(m.max_agents);
        self.dns.recap(m.max_dns_entries);
        self.incidents.recap(m.max_incidents);
        self.conversations.recap(m.max_dns_entries);
        self.activities.recap(m.max_agents);
        self.rates.recap(window_cap(m));
        self.tunnels.recap(window_cap(m));
        self.deadlines.recap(deadline_cap(m));
        self.flood.recap(m.max_incidents);
    }

    /// Makes the timing settings follow the policy.
    fn apply_timings(&mut self, m: &crate::policy::Monitor) {
        self.clock
            .set_lateness(m.lateness_secs, m.max_clock_step_secs);
        self.dns.set_grace(m.dns_ttl_grace_secs);
        self.incidents.set_quiet(m.incident_quiet_secs);
        self.flood.set_limits(
            m.max_new_incidents_per_minute,
            m.max_new_incidents_per_subnet_per_minute,
        );
    }
}

/// Due findings one record carries at most; the rest ride on the following records.
const MAX_DUE_PER_RECORD: usize = 32;
/// Due findings waiting at most: a burst beyond this forgets the oldest (counted as evictions).
const MAX_DUE_WAITING: usize = 4096;

/// Tool calls remembered for attributing flows from a shared address.
const MAX_SHARED_INTENTS: usize = 1024;

impl Engine {
    pub fn new(policy_text: &str) -> Result<Engine, PolicyError> {
        Policy::from_toml(policy_text).map(Engine::with_policy)
    }

    pub fn with_policy(policy: Policy) -> Engine {
        Engine {
            learnt: Learnt::new(&policy.monitor),
            emitted: Vec::new(),
            stream_hint: None,
            field_set: FieldSet::Native,
            current: None,
            policy,
            reporting_due: false,
        }
    }

    /// Chooses the fields records leave with (native, ECS, OCSF).
    pub fn set_field_set(&mut self, field_set: FieldSet) {
        self.field_set = field_set;
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the policy and keeps everything learnt (agents, DNS answers,
    /// activity, baselines, incidents). A policy that does not load changes
    /// nothing. Caps (`max_*`) keep the values the engine started with; the
    /// timing settings (lateness, DNS grace, quiet period) follow the new policy.
    pub fn reload(&mut self, policy_text: &str) -> Result<(), PolicyError> {
        self.policy = Policy::from_toml(policy_text)?;
        self.apply_timings();
        Ok(())
    }

    /// Makes the timing settings follow the current policy.
    fn apply_timings(&mut self) {
        self.learnt.apply_timings(&self.policy.monitor);
    }

    pub fn stats(&self) -> Stats {
        let by_stream = self.learnt.counters.by_stream;
        // Incident and audit records are written by clawwatch, not judged.
        let judged = |verdict: Verdict| -> u64 {
            Stream::ALL
                .iter()
                .filter(|s| !matches!(s, Stream::Incident | Stream::Audit))
                .map(|&s| by_stream[s as usize][verdict as usize])
                .sum()
        };
        Stats {
            records: Verdict::ALL.iter().map(|&v| judged(v)).sum(),
            allowed: judged(Verdict::Allow),
            alerts: judged(Verdict::Alert),
            approved: judged(Verdict::Approved),
            unattributed: judged(Verdict::Unattributed),
            not_applicable: judged(Verdict::NotApplicable),
            errors: judged(Verdict::Error),
            findings: self.learnt.counters.by_rule.iter().sum(),
            evictions: self.learnt.registry.evictions()
                + self.learnt.dns.evictions()
                + self.learnt.incidents.evictions()
                + self.learnt.conversations.evictions()
                + self.learnt.activities.evictions()
                + self.learnt.rates.evictions()
                + self.learnt.tunnels.evictions()
                + self.learnt.deadlines.forced
                + self.learnt.flood.evictions()
                + self.learnt.due_dropped,
            agents: self.learnt.registry.len() as u64,
            dns_entries: self.learnt.dns.len() as u64,
            incidents_opened: self.learnt.incidents.opened(),
            incidents_closed: self.learnt.incidents.closed(),
            incidents_open: self.learnt.incidents.len() as u64,
            records_by_stream: by_stream,
            findings_by_rule: self.learnt.counters.by_rule,
        }
    }

    /// Processes NDJSON: one output line per input line, in order, each
    /// followed by the incident/audit records it produced (their
    /// `clawwatch.stream` says so). A final line without `\n` counts; a
    /// trailing `\n` adds no line.
    pub fn process_ndjson(&mut self, batch: &[u8], out: &mut Vec<u8>) {
        self.process_ndjson_as(batch, None, out);
    }

    /// [`Engine::process_ndjson`] for records of the format `stream` names
    /// (unless a record names its own).
    pub fn process_ndjson_as(&mut self, batch: &[u8], stream: Option<&str>, out: &mut Vec<u8>) {
        self.process_ndjson_described(batch, stream, out, None);
    }

    /// [`Engine::process_ndjson_as`], saying in `lines` what each output line
    /// is, so a carrier can route it without reading it.
    pub fn process_ndjson_described(
        &mut self,
        batch: &[u8],
        stream: Option<&str>,
        out: &mut Vec<u8>,
        mut lines: Option<&mut Vec<OutputLine>>,
    ) {
        self.stream_hint = stream.and_then(known_format);
        out.reserve(batch.len() + batch.len() / 2);
        let mut rest = batch;
        while !rest.is_empty() {
            let (line, next) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            let start = out.len();
            let (stream, verdict) = self.process_record(line, out);
            out.push(b'\n');
            if let Some(lines) = lines.as_deref_mut() {
                lines.push(OutputLine::new(out.len() - start, stream, verdict));
            }
            self.write_emitted_described(out, lines.as_deref_mut());
            rest = next;
        }
    }

    /// Processes one record, writing the enriched record (no trailing newline);
    /// returns its stream and verdict. Incident and audit records it produced
    /// wait for [`Engine::write_emitted`].
    pub fn process_record(&mut self, record: &[u8], out: &mut Vec<u8>) -> (Stream, Verdict) {
        let (stream, verdict) = self.judge_and_write(record, out);
        self.learnt.counters.by_stream[stream as usize][verdict as usize] += 1;
        self.run_due();
        (stream, verdict)
    }

    /// [`Engine::process_record`] for a record of the format `stream` names
    /// (unless the record names its own).
    pub fn process_record_as(
        &mut self,
        record: &[u8],
        stream: Option<&str>,
        out: &mut Vec<u8>,
    ) -> (Stream, Verdict) {
        self.stream_hint = stream.and_then(known_format);
        self.process_record(record, out)
    }

    /// Forgets the incident/audit records produced so far, for carriers that
    /// allow exactly one record out per record in; returns how many.
    pub fn discard_emitted(&mut self) -> usize {
        let n = self.emitted.len();
        self.emitted.clear();
        n
    }

    /// Writes (and forgets) the incident/audit records produced so far, one per line.
    pub fn write_emitted(&mut self, out: &mut Vec<u8>) {
        self.write_emitted_described(out, None);
    }

    fn write_emitted_described(
        &mut self,
        out: &mut Vec<u8>,
        mut lines: Option<&mut Vec<OutputLine>>,
    ) {
        for record in self.emitted.drain(..) {
            let start = out.len();
            let (stream, verdict) = record.stream_and_verdict();
            self.learnt.counters.by_stream[stream as usize][verdict as usize] += 1;
            match self.field_set {
                FieldSet::Native => record.write(out),
                FieldSet::Ecs => crate::siem::ecs::write_incident(&record, out),
                FieldSet::Ocsf => crate::siem::ocsf::write_incident(&record, out),
            }
            out.push(b'\n');
            if let Some(lines) = lines.as_deref_mut() {
                lines.push(OutputLine::new(out.len() - start, stream, verdict));
            }
        }
    }

    /// Moves event time to `t` when input is idle, so time-driven checks
    /// (silent agents past their lifetime, missing heartbeats, closing
    /// incidents) still fire; writes what they produce as NDJSON.
    pub fn advance_to(&mut self, t: Timestamp, out: &mut Vec<u8>) {
        self.advance_to_described(t, out, None);
    }

    /// [`Engine::advance_to`], saying in `lines` what each output line is.
    pub fn advance_to_described(
        &mut self,
        t: Timestamp,
        out: &mut Vec<u8>,
        lines: Option<&mut Vec<OutputLine>>,
    ) {
        self.learnt.clock.advance_to(t);
        self.run_due();
        self.write_emitted_described(out, lines);
    }

    /// Writes the enriched record; returns its stream and verdict.
    fn judge_and_write(&mut self, record: &[u8], out: &mut Vec<u8>) -> (Stream, Verdict) {
        let (mut note, original) = self.judge_record(record);
        let carried = self.learnt.due.len().min(MAX_DUE_PER_RECORD);
        note.due.extend(self.learnt.due.drain(..carried));
        match (self.field_set, &original) {
            (FieldSet::Ecs, _) => crate::siem::ecs::write_record(
                &note,
                self.current.as_ref(),
                &original,
                self.learnt.clock.now(),
                out,
            ),
            (
                _,
                Original::Object {
                    json,
                    has_clawwatch,
                },
            ) => note.append_to(json, *has_clawwatch, out),
            (_, Original::Raw(raw)) => note.wrap_raw(raw, out),
        }
        // Deadlines that come due next are no evidence of this record's endpoints.
        self.current = None;
        (note.stream, note.verdict)
    }

    /// Parses and judges one record.
    fn judge_record<'r>(&mut self, record: &'r [u8]) -> (Note, Original<'r>) {
        let trimmed = record.trim_ascii();
        let fail = |why: String| {
            let mut note = Note::new(Stream::Other, Verdict::Error);
            note.error = Some(why);
            (note, Original::Raw(record))
        };
        if trimmed.is_empty() {
            return fail("empty record".into());
        }
        let max = self.policy.monitor.max_record_bytes;
        if record.len() > max {
            return fail(format!(
                "record of {} bytes is over max_record_bytes ({max}); passed through unparsed",
                record.len()
            ));
        }
        if let Err(e) = std::str::from_utf8(trimmed) {
            return fail(format!(
                "not UTF-8 (invalid byte at offset {}); original bytes in raw_base64",
                e.valid_up_to()
            ));
        }
        let fields = match Fields::parse(trimmed) {
            Ok(fields) => fields,
            Err(e) => {
                // Valid JSON the field reader cannot take (nested past its
                // depth, a number beyond f64 in a field it reads): kept as the
                // object it is, byte for byte, and said to be unjudged.
                if crate::record::fields::is_json_object(trimmed) {
                    let mut note = Note::new(Stream::Other, Verdict::Error);
                    note.error = Some(format!(
                        "a JSON object whose fields clawwatch cannot read: {e}"
                    ));
                    let original = Original::Object {
                        json: trimmed,
                        has_clawwatch: true, // unknown: append_to looks
                    };
                    return (note, original);
                }
                // Text some frameworks write (NanoClaw), or JSON behind a
                // Docker timestamp (iron-proxy): judged, and kept as `raw`.
                let text = std::str::from_utf8(trimmed).unwrap_or_default();
                return match crate::record::recognize_text(text, &self.policy.inputs, None) {
                    Some(recognized) => (self.note_for(recognized), Original::Raw(record)),
                    None => fail(format!("not a JSON object: {e}")),
                };
            }
        };
        let mut recognized = recognize_with(&fields, &self.policy.inputs, self.stream_hint);
        if let Recognized::Event(Event::Telemetry(line)) = &mut recognized {
            // Its hash covers its own bytes, which only this layer still has.
            line.verify(trimmed);
        }
        let note = self.note_for(recognized);
        let original = Original::Object {
            json: trimmed,
            has_clawwatch: fields.has_clawwatch,
        };
        (note, original)
    }

    /// The note for a recognised (or unrecognised) record.
    fn note_for(&mut self, recognized: Recognized) -> Note {
        match recognized {
            Recognized::Event(event) => {
                if self.field_set != FieldSet::Native {
                    self.current = Some(Endpoints::of(&event));
                }
                self.judge(event)
            }
            Recognized::Invalid(e) => {
                let mut note = Note::new(e.stream, Verdict::Error);
                note.error = Some(e.to_string());
                note
            }
            Recognized::Unknown(reason) => {
                let mut note = Note::new(Stream::Other, Verdict::NotApplicable);
                note.note = Some(reason);
                note
            }
        }
    }

    /// The note for one decoded event, updating state on the way.
    pub fn judge(&mut self, event: Event) -> Note {
        let ts = event.ts();
        self.learnt.clock.observe(ts);
        self.bind_gateway();
        let (note, findings) = match event {
            Event::Spawn(s) => (self.spawn(&s), Vec::new()),
            Event::Seen(seen) => {
                let mut note = self.ensure_agent(&seen.spawn);
                note.note = Some(seen.what);
                (note, Vec::new())
            }
            Event::Terminate(t) => {
                let update = self.learnt.registry.terminate(&t);
                (self.control_note(&t.agent_id, update), Vec::new())
            }
            Event::PolicyChange(c) => {
                let update = self.learnt.registry.change_policy(&c);
                if let Some(agent) = self.learnt.registry.agent(&c.agent_id) {
                    let profile = self
                        .policy
                        .profile(&agent.profile, agent.deployment.as_deref());
                    if let Some(deadline) = lifetime_exceeded::deadline(agent, profile) {
                        self.learnt
                            .deadlines
                            .schedule(deadline, Due::Lifetime(agent.id.clone()));
                    }
                }
                (self.control_note(&c.agent_id, update), Vec::new())
            }
            Event::Plan(plan) => {
                let update = if self.learnt.registry.agent(&plan.agent_id).is_some() {
                    Update::Applied
                } else {
                    Update::UnknownAgent
                };
                if let Some(activity) = self.learnt.activities.get_mut(plan.agent_id.as_str()) {
                    activity.plan = Some(plan.actions);
                }
                (self.control_note(&plan.agent_id, update), Vec::new())
            }
            Event::Grant(grant) => {
                let update = if self.learnt.registry.agent(&grant.agent_id).is_some() {
                    Update::Applied
                } else {
                    Update::UnknownAgent
                };
                let agent_id = grant.agent_id.clone();
                if let Some(activity) = self.learnt.activities.get_mut(agent_id.as_str()) {
                    activity.add_grant(grant);
                }
                (self.control_note(&agent_id, update), Vec::new())
            }
            Event::Intent(intent) => {
                let mut note = match &intent.implicit_spawn {
                    Some(spawn) => self.ensure_agent(spawn),
                    None => {
                        let update = if self.learnt.registry.agent(&intent.agent_id).is_some() {
                            Update::Applied
                        } else {
                            Update::UnknownAgent
                        };
                        self.control_note(&intent.agent_id, update)
                    }
                };
                if note.agent.is_some() {
                    note.note =
                        Some(self.declare_intent(&intent.agent_id, intent.action, &intent.what));
                }
                (note, Vec::new())
            }
            Event::Proxied(call) => self.judge_proxied(&call),
            Event::Telemetry(line) => self.judge_telemetry(line),
            Event::Liveness(live) => {
                let Some(agent) = self.learnt.registry.agent(&live.agent_id) else {
                    let note = self.control_note(&live.agent_id, Update::UnknownAgent);
                    return self.finish(note, Vec::new(), live.ts);
                };
                let mut note = Note::new(Stream::Heartbeat, Verdict::Allow);
                note.agent = Some(AgentInfo::from(agent));
                // OpenClaw's scheduled turns say sent/ok-empty/ok-token/skipped when well.
                let healthy =
                    |s: &&str| matches!(*s, "ok" | "sent" | "ok-empty" | "ok-token" | "skipped");
                if let Some(status) = live.status.as_deref().filter(|s| !healthy(s)) {
                    note.note = Some(format!(
                        "the agent reports status {status}{}",
                        live.reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ));
                }
                let id = agent.id.clone();
                let profile = self
                    .policy
                    .profile(&agent.profile, agent.deployment.as_deref());
                let overdue = heartbeat_missing::overdue_at(profile, live.ts, None);
                self.heard_from(id, live.ts, overdue);
                (note, Vec::new())
            }
            Event::Heartbeat(hb) => self.judge_heartbeat(hb),
            Event::Flow(flow) => self.judge_flow(&flow),
            Event::Dns(query) => self.judge_dns(&query),
        };
        self.finish(note, findings, ts)
    }

    /// Binds an agent's addresses from its spawn and arms its deadlines.
    fn spawn(&mut self, s: &Spawn) -> Note {
        self.learnt.registry.spawn(s);
        let mut note = Note::new(Stream::Control, Verdict::Allow);
        if let Some(agent) = self.learnt.registry.agent(&s.agent_id) {
            let profile = self
                .policy
                .profile(&agent.profile, agent.deployment.as_deref());
            if profile.is_none() {
                note.note = Some(format!(
                    "profile \"{}\" is not in the policy: this agent is allowed no traffic",
                    agent.profile
                ));
            }
            if let Some(deadline) = lifetime_exceeded::deadline(agent, profile) {
                self.learnt
                    .deadlines
                    .schedule(deadline, Due::Lifetime(agent.id.clone()));
            }
            let mut activity = Activity::default();
            if let Some(overdue) = heartbeat_missing::overdue_at(profile, agent.spawned, None) {
                activity.heartbeat_overdue = Some(overdue);
                self.learnt
                    .deadlines
                    .schedule(overdue, Due::Heartbeat(agent.id.clone()));
            }
            self.learnt.activities.insert(agent.id.clone(), activity);
            note.agent = Some(AgentInfo::from(agent));
        }
        note
    }

    /// A tool call's destination, announced: it says which agent a flow from
    /// a shared address belongs to, and joins the agent's declared plan if it
    /// has one (an agent without a plan is not judged against intents).
    /// Returns the note that says which.
    fn declare_intent(&mut self, agent_id: &str, action: PlannedAction, what: &str) -> String {
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
                .push_back((Rc::from(agent_id), action.clone()));
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
    fn judge_telemetry(&mut self, line: TelemetryLine) -> (Note, Vec<Finding>) {
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
    fn ensure_agent(&mut self, s: &Spawn) -> Note {
        if self.learnt.registry.agent(&s.agent_id).is_none() {
            return self.spawn(s);
        }
        self.control_note(&s.agent_id, Update::Applied)
    }

    /// The OpenClaw gateway the policy declares is an agent from the start
    /// of time: it holds its address before any event names it.
    fn bind_gateway(&mut self) {
        let Some(gateway) = &self.policy.inputs.openclaw.gateway else {
            return;
        };
        let current = self
            .learnt
            .registry
            .agent(&gateway.agent_id)
            .is_some_and(|a| {
                a.ips == gateway.ips && *a.profile == *gateway.profile && a.terminated.is_none()
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
    fn attribute_shared(&mut self, holder: Rc<str>, flow: &Flow) -> (Rc<str>, Option<String>) {
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
    fn finish(&mut self, mut note: Note, findings: Vec<Finding>, ts: Timestamp) -> Note {
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

    fn control_note(&mut self, agent_id: &str, update: Update) -> Note {
        match (update, self.learnt.registry.agent(agent_id)) {
            (Update::Applied, Some(agent)) => {
                let mut note = Note::new(Stream::Control, Verdict::Allow);
                note.agent = Some(AgentInfo::from(agent));
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

    fn judge_heartbeat(&mut self, hb: Heartbeat) -> (Note, Vec<Finding>) {
        let Some(agent) = self.learnt.registry.agent(&hb.agent_id) else {
            return (
                self.control_note(&hb.agent_id, Update::UnknownAgent),
                Vec::new(),
            );
        };
        let mut note = Note::new(Stream::Heartbeat, Verdict::Allow);
        note.agent = Some(AgentInfo::from(agent));
        let id = agent.id.clone();
        let profile = self
            .policy
            .profile(&agent.profile, agent.deployment.as_deref());
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
    fn heard_from(&mut self, id: Rc<str>, at: Timestamp, overdue: Option<Timestamp>) {
        let activity = self
            .learnt
            .activities
            .get_or_insert_with(id.clone(), Activity::default);
        if activity.last_heartbeat_end.is_none_or(|last| at > last) {
            activity.last_heartbeat_end = Some(at);
            activity.heartbeat_overdue = overdue;
            if let Some(due) = overdue {
                self.learnt.deadlines.schedule(due, Due::Heartbeat(id));
            }
        }
    }

    fn judge_flow(&mut self, flow: &Flow) -> (Note, Vec<Finding>) {
        let mut note = Note::new(Stream::Flow, Verdict::Unattributed);
        let mut findings: Vec<Finding> = Vec::new();
        // A flow to an agent is its inbound or return traffic, never judged
        // against allowed_outbound; between two agents it is also the
        // caller's call. A peer's connection settles a waiting answer.
        let to_agent = match self.learnt.registry.agent_at(flow.dst, flow.ts) {
            Some(agent) => {
                let declared = self
                    .policy
                    .profile(&agent.profile, agent.deployment.as_deref())
                    .and_then(|p| p.serves(flow.proto, flow.dst_port));
                Some((
                    AgentInfo::from(agent),
                    self.learnt.conversations.to_agent(flow, declared),
                ))
            }
            None => None,
        };
        let holder = self
            .learnt
            .registry
            .agent_at(flow.src, flow.ts)
            .map(|a| a.id.clone());
        let Some(holder) = holder else {
            let monitor = &self.policy.monitor;
            if let Some((info, side)) = to_agent {
                note.agent = Some(info);
                note.verdict = Verdict::Allow;
                note.direction = Some(match side {
                    ToAgent::Inbound => "inbound",
                    ToAgent::Return => "return",
                });
            } else {
                let what = egress_unknown_agent::describe_flow(flow.dst, flow.dst_port, flow.proto);
                findings.extend(egress_unknown_agent::check(flow.src, monitor, &what));
                if monitor.in_agent_subnet(flow.src) {
                    findings.extend(dns_foreign_resolver::check_flow(
                        flow,
                        &Subject::Address(flow.src),
                        monitor,
                    ));
                }
            }
            return (note, findings);
        };
        let (id, shared) = self.attribute_shared(holder, flow);
        note.note = shared;
        let Some(agent) = self.learnt.registry.agent(&id) else {
            return (note, findings);
        };
        note.agent = Some(AgentInfo::from(agent));
        note.verdict = Verdict::Allow;
        let profile = self
            .policy
            .profile(&agent.profile, agent.deployment.as_deref());
        let declared = profile.and_then(|p| p.serves(flow.proto, flow.src_port));
        match self.learnt.conversations.from_agent(flow, declared) {
            FromAgent::Reply => {
                note.direction = Some("return");
                return (note, findings);
            }
            FromAgent::Provisional => {
                note.direction = Some("return");
                note.note = Some(format!(
                    "an answer from its port {} to {}: judged as its own call if no connection from that peer turns up within lateness_minutes",
                    flow.src_port,
                    crate::rules::endpoint(&flow.dst.to_string(), flow.dst_port)
                ));
                let id = agent.id.clone();
                if let Some(forced) = self.learnt.conversations.hold(id, flow) {
                    self.judge_unanswered(forced);
                }
                return (note, findings);
            }
            FromAgent::ServiceCall => {
                note.direction = Some("outbound");
                let id = agent.id.clone();
                findings.extend(self.judge_as_service_call(&id, flow));
                return (note, findings);
            }
            FromAgent::Call => {}
        }
        note.direction = Some("outbound");
        let monitor = &self.policy.monitor;
        let end = flow.end.map_or(flow.ts, |e| e.max(flow.ts));
        let names = self
            .learnt
            .dns
            .names_for_connection(flow.src, flow.dst, flow.ts, end);
        let activity = self
            .learnt
            .activities
            .get_or_insert_with(agent.id.clone(), Activity::default);
        // DNS is infrastructure, never an action of a plan nor expected in a
        // heartbeat (a foreign resolver is dns.foreign_resolver's incident);
        // to a corporate resolver it is not volume either.
        let dns = matches!(flow.dst_port, 53 | 853);
        let corp_dns = flow.dst_port == 53 && monitor.is_corp_resolver(flow.dst);
        let shape = if dns {
            Shape::Infrastructure
        } else {
            Shape::Call
        };
        for finding in
            crate::egress::judge(&self.policy, agent, profile, activity, flow, &names, shape)
        {
            if finding.rule.id != schedule_deviation::RULE.id {
                findings.push(finding);
            } else if activity.held_deviation.is_none() {
                // Judged once its minute is complete, when a retry loop has shown itself.
                let at = volume_anomaly::judged_at(flow.ts);
                activity.held_deviation = Some((flow.ts, finding));
                self.learnt
                    .deadlines
                    .schedule(at, Due::Schedule(agent.id.clone()));
            }
        }
        findings.extend(dns_foreign_resolver::check_flow(
            flow,
            &Subject::Agent(agent),
            monitor,
        ));
        let what = || {
            let host = names
                .first()
                .map_or_else(|| flow.dst.to_string(), |n| n.to_string());
            format!(
                "connected to {}/{}",
                crate::rules::endpoint(&host, flow.dst_port),
                flow.proto
            )
        };
        findings.extend(lifetime_exceeded::check_activity(
            agent, profile, flow.ts, what,
        ));
        if !dns {
            activity.observe(flow);
        }
        if !corp_dns {
            let (hour, completed) = activity.volume.add(flow.ts, flow.bytes);
            if let Some(profile) = profile {
                if let Some(done) = completed {
                    self.learnt
                        .baselines
                        .learn(profile, done, monitor.baseline_max_drift);
                }
                let runaway = self
                    .learnt
                    .rates
                    .check(agent, profile, flow, names.first().copied());
                if runaway.is_some() {
                    activity.runaway_at = Some(flow.ts);
                }
                findings.extend(runaway);
                // The hour's volume is judged once this minute's late flows
                // are in, so a retry loop is seen as one before it is counted.
                if activity.volume_due.is_none()
                    && volume_anomaly::exceeds(profile, &self.learnt.baselines, hour)
                {
                    let at = volume_anomaly::judged_at(flow.ts);
                    activity.volume_due = Some(at);
                    self.learnt
                        .deadlines
                        .schedule(at, Due::Volume(agent.id.clone()));
                }
            }
        }
        (note, findings)
    }

    /// Judges a flow from an agent's service port that answered no peer as
    /// the agent's own call, keyed by the peer.
    fn judge_as_service_call(&mut self, agent_id: &str, flow: &Flow) -> Vec<Finding> {
        let Some(agent) = self.learnt.registry.agent(agent_id) else {
            return Vec::new();
        };
        let profile = self
            .policy
            .profile(&agent.profile, agent.deployment.as_deref());
        let empty = Activity::default();
        let activity = self.learnt.activities.peek(&agent.id).unwrap_or(&empty);
        crate::egress::judge(
            &self.policy,
            agent,
            profile,
            activity,
            flow,
            &[],
            Shape::UnansweredReply,
        )
    }

    /// Judges an answer no peer's connection explained, once it comes due.
    fn judge_unanswered(&mut self, pending: PendingReply) {
        let findings = self.judge_as_service_call(&pending.agent_id, &pending.flow);
        let Some(agent) = self.learnt.registry.agent(&pending.agent_id) else {
            return;
        };
        let flow = &pending.flow;
        let info = AgentInfo::from(agent);
        // The incident's evidence is the answer that came due, not whatever record is current.
        let current = self.current.take();
        if self.field_set != FieldSet::Native {
            self.current = Some(Endpoints {
                // Judged as the agent's own call.
                direction: Some("outbound".into()),
                ..Endpoints::of(&Event::Flow(pending.flow.clone()))
            });
        }
        self.report(findings, Some(&info), flow.ts);
        self.current = current;
    }

    /// A connection asked for by name through an egress proxy: judged by name
    /// against the profile, the plan and the approvals, every name on its own.
    fn judge_proxied(&mut self, call: &ProxiedCall) -> (Note, Vec<Finding>) {
        let found = match &call.agent {
            CallingAgent::Id(id) => self.learnt.registry.agent(id),
            CallingAgent::Address(ip) => self.learnt.registry.agent_at(*ip, call.ts),
        };
        let Some(agent) = found else {
            let mut note = Note::new(Stream::Proxy, Verdict::Unattributed);
            note.note = Some(match &call.agent {
                CallingAgent::Id(id) => format!(
                    "agent \"{id}\" is not known (never spawned, or forgotten under max_agents)"
                ),
                CallingAgent::Address(ip) => {
                    format!("no agent held {ip} (the proxy's client) at that time")
                }
            });
            return (note, Vec::new());
        };
        let mut note = Note::new(Stream::Proxy, Verdict::Allow);
        note.agent = Some(AgentInfo::from(agent));
        note.direction = Some("outbound");
        let flow = Flow {
            ts: call.ts,
            end: None,
            src: agent
                .ips
                .first()
                .copied()
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            // No address: only name rules can admit it.
            dst: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_port: call.port,
            proto: crate::record::Proto::Tcp,
            bytes: 0,
            packets: 0,
            tcp_flags: None,
            src_initiated: true,
        };
        let profile = self
            .policy
            .profile(&agent.profile, agent.deployment.as_deref());
        let activity = self
            .learnt
            .activities
            .get_or_insert_with(agent.id.clone(), Activity::default);
        let mut findings = Vec::new();
        for host in &call.hosts {
            findings.extend(crate::egress::judge(
                &self.policy,
                agent,
                profile,
                activity,
                &flow,
                &[host.as_str()],
                Shape::Call,
            ));
        }
        let what = || format!("asked its proxy for {}:{}", call.hosts[0], call.port);
        findings.extend(lifetime_exceeded::check_activity(
            agent, profile, call.ts, what,
        ));
        if let Some(by) = &call.rejected_by {
            note.note = Some(format!("the proxy refused it ({by})"));
        }
        (note, findings)
    }

    fn judge_dns(&mut self, query: &DnsQuery) -> (Note, Vec<Finding>) {
        self.learnt.dns.learn(query);
        let mut note = Note::new(Stream::Dns, Verdict::Unattributed);
        let mut findings: Vec<Finding> = Vec::new();
        let monitor = &self.policy.monitor;
        if let Some(agent) = self.learnt.registry.agent_at(query.client, query.ts) {
            note.agent = Some(AgentInfo::from(agent));
            note.verdict = Verdict::Allow;
            let profile = self
                .policy
                .profile(&agent.profile, agent.deployment.as_deref());
            findings.extend(dns_foreign_resolver::check_query(
                &query.qname,
                query.resolver,
                &Subject::Agent(agent),
                monitor,
            ));
            // Both DNS analytics work per registered domain: look it up once.
            if let Some(domain) = crate::rules::registered_domain(&query.qname) {
                let activity = self
                    .learnt
                    .activities
                    .get_or_insert_with(agent.id.clone(), Activity::default);
                // A name the agent may reach is not judged for looking random (CDNs, cloud hosts).
                let names_it =
                    |d: &crate::policy::Destination| d.is_name() && d.matches_name(&query.qname);
                let allowed = profile
                    .is_some_and(|p| p.allowed_outbound.iter().any(|r| names_it(&r.destination)))
                    || self
                        .policy
                        .approvals
                        .iter()
                        .any(|r| names_it(&r.destination))
                    || activity
                        .grants
                        .iter()
                        .any(|g| names_it(&g.dest) && g.expires.is_none_or(|e| query.ts < e));
                findings.extend(dns_high_entropy::check_in(
                    agent,
                    &mut activity.random_domains,
                    &query.qname,
                    domain,
                    allowed,
                    query.ts,
                ));
                findings.extend(self.learnt.tunnels.check_in(
                    agent,
                    &query.qname,
                    domain,
                    query.qtype.as_deref(),
                    query.ts,
                ));
            }
            findings.extend(lifetime_exceeded::check_activity(
                agent,
                profile,
                query.ts,
                || format!("resolved {}", query.qname),
            ));
        } else {
            findings.extend(egress_unknown_agent::check(
                query.client,
                monitor,
                &format!("resolved {}", query.qname),
            ));
            if monitor.in_agent_subnet(query.client) {
                findings.extend(dns_foreign_resolver::check_query(
                    &query.qname,
                    query.resolver,
                    &Subject::Address(query.client),
                    monitor,
                ));
            }
        }
        (note, findings)
    }

    /// Files findings into incidents; new incidents (and approvals) also
    /// become records of their own.
    fn report(
        &mut self,
        findings: Vec<Finding>,
        agent: Option<&AgentInfo>,
        ts: Timestamp,
    ) -> Vec<Reported> {
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

    /// Handles every deadline the watermark has passed.
    fn run_due(&mut self) {
        let Some(watermark) = self.learnt.clock.watermark() else {
            return;
        };
        self.reporting_due = true;
        self.run_due_until(watermark);
        self.reporting_due = false;
    }

    fn run_due_until(&mut self, watermark: Timestamp) {
        while let Some(pending) = self.learnt.conversations.due(watermark) {
            self.judge_unanswered(pending);
        }
        while let Some((at, due)) = self.learnt.deadlines.pop_due(watermark) {
            match due {
                Due::Volume(id) => self.volume_due(&id, at),
                Due::Schedule(id) => self.schedule_due(&id),
                Due::FloodSummary(key) => {
                    if let Some(held) = self.learnt.flood.take_summary(&key) {
                        self.emitted.push(IncidentRecord {
                            incident: crate::incidents::Incident {
                                id: Rc::from(format!(
                                    "{}/{}/suppressed@{}",
                                    held.scope,
                                    held.rule.id,
                                    held.start.to_rfc3339()
                                )),
                                rule: held.rule,
                                severity: held.rule.severity,
                                alerting: true,
                                agent: None,
                                summary: held.summary(),
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

    fn agent_and_profile(&mut self, id: &str) -> Option<(Agent, Option<Profile>)> {
        let agent = self.learnt.registry.agent(id)?.clone();
        let profile = self
            .policy
            .profile(&agent.profile, agent.deployment.as_deref())
            .cloned();
        Some((agent, profile))
    }

    fn lifetime_due(&mut self, id: &str, at: Timestamp, watermark: Timestamp) {
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
            self.report(vec![finding], Some(&AgentInfo::from(&agent)), deadline);
        }
    }

    fn heartbeat_due(&mut self, id: &str, at: Timestamp) {
        let Some(activity) = self.learnt.activities.peek_mut(id) else {
            return;
        };
        if activity.heartbeat_overdue != Some(at) {
            return; // superseded by a later heartbeat
        }
        activity.heartbeat_overdue = None;
        let last = activity.last_heartbeat_end;
        let Some((agent, _)) = self.agent_and_profile(id) else {
            return;
        };
        if let Some(finding) = heartbeat_missing::check(&agent, last, at) {
            self.report(vec![finding], Some(&AgentInfo::from(&agent)), at);
        }
    }

    fn heartbeat_window_due(&mut self, id: &str, watermark: Timestamp) {
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
        let info = AgentInfo::from(&agent);
        for (findings, at) in reports {
            self.report(findings, Some(&info), at);
        }
    }

    /// A call off its schedule, once its minute is complete: part of a retry
    /// loop (`rate.runaway` from two minutes before it on), it is that incident.
    fn schedule_due(&mut self, id: &str) {
        let Some((agent, _)) = self.agent_and_profile(id) else {
            return;
        };
        let Some(activity) = self.learnt.activities.peek_mut(id) else {
            return;
        };
        let Some((at, finding)) = activity.held_deviation.take() else {
            return;
        };
        let looping = activity
            .runaway_at
            .is_some_and(|r| r.0 >= at.0 - 120 * crate::time::NANOS_PER_SEC);
        if !looping {
            self.report(vec![finding], Some(&AgentInfo::from(&agent)), at);
        }
    }

    /// The hour's volume, once the minute that crossed the baseline is complete.
    fn volume_due(&mut self, id: &str, at: Timestamp) {
        let Some((agent, Some(profile))) = self.agent_and_profile(id) else {
            return;
        };
        let Some(activity) = self.learnt.activities.peek_mut(id) else {
            return;
        };
        activity.volume_due = None;
        let mut findings = volume_anomaly::check(
            &agent,
            &profile,
            &self.learnt.baselines,
            activity.volume.totals(),
        );
        // A retry loop in the hour is its own incident (rate.runaway): the
        // connections it made are not a second one.
        if activity
            .runaway_at
            .is_some_and(|r| at.0 - r.0 <= 3600 * crate::time::NANOS_PER_SEC)
        {
            findings.retain(|f| !volume_anomaly::counts_connections(f));
        }
        self.report(findings, Some(&AgentInfo::from(&agent)), at);
    }
}

/// The format name as the engine knows it; a name it does not know is no hint.
fn known_format(name: &str) -> Option<&'static str> {
    crate::record::FORMAT_NAMES
        .iter()
        .copied()
        .find(|known| *known == name)
}

mod state;
pub use state::StateError;

#[cfg(test)]
mod tests;
