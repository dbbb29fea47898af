//! The WIT boundary, host side: the only module that sees the generated
//! bindings. It loads the engine component, gives it no ambient authority
//! (an empty WASI context: no files, network, environment or clock it could use
//! for decisions), bounds its memory and CPU, and survives its traps.

use crate::cache;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({ path: "../wit", world: "monitor" });
}

use bindings::exports::clawwatch::monitor::engine::BatchFormat;
pub use bindings::exports::clawwatch::monitor::engine::FieldSet;
use bindings::exports::clawwatch::monitor::engine::RestoreError as Refusal;
pub use bindings::exports::clawwatch::monitor::engine::Stats;
pub use bindings::exports::clawwatch::monitor::engine::{Judged, OutputLine, Stream, Verdict};

// The WIT enums list their cases in the engine's order, so the engine's
// names serve (checked by a test below).
impl Stream {
    /// The name records carry in `clawwatch.stream`.
    pub fn as_str(self) -> &'static str {
        clawwatch_plugin::record::Stream::ALL[self as usize].as_str()
    }
}

impl Verdict {
    /// The name records carry in `clawwatch.verdict`.
    pub fn as_str(self) -> &'static str {
        clawwatch_plugin::output::Verdict::ALL[self as usize].as_str()
    }
}
#[cfg(test)]
pub use bindings::exports::clawwatch::monitor::engine::{RuleCount, StreamCount};

impl Judged {
    pub fn empty() -> Judged {
        Judged {
            ndjson: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Lines the engine did not judge (it failed on their batch): each is
    /// `other`/`error`, as its note says.
    pub fn unjudged(ndjson: Vec<u8>) -> Judged {
        let line = |end: usize, start: usize| OutputLine {
            length: (end + 1 - start) as u32,
            stream: Stream::Other,
            verdict: Verdict::Error,
            partition: None,
        };
        let mut lines = Vec::new();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &ndjson) {
            lines.push(line(end, start));
            start = end + 1;
        }
        Judged { ndjson, lines }
    }

    /// Each line (with its `\n`) and what it is.
    pub fn each_line(&self) -> impl Iterator<Item = (&[u8], &OutputLine)> {
        let mut start = 0;
        self.lines.iter().map(move |line| {
            let end = (start + line.length as usize).min(self.ndjson.len());
            let bytes = &self.ndjson[start..end];
            start = end;
            (bytes, line)
        })
    }

    /// Only the lines `keep` says to keep.
    pub fn retain(self, keep: impl Fn(&OutputLine) -> bool) -> Judged {
        let mut kept = Judged::empty();
        for (bytes, line) in self.each_line() {
            if keep(line) {
                kept.ndjson.extend_from_slice(bytes);
                kept.lines.push(*line);
            }
        }
        kept
    }
}

/// The component built from `plugin/` by the build script.
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("CLAWWATCH_COMPONENT_PATH"));

/// How long one epoch tick lasts; batch deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(50);

/// Resource bounds for the guest.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory the guest may grow to.
    pub memory_bytes: usize,
    /// Wall time one batch may take before the guest is interrupted. `None`
    /// compiles the guest without interruption checks: faster, but a guest
    /// stuck in a loop then stalls the pipeline.
    pub batch_timeout: Option<Duration>,
}

