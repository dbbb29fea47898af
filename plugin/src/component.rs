//! The WIT boundary, guest side: the only module that sees the generated
//! bindings. It converts between WIT types and the engine's, and names the
//! component's allocator; nothing more.

use crate::engine::Engine;
use std::cell::RefCell;

wit_bindgen::generate!({ path: "../wit", world: "monitor" });

use exports::clawwatch::monitor::engine::{
    BatchFormat, FieldSet, Guest, GuestMonitor, Judged, Monitor, OutputLine, PolicyError,
    RestoreError, RuleCount, SaveSequence, SnapshotVersions, Stats, Stream, StreamCount, Verdict,
};

/// Rust's own dlmalloc rather than the guest libc's `malloc`: compiled with
/// the engine, an allocation is one call instead of a chain of four
/// (`__rust_alloc`, `__rdl_alloc`, `malloc`, `dlmalloc`), each of which
/// paid for the host's time-bound check.
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

struct Component;

impl Guest for Component {
    type Monitor = MonitorResource;
}

struct MonitorResource {
    engine: RefCell<Engine>,
}

impl GuestMonitor for MonitorResource {
    fn create(policy: String) -> Result<Monitor, PolicyError> {
        match Engine::new(&policy) {
            Ok(engine) => Ok(Monitor::new(MonitorResource {
                engine: RefCell::new(engine),
            })),
            Err(e) => Err(PolicyError {
                line: e.line,
                column: e.column,
                table: e.table,
                message: e.message,
            }),
        }
    }

    fn process(&self, format: BatchFormat, batch: Vec<u8>, stream: Option<String>) -> Judged {
        let (mut out, mut lines) = (Vec::new(), Vec::new());
        match format {
            BatchFormat::Ndjson => self.engine.borrow_mut().process_ndjson_described(
                &batch,
                stream.as_deref(),
                &mut out,
                Some(&mut lines),
            ),
        }
        judged(out, &lines)
    }

    fn reload(&self, policy: String) -> Result<(), PolicyError> {
        self.engine
            .borrow_mut()
            .reload(&policy)
            .map_err(|e| PolicyError {
                line: e.line,
                column: e.column,
                table: e.table,
                message: e.message,
            })
    }

    fn advance_to(&self, now_ns: i64) -> Judged {
        let (mut out, mut lines) = (Vec::new(), Vec::new());
        self.engine.borrow_mut().advance_to_described(
            crate::time::Timestamp(now_ns),
            &mut out,
            Some(&mut lines),
        );
        judged(out, &lines)
    }

    fn stats(&self) -> Stats {
        let s = self.engine.borrow().stats();
        Stats {
            records: s.records,
            allowed: s.allowed,
            alerts: s.alerts,
            approved: s.approved,
            unattributed: s.unattributed,
            not_applicable: s.not_applicable,
            errors: s.errors,
            findings: s.findings,
            incidents_opened: s.incidents_opened,
            incidents_closed: s.incidents_closed,
            evictions: s.evictions,
            agents: s.agents,
            dns_entries: s.dns_entries,
            records_by_stream: crate::record::Stream::ALL
                .iter()
                .flat_map(|&stream| {
                    crate::output::Verdict::ALL
                        .iter()
                        .map(move |&verdict| (stream, verdict))
                })
                .filter_map(|(stream, verdict)| {
                    let records = s.records_by_stream[stream as usize][verdict as usize];
                    (records > 0).then(|| StreamCount {
                        stream: wit_stream(stream),
                        verdict: wit_verdict(verdict),
                        records,
                    })
                })
                .collect(),
            findings_by_rule: crate::rules::ALL
                .iter()
                .zip(s.findings_by_rule)
                .map(|(rule, findings)| RuleCount {
                    rule: rule.id.to_string(),
                    findings,
                })
                .collect(),
            incidents_open: s.incidents_open,
        }
    }

    fn set_field_set(&self, fields: FieldSet) {
        self.engine.borrow_mut().set_field_set(match fields {
            FieldSet::Native => crate::siem::FieldSet::Native,
            FieldSet::Ecs => crate::siem::FieldSet::Ecs,
            FieldSet::Ocsf => crate::siem::FieldSet::Ocsf,
        });
    }

    fn set_partition(&self, index: u32, count: u32) {
        let partition = (count > 0).then_some(crate::route::Partition { index, count });
        self.engine.borrow_mut().set_partition(partition);
    }

    fn export_state(&self) -> Vec<u8> {
        self.engine.borrow().export_state()
    }

    fn export_changes(&self) -> Vec<u8> {
        self.engine.borrow().export_changes()
    }

    fn restore_state(&self, snapshot: Vec<u8>) -> Result<(), RestoreError> {
        self.engine
            .borrow_mut()
            .restore_state(&snapshot)
            .map_err(|e| match e {
                crate::StateError::Corrupt(why) => RestoreError::Corrupt(why),
                crate::StateError::Incompatible { found, supported } => {
                    RestoreError::Incompatible(SnapshotVersions { found, supported })
                }
                crate::StateError::OutOfSequence { follows, current } => {
                    RestoreError::OutOfSequence(SaveSequence { follows, current })
                }
            })
    }
}

export!(Component);

fn judged(ndjson: Vec<u8>, lines: &[crate::engine::OutputLine]) -> Judged {
    Judged {
        ndjson,
        lines: lines
            .iter()
            .map(|line| OutputLine {
                length: line.length,
                stream: wit_stream(line.stream),
                verdict: wit_verdict(line.verdict),
                partition: line.partition,
            })
            .collect(),
    }
}

fn wit_stream(stream: crate::record::Stream) -> Stream {
    use crate::record::Stream as S;
    match stream {
        S::Control => Stream::Control,
        S::Flow => Stream::Flow,
        S::Dns => Stream::Dns,
        S::Heartbeat => Stream::Heartbeat,
        S::Proxy => Stream::Proxy,
        S::Incident => Stream::Incident,
        S::Audit => Stream::Audit,
        S::Other => Stream::Other,
    }
}

fn wit_verdict(verdict: crate::output::Verdict) -> Verdict {
    use crate::output::Verdict as V;
    match verdict {
        V::Allow => Verdict::Allow,
        V::Alert => Verdict::Alert,
        V::Approved => Verdict::Approved,
        V::Unattributed => Verdict::Unattributed,
        V::NotApplicable => Verdict::NotApplicable,
        V::Error => Verdict::Error,
    }
}
