//! Which records and findings are this engine's to write when it judges one
//! partition of a partitioned log (DESIGN §8). Traffic arrives keyed by its
//! agent-side address, so it is always the engine's own; the control plane
//! reaches every partition's engine, so each knows every agent, but only
//! the engine whose partition holds the agent's address writes a control
//! record's output and files findings about it. Each input record is then
//! written once, and no engine alerts on an agent whose traffic it never sees.

use crate::registry::{AgentInfo, Registry};
use crate::route::{Partition, Route, plane_of};
use crate::rules::Finding;

#[derive(Debug, Default)]
pub(super) struct Scope {
    /// `None`: the engine judges everything (one instance, or Fluent Bit).
    pub partition: Option<Partition>,
    /// The agent the control record being judged names.
    pub record_agent: Option<String>,
    /// The record being judged is traffic: every finding on it is ours.
    judging_traffic: bool,
    /// The record being judged is a control record.
    judging_control: bool,
    /// The partition of the agent the last control record named.
    pub record_partition: Option<u32>,
}

impl Scope {
    pub fn begin_record(&mut self, event: &crate::record::Event, policy: &crate::Policy) {
        if self.partition.is_none() {
            return;
        }
        match plane_of(event, policy) {
            Route::Data(_) => self.judging_traffic = true,
            Route::Control(agent) => {
                self.judging_control = true;
                self.record_agent = agent;
            }
        }
    }

    /// After the record is judged (and before deadlines run): its partition,
    /// from what the registry knows now (a spawn has bound its address).
    /// Returns whether this engine surely writes the record: traffic, or a
    /// control record about one of its agents (a control record naming no
    /// agent is the first partition's).
    pub fn end_record(&mut self, registry: &Registry) -> bool {
        let traffic = std::mem::take(&mut self.judging_traffic);
        let control = std::mem::take(&mut self.judging_control);
        self.record_partition = match (self.partition, self.record_agent.take()) {
            (Some(p), Some(id)) => Some(agent_partition(p, registry, &id)),
            (Some(_), None) if control => Some(0),
            _ => None,
        };
        match self.partition {
            None => true,
            Some(p) => traffic || self.record_partition == Some(p.index),
        }
    }

    /// Whether a finding is this engine's to file.
    pub fn owns(&self, finding: &Finding, agent: Option<&AgentInfo>, registry: &Registry) -> bool {
        let Some(p) = self.partition else {
            return true;
        };
        if self.judging_traffic {
            return true;
        }
        let home = match agent {
            Some(agent) => agent_partition(p, registry, &agent.id),
            None => {
                // The incident key is `subject/rule[/target]`; a subject
                // without an agent is an address or a log's name.
                let rule = format!("/{}", finding.rule.id);
                let subject = finding
                    .incident
                    .split(rule.as_str())
                    .next()
                    .unwrap_or_default();
                match subject.parse() {
                    Ok(ip) => p.of_address(ip),
                    Err(_) => p.of_key(subject),
                }
            }
        };
        home == p.index
    }
}