/// A compiled component, ready to instantiate any number of monitors.
pub struct Runtime {
    engine: Engine,
    component: Component,
    linker: Linker<GuestState>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Runtime {
    /// Compiles (or loads from the on-disk cache) the given component bytes.
    /// `interruptible` compiles in the checks that let a batch deadline stop the guest.
    pub fn new(wasm: &[u8], cache_dir: Option<&Path>, interruptible: bool) -> Result<Runtime> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(interruptible);
        // `CLAWWATCH_PERFMAP=1 perf record ...` names the guest's functions in profiles.
        if std::env::var_os("CLAWWATCH_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(dir) = cache_dir {
            // Without a cache the engine is compiled at every start: slower, still correct.
            if let Err(e) = cache::enable(&mut config, dir) {
                tracing::warn!(error = %format!("{e:#}"), "compiled components are not cached");
            }
        }
        let engine = anyhow_of(Engine::new(&config)).context("configuring wasmtime")?;
        let component =
            anyhow_of(Component::new(&engine, wasm)).context("compiling the component")?;
        let mut linker = Linker::new(&engine);
        // Rust's std in the guest imports a few WASI interfaces; they are
        // linked to an empty context, so they grant nothing.
        anyhow_of(wasmtime_wasi::p2::add_to_linker_sync(&mut linker)).context("linking WASI")?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (ticking_engine, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("clawwatch-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking_engine.increment_epoch();
                }
            })
            .context("starting the epoch ticker")?;
        Ok(Runtime {
            engine,
            component,
            linker,
            ticker_stop,
        })
    }

    /// The embedded component, or the one at `path`.
    pub fn load(
        path: Option<&Path>,
        cache_dir: Option<&Path>,
        interruptible: bool,
    ) -> Result<Runtime> {
        match path {
            None => Runtime::new(EMBEDDED_COMPONENT, cache_dir, interruptible),
            Some(path) => {
                let wasm = std::fs::read(path)
                    .with_context(|| format!("reading component {}", path.display()))?;
                Runtime::new(&wasm, cache_dir, interruptible)
                    .with_context(|| format!("loading component {}", path.display()))
            }
        }
    }
}

/// Why a monitor could not be created.
#[derive(Debug)]
pub enum CreateError {
    /// The engine rejected the policy.
    Policy(bindings::exports::clawwatch::monitor::engine::PolicyError),
    /// The component could not be instantiated or trapped.
    Runtime(anyhow::Error),
}

impl std::fmt::Display for CreateError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            CreateError::Policy(e) => {
                match (e.line, e.column) {
                    (Some(line), Some(col)) => write!(f, "line {line}, column {col}: ")?,
                    (Some(line), None) => write!(f, "line {line}: ")?,
                    _ => {}
                }
                if let Some(table) = &e.table {
                    write!(f, "(in [{table}]) ")?;
                }
                f.write_str(&e.message)
            }
            CreateError::Runtime(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for CreateError {}

impl CreateError {
    /// The error for the operator: a policy problem names the policy file; a
    /// runtime one says the engine could not start.
    pub fn explain(self, policy_name: &str) -> anyhow::Error {
        match self {
            CreateError::Policy(_) => anyhow::anyhow!("policy {policy_name}: {self}"),
            CreateError::Runtime(e) => e.context(
                "starting the detection engine (see --guest-memory-mib and --batch-timeout-ms)",
            ),
        }
    }
}

/// Why a state snapshot was not restored.
#[derive(Debug)]
pub enum RestoreError {
    /// The engine refused it: damaged, or from another format version.
    Refused(clawwatch_plugin::StateError),
    /// The component failed while reading it.
    Runtime(anyhow::Error),
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            RestoreError::Refused(why) => write!(f, "{why}"),
            RestoreError::Runtime(e) => write!(f, "the engine failed while restoring: {e:#}"),
        }
    }
}

impl std::error::Error for RestoreError {}

/// What changed the guest's state since its last checkpoint, in order: a
/// guest re-created after a failure replays it, so it resumes exactly where
/// the failed one stood before the failing call.
enum Logged {
    Batch {
        bytes: Vec<u8>,
        stream: Option<String>,
    },
    Advance(i64),
    Reload(String),
}

/// A checkpoint (exported state kept in memory) is taken when the log
/// holds this much, or is this old, so a replay stays short and bounded.
const CHECKPOINT_BYTES: usize = 32 << 20;
const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);
/// A checkpoint is the engine's changes since the previous one, until the
/// changes kept add up to this fraction of the snapshot they start from (or
/// this many): then a new snapshot replaces them all, which bounds both
/// the memory held and the work of a re-creation.
const CHANGES_PER_SNAPSHOT: usize = 64;
const CHANGES_BYTES_PER_SNAPSHOT_BYTE: usize = 1;

