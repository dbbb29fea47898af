//! The engine: one record in, the same record plus its `clawwatch` note out,
//! followed by any incident or audit records the record (or the passage of
//! event time it brought) produced.
//!
//! It owns the compiled policy and everything learnt from the records (agent
//! registry, DNS answers, activity, baselines, incidents, deadlines) and knows
//! nothing of WIT or I/O, so it runs the same natively, inside the component
//! and in tests.
//!
//! This file holds the batch loop, reloads and the dispatch of a record to
//! its handler; the handlers live beside it (`control`, `network`, `dns`),
//! with `report` (findings into notes and incidents), `deadlines` (checks
//! driven by event time) and `state` (snapshots of [`Learnt`]).

use crate::bounded::BoundedMap;
use crate::clock::{Clock, Deadlines, Due};
use crate::direction::{Conversations, FromAgent, PendingReply, ToAgent};
use crate::dns_map::DnsMap;
use crate::egress::Shape;
use crate::flood;
use crate::incidents::{Closing, Incidents};
use crate::name::Name;
use crate::output::{DueFinding, IncidentRecord, IncidentStatus, Note, Reported, Verdict};
use crate::policy::{Policy, PolicyError, Profile};
use crate::record::fields::Fields;
use crate::record::{
    CallingAgent, DnsQuery, Event, Flow, Heartbeat, PlannedAction, ProxiedCall, Recognized, Spawn,
    Stream, TelemetryLine, recognize_with,
};
use crate::registry::{Agent, AgentInfo, Registry, Update};
use crate::rules::activity::{self, Activity};
use crate::rules::dns_tunneling::TunnelWindows;
use crate::rules::rate_runaway::RateWindows;
use crate::rules::volume_anomaly::Baselines;
use crate::rules::{
    self, Finding, Observed, Seen, Subject, approval_granted, dns_high_entropy, heartbeat_mismatch,
    heartbeat_missing, lifetime_exceeded, schedule_deviation, telemetry_chain_broken,
    volume_anomaly,
};
use crate::siem::{Endpoints, FieldSet, Original};
use crate::time::{OptionalTimestamp, Timestamp};
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

crate::changes::replaced_by_later!(Counters);

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
    /// For an engine judging one partition ([`Engine::set_partition`]): the
    /// partition of the agent a control record names, whose owner alone
    /// writes it (0 for a control record naming no agent). `None` for
    /// traffic and unreadable lines, written where they are read.
    pub partition: Option<u32>,
}

impl OutputLine {
    fn new(length: usize, stream: Stream, verdict: Verdict, partition: Option<u32>) -> OutputLine {
        OutputLine {
            length: u32::try_from(length).unwrap_or(u32::MAX),
            stream,
            verdict,
            partition,
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
    stream_hint: Option<crate::record::InputFormat>,
    /// The keys of the records read so far, by position (a cache, not learnt).
    key_order: crate::record::fields::KeyOrder,
    field_set: FieldSet,
    /// The partition this engine judges, when it judges one.
    scope: scope::Scope,
    /// The current record's endpoints, when the field set reports them.
    current: Option<Endpoints>,
    /// Whether findings being reported came due rather than from the current record.
    reporting_due: bool,
    /// The last save (snapshot or changes) made or read back: changes
    /// exported next follow it.
    last_save: std::cell::Cell<Option<state::SaveId>>,
    /// Nothing was learnt since that save, so changes that follow it apply.
    at_last_save: std::cell::Cell<bool>,
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
    activities: BoundedMap<Name, Activity>,
    baselines: Baselines,
    rates: RateWindows,
    tunnels: TunnelWindows,
    clock: Clock,
    deadlines: Deadlines,
    counters: Counters,
    /// Recent tool calls of agents without an address of their own (OpenClaw
    /// agents on their gateway's): which agent a flow from the shared address
    /// belongs to.
    shared_intents: std::collections::VecDeque<(Name, PlannedAction)>,
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

crate::changes::apply_changes_by_field!(Learnt {
    registry,
    dns,
    incidents,
    conversations,
    activities,
    baselines,
    rates,
    tunnels,
    clock,
    deadlines,
    counters,
    shared_intents,
    chains,
    flood,
    due,
    due_dropped,
});

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
            key_order: crate::record::fields::KeyOrder::new(),
            field_set: FieldSet::Native,
            scope: scope::Scope::default(),
            current: None,
            policy,
            reporting_due: false,
            last_save: std::cell::Cell::new(None),
            at_last_save: std::cell::Cell::new(true),
        }
    }

