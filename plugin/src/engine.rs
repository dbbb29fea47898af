//! The engine: one record in, the same record plus its `clawwatch` note out.
//!
//! It owns the compiled policy and everything learnt from the records (agent
//! registry, DNS answers, incidents) and knows nothing of WIT or I/O, so it runs
//! the same natively, inside the component and in tests.

use crate::bounded::BoundedMap;
use crate::dns_map::DnsMap;
use crate::incidents::Incidents;
use crate::output::{AgentInfo, Note, Reported, Verdict};
use crate::policy::{Policy, PolicyError};
use crate::record::fields::Fields;
use crate::record::{recognize, DnsQuery, Event, Flow, Recognized, Stream};
use crate::registry::{Registry, Update};
use crate::rules::{dns_foreign_resolver, egress_not_allowed, egress_unknown_agent, Finding, Subject};
use std::net::IpAddr;

/// Running totals; see the WIT `stats` record for their meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub allowed: u64,
    pub alerts: u64,
    pub unattributed: u64,
    pub not_applicable: u64,
    pub errors: u64,
    pub findings: u64,
    pub incidents_opened: u64,
    pub evictions: u64,
    pub agents: u64,
    pub dns_entries: u64,
}

/// (agent address, agent port, peer address, peer port) of a connection a peer
/// opened to an agent, so the agent's answers are not judged as its own calls.
type InboundKey = (IpAddr, u16, IpAddr, u16);

pub struct Engine {
    policy: Policy,
    registry: Registry,
    dns: DnsMap,
    incidents: Incidents,
    inbound: BoundedMap<InboundKey, ()>,
    stats: Stats,
}

impl Engine {
    pub fn new(policy_text: &str) -> Result<Engine, PolicyError> {
        Policy::from_toml(policy_text).map(Engine::with_policy)
    }