/// One live monitor inside the component. If the guest traps or exceeds its
/// limits it is re-created from its last checkpoint, and what came after is
/// replayed into it, so nothing learnt is lost.
pub struct Monitor {
    runtime: Arc<Runtime>,
    policy: String,
    limits: Limits,
    /// The input format, when the operator named it (`--format`).
    stream: Option<String>,
    field_set: FieldSet,
    /// The partition judged, `(index, count)`, when one is.
    partition: Option<(u32, u32)>,
    store: Store<GuestState>,
    instance: bindings::Monitor,
    handle: ResourceAny,
    restarts: u64,
    /// The guest's last checkpoint: a snapshot and the changes exported
    /// after it, in order; a re-created guest resumes from them.
    checkpoint: Vec<Vec<u8>>,
    /// The policy the guest ran when the last checkpoint was taken.
    checkpoint_policy: String,
    /// What happened since the last checkpoint, to replay.
    log: Vec<Logged>,
    log_bytes: usize,
    checkpointed_at: std::time::Instant,
    /// The last batch failed (its records passed through tagged `error`).
    last_failed: bool,
}

impl Monitor {
    pub fn new(
        runtime: Arc<Runtime>,
        policy: &str,
        limits: Limits,
    ) -> Result<Monitor, CreateError> {
        let (store, instance, handle) = instantiate(&runtime, policy, &limits)?;
        Ok(Monitor {
            runtime,
            policy: policy.to_string(),
            limits,
            stream: None,
            field_set: FieldSet::Native,
            partition: None,
            store,
            instance,
            handle,
            restarts: 0,
            checkpoint: Vec::new(),
            checkpoint_policy: policy.to_string(),
            log: Vec::new(),
            log_bytes: 0,
            checkpointed_at: std::time::Instant::now(),
            last_failed: false,
        })
    }

    /// Replaces the policy; the running one stays when the new one is rejected.
    /// A later re-creation after a trap uses the new policy.
    pub fn reload(&mut self, policy: &str) -> Result<(), CreateError> {
        set_deadline(&mut self.store, &self.limits);
        let reloaded = self
            .instance
            .clawwatch_monitor_engine()
            .monitor()
            .call_reload(&mut self.store, self.handle, policy)
            .map_err(|e| CreateError::Runtime(e.into()))?;
        reloaded.map_err(CreateError::Policy)?;
        self.policy = policy.to_string();
        self.log_bytes += policy.len();
        self.log.push(Logged::Reload(policy.to_string()));
        Ok(())
    }

    /// Chooses the output field set (kept across a re-creation after a failure).
    pub fn set_field_set(&mut self, field_set: FieldSet) -> Result<()> {
        set_deadline(&mut self.store, &self.limits);
        anyhow_of(
            self.instance
                .clawwatch_monitor_engine()
                .monitor()
                .call_set_field_set(&mut self.store, self.handle, field_set),
        )?;
        self.field_set = field_set;
        Ok(())
    }

    /// Judges partition `index` of `count` from now on (kept across a
    /// re-creation after a failure).
    pub fn set_partition(&mut self, index: u32, count: u32) -> Result<()> {
        set_deadline(&mut self.store, &self.limits);
        anyhow_of(
            self.instance
                .clawwatch_monitor_engine()
                .monitor()
                .call_set_partition(&mut self.store, self.handle, index, count),
        )?;
        self.partition = Some((index, count));
        Ok(())
    }

    /// Names the format of the records to come (`None`: recognise each by its shape).
    pub fn set_stream(&mut self, stream: Option<String>) {
        self.stream = stream;
    }

