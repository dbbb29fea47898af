//! `clawwatch bench --fluent-bit-operators`: the WebAssembly operators the
//! Fluent Bit filter module runs per record. WAMR's interpreter spends its
//! time running operators, so their count is the interpreted filter's cost,
//! and unlike records/s through Fluent Bit it does not swing between runs.
//! Counted with wasmtime's fuel (one unit per operator), the module called
//! exactly as `filter_wasm` calls it in JSON mode; each output is checked
//! against the native engine's for the same record.

use super::{FILTER_FUNCTION, MODULE, POLICY_FILE};
use crate::component::anyhow_of;
use anyhow::{Context, Result, anyhow, ensure};
use clawwatch_plugin::Engine;
use std::time::Instant;
use wasmtime::{Config, Instance, Linker, Memory, Module, Store, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// The tag the bench's Fluent Bit pipelines give the records (it names no format).
const TAG: &[u8] = b"clawwatch.agents";
/// Where the module's accessible path appears inside the guest.
const GUEST_POLICY_DIR: &str = "/etc/clawwatch";

/// The module, instantiated with a policy directory, fuel metered.
struct MeteredFilter {
    store: Store<WasiP1Ctx>,
    memory: Memory,
    malloc: TypedFunc<i32, i32>,
    free: TypedFunc<i32, ()>,
    filter: TypedFunc<(i32, i32, i32, i32, i32, i32), i32>,
}

/// Operators one record cost.
struct Spent {
    /// In `clawwatch_filter` itself.
    filter: u64,
    /// Also copying the tag and record in and freeing them, as Fluent Bit does.
    with_copies: u64,
}

impl MeteredFilter {
    fn new(policy_dir: &std::path::Path) -> Result<MeteredFilter> {
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = wasmtime::Engine::new(&config)?;
        let module =
            anyhow_of(Module::new(&engine, MODULE)).context("compiling the filter module")?;
        let mut wasi = WasiCtxBuilder::new();
        wasi.preopened_dir(policy_dir, GUEST_POLICY_DIR, FsPerms::ReadOnly)?;
        let mut store = Store::new(&engine, wasi.build_p1());
        store.set_fuel(u64::MAX)?;
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx)?;
        let instance: Instance = linker.instantiate(&mut store, &module)?;
        instance
            .get_typed_func::<(), ()>(&mut store, "_initialize")?
            .call(&mut store, ())?;
        Ok(MeteredFilter {
            memory: instance
                .get_memory(&mut store, "memory")
                .ok_or_else(|| anyhow!("the module exports no memory"))?,
            malloc: instance.get_typed_func(&mut store, "malloc")?,
            free: instance.get_typed_func(&mut store, "free")?,
            filter: instance.get_typed_func(&mut store, FILTER_FUNCTION)?,
            store,
        })
    }

    fn fuel(&self) -> Result<u64> {
        Ok(u64::MAX - self.store.get_fuel()?)
    }

    /// Copies `bytes` in NUL-terminated, as Fluent Bit does.
    fn copy_in(&mut self, bytes: &[u8]) -> Result<i32> {
        let len = i32::try_from(bytes.len() + 1).context("a record past 2 GiB")?;
        let at = self.malloc.call(&mut self.store, len)?;
        ensure!(at != 0, "the module's malloc failed");
        self.memory.write(&mut self.store, at as usize, bytes)?;
        self.memory
            .write(&mut self.store, at as usize + bytes.len(), &[0])?;
        Ok(at)
    }

    /// Runs one record through the filter; its output goes to `out`.
    fn call(&mut self, record: &[u8], out: &mut Vec<u8>) -> Result<Spent> {
        let start = self.fuel()?;
        let tag = self.copy_in(TAG)?;
        let at = self.copy_in(record)?;
        let before_filter = self.fuel()?;
        let args = (tag, TAG.len() as i32, 0, 0, at, record.len() as i32);
        let result = self.filter.call(&mut self.store, args)? as usize;
        let after_filter = self.fuel()?;
        let data = self.memory.data(&self.store);
        let text = data
            .get(result..)
            .ok_or_else(|| anyhow!("the filter returned {result}, outside its memory"))?;
        let end = text
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| anyhow!("the filter's output has no NUL"))?;
        out.clear();
        out.extend_from_slice(&text[..end]);
        self.free.call(&mut self.store, tag)?;
        self.free.call(&mut self.store, at)?;
        Ok(Spent {
            filter: after_filter - before_filter,
            with_copies: self.fuel()? - start,
        })
    }
}

/// Counts the operators per record on `records`, checking each output
/// against the native engine's (one record out per record in, incident
/// records discarded, as the module must).
pub fn run(records: &[String], policy_text: &str) -> Result<()> {
    let dir =
        std::env::temp_dir().join(format!("clawwatch-bench-operators-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let policy = dir.join(POLICY_FILE);
    std::fs::write(&policy, policy_text)?;
    let started = Instant::now();
    let counted = count(records, policy_text, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let (filter, with_copies, differing) = counted?;
    let n = records.len() as f64;
    println!(
        "Fluent Bit filter module ({} bytes) under wasmtime's fuel metering, called as filter_wasm \
         calls it, tag {}: {} records",
        MODULE.len(),
        String::from_utf8_lossy(TAG),
        records.len()
    );
    println!(
        "WebAssembly operators per record: {:.0} in the filter, {:.0} with the copies in and out \
         (malloc, free)",
        filter as f64 / n,
        with_copies as f64 / n
    );
    println!(
        "outputs identical to the native engine's: {} ({:.1} s)",
        if differing == 0 { "yes" } else { "NO" },
        started.elapsed().as_secs_f64()
    );
    ensure!(
        differing == 0,
        "{differing} of the module's outputs differ from the native engine's"
    );
    Ok(())
}

/// Total operators in the filter and with the copies, and the outputs that differ.
fn count(
    records: &[String],
    policy_text: &str,
    dir: &std::path::Path,
) -> Result<(u64, u64, usize)> {
    let mut module = MeteredFilter::new(dir)?;
    let mut native = Engine::new(policy_text)?;
    let (mut filter, mut with_copies, mut differing) = (0, 0, 0);
    let (mut from_module, mut from_native) = (Vec::new(), Vec::new());
    for record in records {
        let spent = module.call(record.as_bytes(), &mut from_module)?;
        filter += spent.filter;
        with_copies += spent.with_copies;
        from_native.clear();
        native.process_record_as(record.as_bytes(), None, &mut from_native);
        native.discard_emitted();
        if from_module != from_native {
            differing += 1;
        }
    }
    Ok((filter, with_copies, differing))
}