/// The partition an agent's traffic is keyed to: that of its (first)
/// address, or, for an agent no spawn bound, that of its id.
fn agent_partition(p: Partition, registry: &Registry, id: &str) -> u32 {
    match registry.peek_agent(id).and_then(|a| a.ips.first()) {
        Some(ip) => p.of_address(*ip),
        None => p.of_key(id),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{Engine, OutputLine};
    use crate::record::Stream;
    use crate::route::{Partition, Route, route};
    use serde_json::Value;

    /// What a run wrote: each input record's line (its `due` findings,
    /// which ride on the next record the engine writes, taken out), and,
    /// sorted, the due findings (by incident, those still waiting for a
    /// record at the end included) and the incident and audit records.
    #[derive(Debug, PartialEq)]
    struct Written {
        records: Vec<Value>,
        due: Vec<String>,
        incidents: Vec<String>,
    }

    impl Written {
        fn new(n: usize) -> Written {
            Written {
                records: vec![Value::Null; n],
                due: Vec::new(),
                incidents: Vec::new(),
            }
        }

        fn record(&mut self, k: usize, line: &[u8]) {
            let mut v: Value = serde_json::from_slice(line).unwrap();
            let note = if v.get("clawwatch").is_some() {
                &mut v["clawwatch"]
            } else {
                &mut v
            };
            if let Some(due) = note.as_object_mut().and_then(|o| o.remove("due")) {
                for d in due.as_array().unwrap() {
                    self.due.push(d["incident"].as_str().unwrap().to_string());
                }
            }
            assert!(self.records[k].is_null(), "record {k} written twice");
            self.records[k] = v;
        }

        fn still_due(&mut self, engine: &Engine) {
            let waiting = engine.learnt.due.iter();
            self.due
                .extend(waiting.map(|d| d.reported.finding.incident.clone()));
        }

        fn sorted(mut self) -> Written {
            self.due.sort();
            self.incidents.sort();
            self
        }
    }

    /// One record through `engine`: its own line, then what it emitted.
    fn process(engine: &mut Engine, record: &[u8]) -> Vec<(Vec<u8>, OutputLine)> {
        let (mut out, mut lines) = (Vec::new(), Vec::new());
        engine.process_ndjson_described(record, None, &mut out, Some(&mut lines));
        let mut at = 0;
        lines
            .into_iter()
            .map(|line| {
                let end = at + line.length as usize;
                let bytes = out[at..end - 1].to_vec();
                at = end;
                (bytes, line)
            })
            .collect()
    }

    fn emitted(written: &mut Written, lines: &[(Vec<u8>, OutputLine)]) {
        for (bytes, line) in &lines[1..] {
            assert!(matches!(line.stream, Stream::Incident | Stream::Audit));
            written
                .incidents
                .push(String::from_utf8(bytes.clone()).unwrap());
        }
    }

    fn whole(policy: &str, records: &[&[u8]]) -> Written {
        let mut engine = Engine::new(policy).unwrap();
        let mut written = Written::new(records.len());
        for (k, record) in records.iter().enumerate() {
            let lines = process(&mut engine, record);
            written.record(k, &lines[0].0);
            emitted(&mut written, &lines);
        }
        written.still_due(&engine);
        written.sorted()
    }

    /// As instances sharing a partitioned log run: traffic to the engine of
    /// its key's partition (unkeyed traffic anywhere), control to every
    /// engine, each control record written by the engine of the agent it
    /// names (the first engine if it names none).
    fn split(policy_text: &str, records: &[&[u8]], count: u32) -> Written {
        let policy = crate::Policy::from_toml(policy_text).unwrap();
        let mut engines: Vec<Engine> = (0..count)
            .map(|index| {
                let mut engine = Engine::new(policy_text).unwrap();
                engine.set_partition(Some(Partition { index, count }));
                engine
            })
            .collect();
        let p = Partition { index: 0, count };
        let mut written = Written::new(records.len());
        for (k, record) in records.iter().enumerate() {
            // Traffic with no agent-side address goes wherever the
            // producer's partitioner puts it.
            let anywhere = k as u32 % count;
            match route(record, &policy, None) {
                Route::Data(key) => {
                    let at = key.map_or(anywhere, |ip| p.of_address(ip));
                    let lines = process(&mut engines[at as usize], record);
                    assert_eq!(lines[0].1.partition, None);
                    written.record(k, &lines[0].0);
                    emitted(&mut written, &lines);
                }
                Route::Control(_) => {
                    let mut owners = 0;
                    for (e, engine) in engines.iter_mut().enumerate() {
                        let lines = process(engine, record);
                        if lines[0].1.partition == Some(e as u32) {
                            owners += 1;
                            written.record(k, &lines[0].0);
                        }
                        emitted(&mut written, &lines);
                    }
                    assert_eq!(owners, 1, "record {k} has one owner");
                }
            }
        }
        for engine in &engines {
            written.still_due(engine);
        }
        written.sorted()
    }

    fn lines(text: &[u8]) -> Vec<&[u8]> {
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn same(one: &Written, parts: &Written, what: &str) {
        for (k, (a, b)) in one.records.iter().zip(&parts.records).enumerate() {
            assert_eq!(a, b, "record {k} of {what}");
        }
        assert_eq!(one.due, parts.due, "due findings of {what}");
        assert_eq!(one.incidents, parts.incidents, "incidents of {what}");
    }

    /// The bundled scenario and every rule's firing and near-miss case
    /// (deadlines, heartbeats, plans and approvals among them), split over
    /// 1–5 partitions, write each record once, with the verdicts, findings,
    /// due findings and incidents of one engine judging it all.
    #[test]
    fn a_fleet_split_over_partitions_writes_what_one_engine_writes() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
        let mut runs = vec![(
            "the scenario".to_string(),
            std::fs::read_to_string(root.join("policy.toml")).unwrap(),
            std::fs::read(root.join("scenario/records.ndjson")).unwrap(),
        )];
        let cases_policy = std::fs::read_to_string(root.join("cases/policy.toml")).unwrap();
        let mut dirs: Vec<_> = std::fs::read_dir(root.join("cases"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|d| d.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            for file in ["fires.ndjson", "near_miss.ndjson"] {
                let name = format!("{}/{file}", dir.file_name().unwrap().to_string_lossy());
                runs.push((
                    name,
                    cases_policy.clone(),
                    std::fs::read(dir.join(file)).unwrap(),
                ));
            }
        }
        let mut control_findings = 0;
        for (name, policy, text) in &runs {
            let records = lines(text);
            let one = whole(policy, &records);
            control_findings += one.due.len()
                + (one.records.iter())
                    .filter(|r| {
                        r["clawwatch"]["stream"] != "flow" && r["clawwatch"]["findings"].is_array()
                    })
                    .count();
            for count in 1..=5 {
                same(
                    &one,
                    &split(policy, &records, count),
                    &format!("{name} over {count} partitions"),
                );
            }
        }
        // Findings on control records and deadlines: the ones an engine
        // must leave to the agent's owner.
        assert!(control_findings > 10, "{control_findings}");
    }
}