    /// Processes one NDJSON batch. If the guest traps or runs out of time or
    /// memory, the batch comes back with every record tagged `error` naming
    /// the cause, and the guest is re-created from its last checkpoint with
    /// everything since replayed, so the next batch meets everything learnt.
    pub fn process(&mut self, batch: &[u8]) -> Judged {
        let result = self.try_process(batch);
        self.last_failed = result.is_err();
        match result {
            Ok(out) => {
                self.log_bytes += batch.len();
                self.log.push(Logged::Batch {
                    bytes: batch.to_vec(),
                    stream: self.stream.clone(),
                });
                self.checkpoint_if_due();
                out
            }
            Err(trap) => {
                let cause = self.cause(&trap);
                let why = format!(
                    "the detection engine failed on this batch ({cause}); records passed through unjudged"
                );
                tracing::error!(error = %format!("{trap:#}"), %cause, "engine failed; re-creating it from its last checkpoint");
                self.restart();
                let mut out = Vec::with_capacity(batch.len() * 2);
                clawwatch_plugin::output::tag_ndjson_as_error(batch, &why, &mut out);
                Judged::unjudged(out)
            }
        }
    }

    /// Whether the last [`Monitor::process`] failed (and so changed nothing).
    pub fn last_failed(&self) -> bool {
        self.last_failed
    }

