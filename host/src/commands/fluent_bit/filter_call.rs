//! The Fluent Bit filter module called exactly as Fluent Bit's `filter_wasm`
//! calls it in JSON mode: tag and record copied into guest memory through the
//! module's own `malloc`, each NUL-terminated; `f(tag, tag_len, sec, nsec,
//! record, record_len)`; the NUL-terminated JSON it returns copied out; both
//! buffers freed. One instance for every record, as Fluent Bit keeps it.
//! `bench --fluent-bit-operators` and the module's tests (which include this
//! file) both call the module through it, so they call it the same way.

use anyhow::{Context, Result, anyhow, ensure};
use std::path::Path;
use wasmtime::{Config, Engine, Instance, Linker, Memory, Module, Store, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Where the policy directory appears inside the guest (Fluent Bit's WAMR
/// names it by its own path; the module searches whatever it is given).
const GUEST_POLICY_DIR: &str = "/etc/clawwatch";

/// An instance of the filter module and the exports Fluent Bit calls.
pub struct FilterCall {
    store: Store<WasiP1Ctx>,
    memory: Memory,
    malloc: TypedFunc<i32, i32>,
    free: TypedFunc<i32, ()>,
    filter: TypedFunc<(i32, i32, i32, i32, i32, i32), i32>,
    metered: bool,
}

/// WebAssembly operators one call ran (wasmtime's fuel; zero unless metered).
pub struct Operators {
    /// In the filter function itself.
    pub filter: u64,
    /// Also copying the tag and record in and freeing them, as Fluent Bit does.
    pub with_copies: u64,
}

impl FilterCall {
    /// Instantiates `wasm` with `policy_dir` (if any) as its one accessible
    /// path, and runs its `_initialize`; `metered` counts operators.
    pub fn new(
        wasm: &[u8],
        function: &str,
        policy_dir: Option<&Path>,
        metered: bool,
    ) -> Result<FilterCall> {
        let mut config = Config::new();
        config.consume_fuel(metered);
        let engine = Engine::new(&config)?;
        let module = Module::new(&engine, wasm)
            .map_err(anyhow::Error::from)
            .context("compiling the filter module")?;
        let mut wasi = WasiCtxBuilder::new();
        if let Some(dir) = policy_dir {
            wasi.preopened_dir(dir, GUEST_POLICY_DIR, FsPerms::ReadOnly)?;
        }
        let mut store = Store::new(&engine, wasi.build_p1());
        if metered {
            store.set_fuel(u64::MAX)?;
        }
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx)?;
        let instance: Instance = linker.instantiate(&mut store, &module)?;
        instance
            .get_typed_func::<(), ()>(&mut store, "_initialize")?
            .call(&mut store, ())?;
        Ok(FilterCall {
            memory: instance
                .get_memory(&mut store, "memory")
                .ok_or_else(|| anyhow!("the module exports no memory"))?,
            malloc: instance.get_typed_func(&mut store, "malloc")?,
            free: instance.get_typed_func(&mut store, "free")?,
            filter: instance.get_typed_func(&mut store, function)?,
            store,
            metered,
        })
    }

    /// Operators run so far.
    fn spent(&self) -> Result<u64> {
        Ok(if self.metered {
            u64::MAX - self.store.get_fuel()?
        } else {
            0
        })
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

    /// Runs one record tagged `tag` through the filter; what it returns goes to `out`.
    pub fn call(&mut self, tag: &[u8], record: &[u8], out: &mut Vec<u8>) -> Result<Operators> {
        let start = self.spent()?;
        let tag_at = self.copy_in(tag)?;
        let record_at = self.copy_in(record)?;
        let before_filter = self.spent()?;
        let args = (
            tag_at,
            tag.len() as i32,
            1_795_530_600,
            0,
            record_at,
            record.len() as i32,
        );
        let result = self.filter.call(&mut self.store, args)? as usize;
        let after_filter = self.spent()?;
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
        self.free.call(&mut self.store, tag_at)?;
        self.free.call(&mut self.store, record_at)?;
        Ok(Operators {
            filter: after_filter - before_filter,
            with_copies: self.spent()? - start,
        })
    }
}
