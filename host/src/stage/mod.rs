//! The engine stage: batches from the sources go through the engine
//! component on a blocking thread, in order; reloads apply at their record
//! boundary; every step that changes what the engine knows is journaled
//! (synced) before its output leaves; snapshots are taken between batches.

pub mod journal;
pub mod reload;
pub mod state;

use crate::component::{Judged, Monitor, RestoreError, Verdict};
use crate::metrics;
use crate::source::{Chunk, Origin};
use anyhow::{Context, Result};
use journal::Step;
use state::{Durable, StateFile};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the stage hands the sink: enriched lines, each described (or, for
/// a line too long for the engine, passed through in pieces, undescribed),
/// and where they came from.
#[derive(Debug)]
pub struct Delivery {
    pub output: Judged,
    pub origin: Option<Origin>,
}

pub struct Stage {
    monitor: Monitor,
    durable: Option<Durable>,
    metrics: metrics::Shared,
    /// Write only records whose verdict is `alert`.
    alerts_only: bool,
    /// The format named on the command line, for records that do not say.
    default_stream: Option<String>,
    /// A reload waiting for the first records read after its signal.
    pending_reload: Option<(u64, String)>,
    /// Engine totals are read at most this often for the metrics endpoint.
    stats_every: Duration,
    last_stats: Instant,
    records: u64,
}

impl Stage {
    /// The stage around `monitor`; with `state`, what was saved (snapshot and
    /// journal) is restored first. Returns how often to snapshot, if at all.
    pub fn start(
        mut monitor: Monitor,
        state: Option<(StateFile, Duration)>,
        metrics: metrics::Shared,
        alerts_only: bool,
        default_stream: Option<String>,
        stats_every: Duration,
    ) -> Result<(Stage, Option<Duration>)> {
        monitor.set_stream(default_stream.clone());
        let mut durable = None;
        let mut snapshot_every = None;
        if let Some((file, every)) = state {
            // None: saving would overwrite the one snapshot that holds the state.
            if let Some(covered_from) = restore(&mut monitor, &file) {
                let shown = file.path().display().to_string();
                let (started, replayed) = Durable::start(file, &mut monitor, covered_from)
                    // Asked to keep state and unable to: a setup error, said before any record is read.
                    .with_context(|| format!("keeping state at {shown}"))?;
                if replayed > 0 {
                    eprintln!("clawwatch: {replayed} journaled steps replayed from beside {shown}");
                }
                durable = Some(started);
                snapshot_every = Some(every);
                monitor.set_stream(default_stream.clone());
            }
        }
        let stage = Stage {
            monitor,
            durable,
            metrics,
            alerts_only,
            default_stream,
            pending_reload: None,
            stats_every,
            last_stats: Instant::now(),
            records: 0,
        };
        Ok((stage, snapshot_every))
    }

    pub fn monitor(&mut self) -> &mut Monitor {
        &mut self.monitor
    }

    /// Judges chunks until the sources stop, then saves the state; returns
    /// the monitor and whether that last save failed.
    pub fn run(
        mut self,
        mut in_rx: mpsc::Receiver<Chunk>,
        out_tx: mpsc::Sender<Delivery>,
        progress_every: Duration,
    ) -> (Monitor, bool) {
        let mut last_report = Instant::now();
        while let Some(chunk) = in_rx.blocking_recv() {
            let judged = self.handle(chunk);
            self.lock().note_incidents(&judged.output);
            if self.last_stats.elapsed() >= self.stats_every {
                if let Ok(stats) = self.monitor.stats() {
                    self.lock().set_engine(stats);
                }
                self.last_stats = Instant::now();
            }
            if out_tx.blocking_send(judged).is_err() {
                break;
            }
            if last_report.elapsed() >= progress_every {
                tracing::info!(records = self.records, "progress");
                last_report = Instant::now();
            }
        }
        let failed_before = self.lock().snapshots_failed;
        self.save();
        if let Some(outcome) = self.durable.as_mut().and_then(Durable::finish) {
            self.count(outcome);
        }
        let final_save_failed = self.lock().snapshots_failed > failed_before;
        (self.monitor, final_save_failed)
    }

    fn handle(&mut self, chunk: Chunk) -> Delivery {
        let read_in = match &chunk {
            Chunk::Batch { epoch, .. } => Some(*epoch),
            Chunk::Acked(batch) => Some(batch.epoch),
            _ => None,
        };
        if let Some(read_in) = read_in {
            self.apply_reload_of(read_in);
        }
        let began = Instant::now();
        let mut origin = None;
        let output = match chunk {
            Chunk::Reload { text, epoch } => {
                // Applied before the first records read after its signal:
                // those read before it are judged by the running policy.
                self.pending_reload = Some((epoch, text));
                return Delivery::nothing();
            }
            Chunk::ApplyReload { epoch } => {
                self.apply_reload_of(epoch);
                return Delivery::nothing();
            }
            Chunk::Snapshot => {
                self.save();
                return Delivery::nothing();
            }
            Chunk::Passthrough(bytes) if !self.alerts_only => {
                let output = Judged {
                    ndjson: bytes,
                    lines: Vec::new(),
                };
                return Delivery { output, origin };
            }
            Chunk::Passthrough(_) => return Delivery::nothing(),
            Chunk::Acked(batch) => {
                self.records += batch.times.len().max(count_lines(&batch.ndjson)) as u64;
                // A format named in the tag (`agents.pmacct`) says how to read the records.
                let stream = clawwatch_plugin::record::InputFormat::named_in_tag(&batch.tag)
                    .map(|format| format.name().to_string())
                    .or(self.default_stream.clone());
                // An empty batch only carries an acknowledgement.
                let out = if batch.ndjson.is_empty() {
                    Judged::empty()
                } else {
                    self.judge(batch.ndjson, stream)
                };
                origin = Some(Origin {
                    tag: batch.tag,
                    times: batch.times,
                    ack: batch.ack,
                });
                out
            }
            Chunk::Batch { bytes, records, .. } => {
                self.records += records as u64;
                let stream = self.default_stream.clone();
                self.judge(bytes, stream)
            }
            Chunk::Idle => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i64);
                let out = self.monitor.advance_to(now);
                self.journal(Step::Advance(now));
                out
            }
        };
        if read_in.is_some() {
            let mut m = self.lock();
            m.observe_batch(began.elapsed());
            m.engine_restarts = self.monitor.restarts();
        }
        let output = if self.alerts_only {
            output.retain(|line| line.verdict == Verdict::Alert)
        } else {
            output
        };
        Delivery { output, origin }
    }

    /// Judges a batch read as `stream`, journaling it unless the engine failed on it.
    fn judge(&mut self, bytes: Vec<u8>, stream: Option<String>) -> Judged {
        self.monitor.set_stream(stream.clone());
        let out = self.monitor.process(&bytes);
        self.monitor.set_stream(self.default_stream.clone());
        if self.monitor.last_failed() {
            self.lock().unjudged_records += out.lines.len() as u64;
        } else {
            self.journal(Step::Batch { bytes, stream });
        }
        out
    }

    /// Applies the waiting reload if its signal came before `epoch`.
    fn apply_reload_of(&mut self, epoch: u64) {
        if self
            .pending_reload
            .as_ref()
            .is_some_and(|(e, _)| *e <= epoch)
        {
            let (_, text) = self.pending_reload.take().expect("checked");
            if self.apply_reload(&text) {
                self.journal(Step::Reload(text));
            }
        }
    }

    /// Applies a policy text, saying so; a policy that does not load changes
    /// nothing. Whether it applied.
    fn apply_reload(&mut self, text: &str) -> bool {
        let reloaded = self.monitor.reload(text);
        let mut m = self.lock();
        match reloaded {
            Ok(()) => {
                m.reloads_applied += 1;
                eprintln!("clawwatch: policy reloaded");
                true
            }
            Err(e) => {
                m.reloads_rejected += 1;
                eprintln!("clawwatch: policy reload rejected, the running policy stays: {e}");
                false
            }
        }
    }

    /// A step that changed the engine, journaled (synced) before its output leaves.
    fn journal(&mut self, step: Step) {
        if let Some(Err(e)) = self.durable.as_mut().map(|d| d.record(&step)) {
            self.lock().snapshots_failed += 1;
            eprintln!("clawwatch: journal not written: {e:#}");
        }
    }

    fn save(&mut self) {
        if let Some(outcome) = self
            .durable
            .as_mut()
            .and_then(|d| d.save(&mut self.monitor))
        {
            self.count(outcome);
        }
    }

    fn count(&self, outcome: Result<()>) {
        let mut m = self.lock();
        match outcome {
            Ok(()) => m.snapshots_saved += 1,
            Err(e) => {
                m.snapshots_failed += 1;
                // The previous snapshot stays; the next attempt may succeed.
                eprintln!("clawwatch: state not saved: {e}");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, metrics::Metrics> {
        self.metrics.lock().expect("metrics lock")
    }
}

impl Delivery {
    fn nothing() -> Delivery {
        Delivery {
            output: Judged::empty(),
            origin: None,
        }
    }
}

fn count_lines(ndjson: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', ndjson).count()
}

/// Resumes from the saved state, if any; returns the first journal the
/// snapshot does not cover (0 without one). A snapshot that cannot be used is
/// reported and set aside; the run starts empty rather than not at all. One
/// the engine could not load within its limits is kept where it is, and the
/// run, started empty, says what to raise and keeps no state (`None`), so
/// nothing is saved over it.
fn restore(monitor: &mut Monitor, file: &StateFile) -> Option<u64> {
    let shown = file.path().display();
    match file.load() {
        Ok(None) => eprintln!("clawwatch: no saved state at {shown}; starting empty"),
        Ok(Some((covered_from, snapshot))) => match monitor.restore_state(&snapshot) {
            Ok(()) => {
                let agents = monitor.stats().map_or(0, |s| s.agents);
                eprintln!("clawwatch: state restored from {shown} ({agents} agents)");
                return Some(covered_from);
            }
            Err(RestoreError::Runtime(e)) => {
                eprintln!(
                    "clawwatch: saved state {shown} could not be loaded within the engine's limits ({}): \
                     it is kept as it is and nothing will be saved over it in this run; raise \
                     --guest-memory-mib or --batch-timeout-ms and start again to resume from it. Starting empty.",
                    e.root_cause()
                );
                return None;
            }
            Err(e) => {
                let aside = file.set_aside();
                eprintln!(
                    "clawwatch: saved state {shown} not used: {e}; starting empty{}",
                    aside.map_or(String::new(), |p| format!(" (moved to {})", p.display()))
                );
                // Its journal still holds what came after it.
                return Some(covered_from);
            }
        },
        Err(e) => eprintln!("clawwatch: {e:#}; starting empty"),
    }
    Some(0)
}