    /// What made a call fail, in the operator's terms: which limit to raise,
    /// or that the engine itself faulted.
    fn cause(&self, e: &anyhow::Error) -> String {
        let text = format!("{e:#}");
        if matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        ) {
            let limit = self.limits.batch_timeout.unwrap_or_default().as_millis();
            format!("time limit: the batch took longer than --batch-timeout-ms ({limit} ms)")
        } else if text.contains("growing memory") || text.contains("memory limit") {
            let mib = self.limits.memory_bytes >> 20;
            format!("memory limit: the engine needed more than --guest-memory-mib ({mib} MiB)")
        } else {
            format!("engine fault: {}", first_line(e))
        }
    }

    /// Takes a checkpoint when the replay log is big or old enough: the
    /// changes since the last one, or a whole snapshot when the changes
    /// kept have grown too many or too large.
    fn checkpoint_if_due(&mut self) {
        let due = self.log_bytes >= CHECKPOINT_BYTES
            || self.checkpointed_at.elapsed() >= CHECKPOINT_EVERY;
        if due {
            self.take_checkpoint();
        }
    }

    fn take_checkpoint(&mut self) {
        if let Err(e) = self.checkpoint_now() {
            tracing::error!(error = %e, "no checkpoint taken; the replay log goes on");
        }
    }

    fn checkpoint_now(&mut self) -> Result<()> {
        match self.checkpoint.split_first() {
            Some((snapshot, changes))
                if changes.len() < CHANGES_PER_SNAPSHOT
                    && changes.iter().map(Vec::len).sum::<usize>()
                        < snapshot.len() * CHANGES_BYTES_PER_SNAPSHOT_BYTE =>
            {
                self.export_changes()
            }
            _ => self.export_state().map(drop),
        }
    }

    /// Everything learnt, as a checkpoint taken now: a snapshot and the
    /// changes exported after it, each following the one before. Saved
    /// elsewhere piece by piece, it costs what changed since the last time.
    pub fn save_chain(&mut self) -> Result<&[Vec<u8>]> {
        self.checkpoint_now()?;
        Ok(&self.checkpoint)
    }

    /// Restores a chain [`Monitor::save_chain`] gave, which becomes this
    /// monitor's checkpoint: the changes it exports next follow it.
    pub fn restore_chain(&mut self, chain: &[Vec<u8>]) -> Result<(), RestoreError> {
        for piece in chain {
            self.restore_piece(piece)?;
        }
        self.checkpoint = chain.to_vec();
        self.log_checkpointed();
        Ok(())
    }

    /// Exports the changes since the last checkpoint and keeps them as the
    /// newest part of the checkpoint.
    fn export_changes(&mut self) -> Result<()> {
        let changes = self.export("changes", |m| {
            (m.instance.clawwatch_monitor_engine().monitor())
                .call_export_changes(&mut m.store, m.handle)
        })?;
        self.checkpoint.push(changes);
        self.log_checkpointed();
        Ok(())
    }

    /// Moves the engine's event time to `now_ns` (idle input); returns the
    /// incident records that produced. A failure is logged and yields nothing:
    /// no input record is at stake.
    pub fn advance_to(&mut self, now_ns: i64) -> Judged {
        set_deadline(&mut self.store, &self.limits);
        match self
            .instance
            .clawwatch_monitor_engine()
            .monitor()
            .call_advance_to(&mut self.store, self.handle, now_ns)
        {
            Ok(out) => {
                self.log.push(Logged::Advance(now_ns));
                out
            }
            Err(e) => {
                let e = anyhow::Error::from(e);
                let cause = self.cause(&e);
                tracing::error!(error = %format!("{e:#}"), %cause, "engine failed while advancing time; re-creating it from its last checkpoint");
                self.restart();
                Judged::empty()
            }
        }
    }

    fn try_process(&mut self, batch: &[u8]) -> Result<Judged> {
        set_deadline(&mut self.store, &self.limits);
        let out = self
            .instance
            .clawwatch_monitor_engine()
            .monitor()
            .call_process(
                &mut self.store,
                self.handle,
                BatchFormat::Ndjson,
                batch,
                self.stream.as_deref(),
            )?;
        Ok(out)
    }

    /// Everything the engine has learnt, as a snapshot; also kept (a
    /// checkpoint) so that a guest re-created after a failure resumes from it.
    pub fn export_state(&mut self) -> Result<Vec<u8>> {
        let state = self.export("state", |m| {
            (m.instance.clawwatch_monitor_engine().monitor())
                .call_export_state(&mut m.store, m.handle)
        })?;
        self.checkpointed(state.clone());
        Ok(state)
    }

    /// Asks the guest for a save (`what` names it in the error). A guest
    /// that fails here is re-created (from the previous checkpoint, with what
    /// came after replayed) and the error names the cause.
    fn export(
        &mut self,
        what: &str,
        call: impl FnOnce(&mut Monitor) -> wasmtime::Result<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        set_deadline(&mut self.store, &self.limits);
        anyhow_of(call(self)).or_else(|e| {
            let cause = self.cause(&e);
            self.restart();
            Err(e.context(format!(
                "the engine failed while exporting its {what} ({cause})"
            )))
        })
    }

    fn checkpointed(&mut self, snapshot: Vec<u8>) {
        self.checkpoint = vec![snapshot];
        self.log_checkpointed();
    }

    /// The log is covered by the checkpoint just taken.
    fn log_checkpointed(&mut self) {
        self.checkpoint_policy = self.policy.clone();
        self.log.clear();
        self.log_bytes = 0;
        self.checkpointed_at = std::time::Instant::now();
    }

    /// Replaces what the engine has learnt with a snapshot. A refused snapshot
    /// (damaged, another version) leaves the engine as it was.
    pub fn restore_state(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.restore_piece(snapshot)?;
        // What was read may have been changes, which alone restore nothing:
        // the checkpoint is a snapshot of the result.
        if let Err(e) = self.export_state() {
            tracing::error!(error = %format!("{e:#}"), "no checkpoint of the restored state; the replay log goes on");
        }
        Ok(())
    }

    fn restore_piece(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        set_deadline(&mut self.store, &self.limits);
        self.instance
            .clawwatch_monitor_engine()
            .monitor()
            .call_restore_state(&mut self.store, self.handle, snapshot)
            .map_err(|e| RestoreError::Runtime(e.into()))?
            .map_err(|refusal| {
                RestoreError::Refused(match refusal {
                    Refusal::Corrupt(why) => clawwatch_plugin::StateError::Corrupt(why),
                    Refusal::Incompatible(v) => clawwatch_plugin::StateError::Incompatible {
                        found: v.found,
                        supported: v.supported,
                    },
                    Refusal::OutOfSequence(s) => clawwatch_plugin::StateError::OutOfSequence {
                        follows: s.follows,
                        current: s.current,
                    },
                })
            })
    }

    /// A new guest at the last checkpoint (policy and state), with what came
    /// after it replayed (outputs discarded: they were written already). If
    /// the guest cannot be created, the failed one stays and the next call
    /// tries again; if a replayed step fails, the guest keeps the checkpoint
    /// and the current policy.
    fn restart(&mut self) {
        self.restarts += 1;
        if !self.fresh_guest_at_checkpoint() {
            return;
        }
        let log = std::mem::take(&mut self.log);
        let steps = log.len();
        for (i, step) in log.iter().enumerate() {
            set_deadline(&mut self.store, &self.limits);
            let engine = self.instance.clawwatch_monitor_engine().monitor();
            let replayed = match step {
                Logged::Batch { bytes, stream } => engine
                    .call_process(
                        &mut self.store,
                        self.handle,
                        BatchFormat::Ndjson,
                        bytes,
                        stream.as_deref(),
                    )
                    .map(drop),
                Logged::Advance(now) => engine
                    .call_advance_to(&mut self.store, self.handle, *now)
                    .map(drop),
                Logged::Reload(policy) => engine
                    .call_reload(&mut self.store, self.handle, policy)
                    .map(drop),
            };
            if let Err(e) = replayed {
                tracing::error!(error = %format!("{e:#}"), "replaying step {} of {steps} failed: the engine resumes from its checkpoint without the rest", i + 1);
                // The guest trapped: start again from the checkpoint alone.
                self.log_bytes = 0;
                if self.fresh_guest_at_checkpoint() && self.policy != self.checkpoint_policy {
                    let policy = self.policy.clone();
                    if self.reload(&policy).is_err() {
                        tracing::error!("re-created engine refused the current policy");
                    }
                }
                return;
            }
        }
        self.log = log;
        tracing::info!(
            steps,
            "engine re-created from its last checkpoint, later batches replayed"
        );
    }

    /// Replaces the guest with a new one running the checkpoint's policy and
    /// state (and the field set); false when none could be created.
    fn fresh_guest_at_checkpoint(&mut self) -> bool {
        let created = match instantiate(&self.runtime, &self.checkpoint_policy, &self.limits) {
            Ok(created) => created,
            Err(e) => {
                tracing::error!(error = %e, "could not re-create the engine");
                return false;
            }
        };
        (self.store, self.instance, self.handle) = created;
        if let Err(e) = self.set_field_set(self.field_set) {
            tracing::error!(error = %format!("{e:#}"), "re-created engine refused the field set");
        }
        if let Some((index, count)) = self.partition
            && let Err(e) = self.set_partition(index, count)
        {
            tracing::error!(error = %format!("{e:#}"), "re-created engine refused its partition");
        }
        for save in &self.checkpoint {
            set_deadline(&mut self.store, &self.limits);
            let restored = self
                .instance
                .clawwatch_monitor_engine()
                .monitor()
                .call_restore_state(&mut self.store, self.handle, save);
            if !matches!(restored, Ok(Ok(()))) {
                tracing::error!("engine re-created without (all of) its checkpoint");
                break;
            }
        }
        true
    }

    /// The engine's totals. A guest that fails here is re-created (as after
    /// a failed batch) and asked again, so reading totals never ends a run.
    pub fn stats(&mut self) -> Result<Stats> {
        let ask = |m: &mut Monitor| {
            set_deadline(&mut m.store, &m.limits);
            anyhow_of(
                m.instance
                    .clawwatch_monitor_engine()
                    .monitor()
                    .call_stats(&mut m.store, m.handle),
            )
        };
        match ask(self) {
            Ok(stats) => Ok(stats),
            Err(e) => {
                let cause = self.cause(&e);
                tracing::error!(%cause, "engine failed while reporting its totals; re-creating it");
                self.restart();
                ask(self).with_context(|| format!("reading the engine's totals ({cause})"))
            }
        }
    }

    /// Times the guest was re-created after a failure.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

