//! `clawwatch bench --fluent-bit-operators`: the WebAssembly operators the
//! Fluent Bit filter module runs per record. WAMR's interpreter spends its
//! time running operators, so their count is the interpreted filter's cost,
//! and unlike records/s through Fluent Bit it does not swing between runs.
//! Counted with wasmtime's fuel (one unit per operator), the module called
//! exactly as `filter_wasm` calls it in JSON mode; each output is checked
//! against the native engine's for the same record.

use super::filter_call::FilterCall;
use super::{FILTER_FUNCTION, MODULE, POLICY_FILE};
use anyhow::{Result, ensure};
use clawwatch_plugin::Engine;
use std::time::Instant;

/// The tag the bench's Fluent Bit pipelines give the records (it names no format).
const TAG: &[u8] = b"clawwatch.agents";

/// Operators counted over a run, and the outputs that differed.
struct Counted {
    filter: u64,
    with_copies: u64,
    differing: usize,
}

/// Counts the operators per record on `records`, checking each output
/// against the native engine's (one record out per record in, incident
/// records discarded, as the module must).
pub fn run(records: &[String], policy_text: &str) -> Result<()> {
    let dir =
        std::env::temp_dir().join(format!("clawwatch-bench-operators-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(POLICY_FILE), policy_text)?;
    let started = Instant::now();
    let counted = count(records, policy_text, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let counted = counted?;
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
        counted.filter as f64 / n,
        counted.with_copies as f64 / n
    );
    println!(
        "outputs identical to the native engine's: {} ({:.1} s)",
        if counted.differing == 0 { "yes" } else { "NO" },
        started.elapsed().as_secs_f64()
    );
    ensure!(
        counted.differing == 0,
        "{} of the module's outputs differ from the native engine's",
        counted.differing
    );
    Ok(())
}

fn count(records: &[String], policy_text: &str, policy_dir: &std::path::Path) -> Result<Counted> {
    let mut module = FilterCall::new(MODULE, FILTER_FUNCTION, Some(policy_dir), true)?;
    let mut native = Engine::new(policy_text)?;
    let mut counted = Counted {
        filter: 0,
        with_copies: 0,
        differing: 0,
    };
    let (mut from_module, mut from_native) = (Vec::new(), Vec::new());
    for record in records {
        let spent = module.call(TAG, record.as_bytes(), &mut from_module)?;
        counted.filter += spent.filter;
        counted.with_copies += spent.with_copies;
        from_native.clear();
        native.process_record_as(record.as_bytes(), None, &mut from_native);
        native.discard_emitted();
        counted.differing += usize::from(from_module != from_native);
    }
    Ok(counted)
}