    pub fn with_policy(policy: Policy) -> Engine {
        let m = &policy.monitor;
        Engine {
            registry: Registry::new(m.max_agents),
            dns: DnsMap::new(m.max_dns_entries, m.dns_ttl_grace_secs),
            incidents: Incidents::new(m.max_incidents, m.incident_quiet_secs),
            inbound: BoundedMap::new(m.max_dns_entries),
            policy,
            stats: Stats::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn stats(&self) -> Stats {
        Stats {
            evictions: self.registry.evictions() + self.dns.evictions() + self.incidents.evictions() + self.inbound.evictions(),
            agents: self.registry.len() as u64,
            dns_entries: self.dns.len() as u64,
            incidents_opened: self.incidents.opened(),
            ..self.stats.clone()
        }
    }

    /// Processes NDJSON: one output line (ending in `\n`) per input line, in
    /// order. A final line without `\n` counts; a trailing `\n` adds no line.
    pub fn process_ndjson(&mut self, batch: &[u8], out: &mut Vec<u8>) {
        out.reserve(batch.len() + batch.len() / 2);
        let mut rest = batch;
        while !rest.is_empty() {
            let (line, next) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            self.process_record(line, out);
            out.push(b'\n');
            rest = next;
        }
    }

    /// Processes one record, writing the enriched record (no trailing newline).
    pub fn process_record(&mut self, record: &[u8], out: &mut Vec<u8>) {
        let note = self.judge_and_write(record, out);
        self.stats.records += 1;
        match note {
            Verdict::Allow => self.stats.allowed += 1,
            Verdict::Alert => self.stats.alerts += 1,
            Verdict::Unattributed => self.stats.unattributed += 1,
            Verdict::NotApplicable => self.stats.not_applicable += 1,
            Verdict::Error => self.stats.errors += 1,
        }
    }

    fn judge_and_write(&mut self, record: &[u8], out: &mut Vec<u8>) -> Verdict {
        let trimmed = record.trim_ascii();
        let fail = |why: String, out: &mut Vec<u8>| {
            let mut note = Note::new(Stream::Other, Verdict::Error);
            note.error = Some(why);
            note.wrap_raw(record, out);
            Verdict::Error
        };
        if trimmed.is_empty() {
            return fail("empty record".into(), out);
        }
        let max = self.policy.monitor.max_record_bytes;
        if record.len() > max {
            return fail(format!("record of {} bytes is over max_record_bytes ({max}); passed through unparsed", record.len()), out);
        }
        if let Err(e) = std::str::from_utf8(trimmed) {
            return fail(format!("not UTF-8 (invalid byte at offset {}); original bytes in raw_base64", e.valid_up_to()), out);
        }
        let fields = match Fields::parse(trimmed) {
            Ok(fields) => fields,
            Err(e) => return fail(format!("not a JSON object: {e}"), out),
        };
        let note = match recognize(&fields) {
            Recognized::Event(event) => self.judge(event),
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
        };
        note.append_to(trimmed, fields.has_clawwatch, out);
        note.verdict
    }

    /// The note for one decoded event, updating state on the way.
    pub fn judge(&mut self, event: Event) -> Note {
        let ts = event.ts();
        let mut note = match event {
            Event::Spawn(s) => {
                self.registry.spawn(&s);
                let mut note = Note::new(Stream::Control, Verdict::Allow);
                if let Some(agent) = self.registry.agent(&s.agent_id) {
                    if self.policy.profile(&agent.profile, agent.deployment.as_deref()).is_none() {
                        note.note = Some(format!("profile \"{}\" is not in the policy: this agent is allowed no traffic", agent.profile));
                    }
                    note.agent = Some(AgentInfo::from(agent));
                }
                note
            }
            Event::Terminate(t) => {
                let update = self.registry.terminate(&t);
                self.control_note(&t.agent_id, update)
            }
            Event::PolicyChange(c) => {
                let update = self.registry.change_policy(&c);
                self.control_note(&c.agent_id, update)
            }
            Event::Flow(flow) => self.judge_flow(&flow),
            Event::Dns(query) => self.judge_dns(&query),
        };
        note.ts = Some(ts);
        if !note.findings.is_empty() {
            note.verdict = Verdict::Alert;
            self.stats.findings += note.findings.len() as u64;
        }
        note
    }

    fn control_note(&mut self, agent_id: &str, update: Update) -> Note {
        match (update, self.registry.agent(agent_id)) {
            (Update::Applied, Some(agent)) => {
                let mut note = Note::new(Stream::Control, Verdict::Allow);
                note.agent = Some(AgentInfo::from(agent));
                note
            }
            _ => {
                let mut note = Note::new(Stream::Control, Verdict::Unattributed);
                note.note = Some(format!("agent \"{agent_id}\" is not known (never spawned, or forgotten under max_agents)"));
                note
            }
        }
    }

    fn judge_flow(&mut self, flow: &Flow) -> Note {
        let mut note = Note::new(Stream::Flow, Verdict::Unattributed);
        let mut findings: Vec<Finding> = Vec::new();
        if let Some(agent) = self.registry.agent_at(flow.src, flow.ts) {
            note.agent = Some(AgentInfo::from(agent));
            note.verdict = Verdict::Allow;
            if self.inbound.peek(&(flow.src, flow.src_port, flow.dst, flow.dst_port)).is_some() {
                note.direction = Some("return");
            } else {
                note.direction = Some("outbound");
                let names = self.dns.names_at(flow.src, flow.dst, flow.ts);
                let profile = self.policy.profile(&agent.profile, agent.deployment.as_deref());
                findings.extend(egress_not_allowed::check(flow, agent, profile, &names));
                findings.extend(dns_foreign_resolver::check_flow(flow, &Subject::Agent(agent), &self.policy.monitor));
            }
        } else if let Some(agent) = self.registry.agent_at(flow.dst, flow.ts) {
            // Inbound or return traffic: attributed, never judged against allowed_outbound.
            note.agent = Some(AgentInfo::from(agent));
            note.verdict = Verdict::Allow;
            note.direction = Some("inbound");
            self.inbound.insert((flow.dst, flow.dst_port, flow.src, flow.src_port), ());
        } else {
            let what = egress_unknown_agent::describe_flow(flow.dst, flow.dst_port, flow.proto);
            findings.extend(egress_unknown_agent::check(flow.src, &self.policy.monitor, &what));
            if self.policy.monitor.in_agent_subnet(flow.src) {
                findings.extend(dns_foreign_resolver::check_flow(flow, &Subject::Address(flow.src), &self.policy.monitor));
            }
        }
        note.findings = self.report(findings, flow.ts);
        note
    }

    fn judge_dns(&mut self, query: &DnsQuery) -> Note {
        self.dns.learn(query);
        let mut note = Note::new(Stream::Dns, Verdict::Unattributed);
        let mut findings: Vec<Finding> = Vec::new();
        if let Some(agent) = self.registry.agent_at(query.client, query.ts) {
            note.agent = Some(AgentInfo::from(agent));
            note.verdict = Verdict::Allow;
            findings.extend(dns_foreign_resolver::check_query(&query.qname, query.resolver, &Subject::Agent(agent), &self.policy.monitor));
        } else {
            findings.extend(egress_unknown_agent::check(query.client, &self.policy.monitor, &format!("resolved {}", query.qname)));
            if self.policy.monitor.in_agent_subnet(query.client) {
                findings.extend(dns_foreign_resolver::check_query(&query.qname, query.resolver, &Subject::Address(query.client), &self.policy.monitor));
            }
        }
        note.findings = self.report(findings, query.ts);
        note
    }

    fn report(&mut self, findings: Vec<Finding>, ts: crate::time::Timestamp) -> Vec<Reported> {
        findings
            .into_iter()
            .map(|finding| {
                let occurrence = self.incidents.observe(&finding.incident, ts);
                Reported { finding, new: occurrence.new, count: occurrence.count }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