/// wasmtime's own error type as anyhow's, so `.context` can be added.
pub fn anyhow_of<T>(result: Result<T, wasmtime::Error>) -> Result<T> {
    result.map_err(anyhow::Error::from)
}

fn first_line(e: &anyhow::Error) -> String {
    e.to_string().lines().next().unwrap_or("trap").to_string()
}

fn set_deadline(store: &mut Store<GuestState>, limits: &Limits) {
    if let Some(timeout) = limits.batch_timeout {
        store.set_epoch_deadline((timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64);
    }
}

/// WASI with nothing behind it: no preopened directories, environment or
/// arguments, no network, and clocks frozen at the epoch. The engine's only
/// clock is event time; a real one would make replays diverge.
fn empty_wasi() -> WasiCtx {
    WasiCtx::builder()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .insecure_random_seed(0)
        .build()
}

struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

fn instantiate(
    runtime: &Runtime,
    policy: &str,
    limits: &Limits,
) -> Result<(Store<GuestState>, bindings::Monitor, ResourceAny), CreateError> {
    let state = GuestState {
        wasi: empty_wasi(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .instances(8)
            .tables(16)
            .memories(4)
            .trap_on_grow_failure(true)
            .build(),
    };
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|s| &mut s.limits);
    set_deadline(&mut store, limits);
    let instance = bindings::Monitor::instantiate(&mut store, &runtime.component, &runtime.linker)
        .map_err(|e| CreateError::Runtime(e.into()))?;
    let created = instance
        .clawwatch_monitor_engine()
        .monitor()
        .call_create(&mut store, policy)
        .map_err(|e| CreateError::Runtime(e.into()))?;
    let handle = created.map_err(CreateError::Policy)?;
    Ok((store, instance, handle))
}

#[cfg(test)]
mod tests {
    use super::{Stream, Verdict};

    const POLICY: &str = include_str!("../../testdata/policy.toml");
    const SCENARIO: &[u8] = include_bytes!("../../testdata/scenario/records.ndjson");

    /// A guest re-created from a checkpoint made of a snapshot and the
    /// changes after it (and the batches after those, replayed) goes on
    /// exactly as one that never failed; and the changes are small.
    #[test]
    fn a_guest_re_created_from_a_snapshot_and_its_changes_goes_on_as_before() {
        let runtime = std::sync::Arc::new(
            super::Runtime::new(super::EMBEDDED_COMPONENT, None, true).unwrap(),
        );
        let limits = super::Limits {
            memory_bytes: 256 << 20,
            batch_timeout: Some(std::time::Duration::from_secs(60)),
        };
        let lines: Vec<&[u8]> = SCENARIO.split_inclusive(|b| *b == b'\n').collect();
        let batches: Vec<Vec<u8>> = lines.chunks(20).map(|c| c.concat()).collect();

        let mut steady = super::Monitor::new(runtime.clone(), POLICY, limits.clone()).unwrap();
        let expected: Vec<u8> = batches
            .iter()
            .flat_map(|b| steady.process(b).ndjson)
            .collect();

        let mut failing = super::Monitor::new(runtime, POLICY, limits).unwrap();
        let mut out = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            out.extend(failing.process(batch).ndjson);
            if i % 4 == 3 {
                // This batch came after the checkpoint: it is replayed.
                assert!(failing.checkpoint.len() > 1, "changes follow the snapshot");
                failing.restart();
            } else {
                failing.take_checkpoint();
            }
        }
        assert_eq!(failing.restarts, batches.len() as u64 / 4);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected)
        );
        let totals = |m: &mut super::Monitor| format!("{:?}", m.stats().unwrap());
        assert_eq!(totals(&mut failing), totals(&mut steady));
        let snapshot = failing.checkpoint[0].len();
        let changes = failing.checkpoint.last().unwrap().len();
        assert!(
            changes < snapshot,
            "changes {changes} bytes, snapshot {snapshot} bytes"
        );
    }

    /// The guest reads bytes with its own code (vector scans, its ASCII
    /// check, its `memcmp`): on records with escapes, control bytes,
    /// multi-byte characters and bad UTF-8 at every offset around its block
    /// sizes, from a line's start and from its end, in known keys' values
    /// and in others, it answers byte for byte
    /// as the native engine does.
    #[test]
    fn the_guest_reads_every_byte_as_the_native_engine_does() {
        let specials: [&[u8]; 8] = [
            br#"\""#,
            br"\\",
            br"\n",
            br"\u00e9",
            b"\x01",
            "é".as_bytes(),
            "😀".as_bytes(),
            b"\xff",
        ];
        let mut input = Vec::new();
        for line in SCENARIO
            .split(|b| *b == b'\n')
            .filter(|l| l.starts_with(b"{"))
            .take(60)
        {
            for offset in [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33] {
                for special in specials {
                    let mut text = vec![b'a'; offset];
                    text.extend_from_slice(special);
                    text.extend_from_slice(b"tail");
                    // In a key no format reads.
                    input.extend_from_slice(b"{\"pad\":\"");
                    input.extend_from_slice(&text);
                    input.extend_from_slice(b"\",");
                    input.extend_from_slice(&line[1..]);
                    input.push(b'\n');
                    // In the last value, where the scan's last block overlaps
                    // bytes it has checked (lines differ in length).
                    input.extend_from_slice(&line[..line.len() - 1]);
                    input.extend_from_slice(b",\"zpad\":\"");
                    input.extend_from_slice(&text);
                    input.extend_from_slice(b"\"}\n");
                    // In the value of each string a format reads.
                    for key in [&b"\"qname\":\""[..], b"\"agent_id\":\"", b"\"type\":\""] {
                        if let Some(at) = line.windows(key.len()).position(|w| w == key) {
                            let at = at + key.len();
                            input.extend_from_slice(&line[..at]);
                            input.extend_from_slice(&text);
                            input.extend_from_slice(&line[at..]);
                            input.push(b'\n');
                        }
                    }
                }
            }
        }
        let lines = input.split(|b| *b == b'\n').count();
        assert!(lines > 10_000, "only {lines} records");
        let batches: Vec<Vec<u8>> = input
            .split_inclusive(|b| *b == b'\n')
            .collect::<Vec<_>>()
            .chunks(500)
            .map(<[&[u8]]>::concat)
            .collect();

        let mut native = clawwatch_plugin::Engine::new(POLICY).unwrap();
        let mut expected = Vec::new();
        for batch in &batches {
            native.process_ndjson(batch, &mut expected);
        }
        let runtime = std::sync::Arc::new(
            super::Runtime::new(super::EMBEDDED_COMPONENT, None, true).unwrap(),
        );
        let limits = super::Limits {
            memory_bytes: 256 << 20,
            batch_timeout: Some(std::time::Duration::from_secs(60)),
        };
        let mut guest = super::Monitor::new(runtime, POLICY, limits).unwrap();
        let out: Vec<u8> = batches
            .iter()
            .flat_map(|b| guest.process(b).ndjson)
            .collect();
        let differing = out
            .split(|b| *b == b'\n')
            .zip(expected.split(|b| *b == b'\n'))
            .find(|(a, b)| a != b);
        assert!(
            differing.is_none(),
            "first differing line:\n{:?}",
            differing.map(|(a, b)| (
                String::from_utf8_lossy(a).into_owned(),
                String::from_utf8_lossy(b).into_owned()
            ))
        );
        assert_eq!(out.len(), expected.len());
        let errors = expected
            .split(|b| *b == b'\n')
            .filter(|l| l.windows(17).any(|w| w == br#""verdict":"error""#))
            .count();
        assert!(
            errors > 0 && errors < lines / 2,
            "{errors} error verdicts of {lines}"
        );
    }

    #[test]
    fn the_wit_enums_name_their_cases_as_the_engine_does() {
        let streams = [
            (Stream::Control, "control"),
            (Stream::Flow, "flow"),
            (Stream::Dns, "dns"),
            (Stream::Heartbeat, "heartbeat"),
            (Stream::Proxy, "proxy"),
            (Stream::Incident, "incident"),
            (Stream::Audit, "audit"),
            (Stream::Other, "other"),
        ];
        for (stream, name) in streams {
            assert_eq!(stream.as_str(), name);
        }
        let verdicts = [
            (Verdict::Allow, "allow"),
            (Verdict::Alert, "alert"),
            (Verdict::Approved, "approved"),
            (Verdict::Unattributed, "unattributed"),
            (Verdict::NotApplicable, "not_applicable"),
            (Verdict::Error, "error"),
        ];
        for (verdict, name) in verdicts {
            assert_eq!(verdict.as_str(), name);
        }
    }
}