    /// Chooses the fields records leave with (native, ECS, OCSF).
    /// Judges one partition of a partitioned log from now on: control
    /// records and findings about agents keyed to another partition are
    /// left to that partition's engine ([`OutputLine::partition`]).
    pub fn set_partition(&mut self, partition: Option<crate::route::Partition>) {
        self.scope.partition = partition;
    }

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
        self.stream_hint = stream.and_then(crate::record::InputFormat::from_name);
        // Notes make output about 1.6 times the input (more for short
        // records): room for twice it, so the buffer is not copied to grow.
        out.reserve(batch.len().saturating_mul(2));
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
                let partition = self.scope.record_partition;
                lines.push(OutputLine::new(
                    out.len() - start,
                    stream,
                    verdict,
                    partition,
                ));
            }
            self.write_emitted_described(out, lines.as_deref_mut());
            rest = next;
        }
    }

    /// Processes one record, writing the enriched record (no trailing newline);
    /// returns its stream and verdict. Incident and audit records it produced
    /// wait for [`Engine::write_emitted`].
    pub fn process_record(&mut self, record: &[u8], out: &mut Vec<u8>) -> (Stream, Verdict) {
        self.at_last_save.set(false);
        self.scope.record_agent = None;
        let (stream, verdict) = self.judge_and_write(record, out);
        self.learnt.counters.by_stream[stream as usize][verdict as usize] += 1;
        self.run_due();
        (stream, verdict)
    }

    /// [`Engine::process_record`] for a record of `format` (unless the
    /// record names its own).
    pub fn process_record_as(
        &mut self,
        record: &[u8],
        format: Option<crate::record::InputFormat>,
        out: &mut Vec<u8>,
    ) -> (Stream, Verdict) {
        self.stream_hint = format;
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
                // Findings outside the partition were never filed: its own.
                let partition = self.scope.partition.map(|p| p.index);
                lines.push(OutputLine::new(
                    out.len() - start,
                    stream,
                    verdict,
                    partition,
                ));
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
        self.at_last_save.set(false);
        self.learnt.clock.advance_to(t);
        self.run_due();
        self.write_emitted_described(out, lines);
    }

    /// Writes the enriched record; returns its stream and verdict.
    fn judge_and_write(&mut self, record: &[u8], out: &mut Vec<u8>) -> (Stream, Verdict) {
        let (mut note, original) = self.judge_record(record);
        // A record another partition's engine writes would take them nowhere.
        let writes = self.scope.end_record(&self.learnt.registry);
        let carried = if writes {
            self.learnt.due.len().min(MAX_DUE_PER_RECORD)
        } else {
            0
        };
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
        let text = match crate::text::utf8(trimmed) {
            Ok(text) => text,
            Err(e) => {
                return fail(format!(
                    "not UTF-8 (invalid byte at offset {}); original bytes in raw_base64",
                    e.valid_up_to()
                ));
            }
        };
        let mut fields = Fields::empty();
        if let Err(e) = fields.read_in_order(text, &mut self.key_order) {
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
            return match crate::record::recognize_text(text, &self.policy.inputs, None) {
                Some(recognized) => (self.note_for(recognized), Original::Raw(record)),
                None => fail(format!("not a JSON object: {e}")),
            };
        }
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
        self.at_last_save.set(false);
        self.scope.begin_record(&event, &self.policy);
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
                    let profile = agent.info.profile_in(&self.policy);
                    if let Some(deadline) = lifetime_exceeded::deadline(agent, profile) {
                        self.learnt
                            .deadlines
                            .schedule(deadline, Due::Lifetime(agent.info.id.clone()));
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
                    // Kept for the agent's life: no spare capacity from parsing.
                    let mut actions = plan.actions;
                    actions.shrink_to_fit();
                    activity.plan = Some(actions);
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
            Event::Telemetry(line) => self.judge_telemetry(*line),
            Event::Liveness(live) => {
                let Some(agent) = self.learnt.registry.agent(&live.agent_id) else {
                    let note = self.control_note(&live.agent_id, Update::UnknownAgent);
                    return self.finish(note, Vec::new(), live.ts);
                };
                let mut note = Note::new(Stream::Heartbeat, Verdict::Allow);
                note.attribute(agent);
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
                let id = agent.info.id.clone();
                let profile = agent.info.profile_in(&self.policy);
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
}

mod control;
mod deadlines;
mod dns;
mod network;
mod report;
mod scope;
mod state;
pub use state::StateError;

#[cfg(test)]
mod tests;
