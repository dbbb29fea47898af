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
pub use bindings::exports::clawwatch::monitor::engine::Stats;
#[cfg(test)]
pub use bindings::exports::clawwatch::monitor::engine::{RuleCount, StreamCount};

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
        let engine = anyhow_of(Engine::new(&config)).context("configuring wasmtime")?;
        let component = cache::load_or_compile(&engine, wasm, cache_dir)?;
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
    /// The engine refused it (damaged, or from an incompatible version).
    Refused(String),
    /// The component failed while reading it.
    Runtime(anyhow::Error),
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            RestoreError::Refused(why) => f.write_str(why),
            RestoreError::Runtime(e) => write!(f, "the engine failed while restoring: {e:#}"),
        }
    }
}

impl std::error::Error for RestoreError {}

/// One live monitor inside the component, re-created from the policy if the
/// guest traps or exceeds its limits.
pub struct Monitor {
    runtime: Arc<Runtime>,
    policy: String,
    limits: Limits,
    /// The input format, when the operator named it (`--format`).
    stream: Option<String>,
    field_set: FieldSet,
    store: Store<GuestState>,
    instance: bindings::Monitor,
    handle: ResourceAny,
    restarts: u64,
    /// The latest snapshot of the guest's state; a re-created guest resumes from it.
    last_state: Option<Vec<u8>>,
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
            store,
            instance,
            handle,
            restarts: 0,
            last_state: None,
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

    /// Names the format of the records to come (`None`: recognise each by its shape).
    pub fn set_stream(&mut self, stream: Option<String>) {
        self.stream = stream;
    }

    /// Processes one NDJSON batch. If the guest traps or runs out of time or
    /// memory, the batch comes back with every record tagged `error`, and the
    /// monitor is re-created from the policy so the next batch is judged again.
    pub fn process(&mut self, batch: &[u8]) -> Vec<u8> {
        match self.try_process(batch) {
            Ok(out) => out,
            Err(trap) => {
                let why = format!(
                    "the detection engine failed on this batch ({}); records passed through unjudged",
                    first_line(&trap)
                );
                tracing::error!(error = %format!("{trap:#}"), "engine failed; re-creating it from the policy");
                self.restart();
                let mut out = Vec::with_capacity(batch.len() * 2);
                clawwatch_plugin::output::tag_ndjson_as_error(batch, &why, &mut out);
                out
            }
        }
    }

    /// Moves the engine's event time to `now_ns` (idle input); returns the
    /// incident records that produced. A failure is logged and yields nothing:
    /// no input record is at stake.
    pub fn advance_to(&mut self, now_ns: i64) -> Vec<u8> {
        set_deadline(&mut self.store, &self.limits);
        match self
            .instance
            .clawwatch_monitor_engine()
            .monitor()
            .call_advance_to(&mut self.store, self.handle, now_ns)
        {
            Ok(out) => out,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "engine failed while advancing time; re-creating it from the policy");
                self.restart();
                Vec::new()
            }
        }
    }

    fn try_process(&mut self, batch: &[u8]) -> Result<Vec<u8>> {
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

    /// Everything the engine has learnt, as a snapshot; also kept so that a
    /// guest re-created after a failure resumes from it.
    pub fn export_state(&mut self) -> Result<Vec<u8>> {
        set_deadline(&mut self.store, &self.limits);
        let state = anyhow_of(
            self.instance
                .clawwatch_monitor_engine()
                .monitor()
                .call_export_state(&mut self.store, self.handle),
        )?;
        self.last_state = Some(state.clone());
        Ok(state)
    }

    /// Replaces what the engine has learnt with a snapshot. A refused snapshot
    /// (damaged, another version) leaves the engine as it was.
    pub fn restore_state(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        set_deadline(&mut self.store, &self.limits);
        self.instance
            .clawwatch_monitor_engine()
            .monitor()
            .call_restore_state(&mut self.store, self.handle, snapshot)
            .map_err(|e| RestoreError::Runtime(e.into()))?
            .map_err(RestoreError::Refused)?;
        self.last_state = Some(snapshot.to_vec());
        Ok(())
    }

    fn restart(&mut self) {
        self.restarts += 1;
        match instantiate(&self.runtime, &self.policy, &self.limits) {
            Ok((store, instance, handle)) => {
                self.store = store;
                self.instance = instance;
                self.handle = handle;
                if let Err(e) = self.set_field_set(self.field_set) {
                    tracing::error!(error = %format!("{e:#}"), "re-created engine refused the field set");
                }
                if let Some(state) = self.last_state.take() {
                    match self.restore_state(&state) {
                        Ok(()) => tracing::info!("engine resumed from its last snapshot"),
                        Err(e) => {
                            tracing::error!(error = %e, "engine re-created without its state")
                        }
                    }
                }
            }
            // The policy loaded before, so this is a runtime problem; the old
            // (poisoned) instance stays and the next batch will report it again.
            Err(e) => tracing::error!(error = %e, "could not re-create the engine"),
        }
    }

    pub fn stats(&mut self) -> Result<Stats> {
        set_deadline(&mut self.store, &self.limits);
        anyhow_of(
            self.instance
                .clawwatch_monitor_engine()
                .monitor()
                .call_stats(&mut self.store, self.handle),
        )
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
