//! `clawwatch bench --fluent-bit PATH`: records/s through a real Fluent Bit,
//! tail → wasm filter → file, in one run on the same records: no filter, a
//! no-op wasm filter, clawwatch interpreted and clawwatch compiled ahead of
//! time with WAMR's `wamrc`. Ratios within one run mean something on a noisy
//! machine; absolute figures do not.

use super::{FILTER_FUNCTION, Filter, Input, MODULE, NOOP_FUNCTION, NOOP_MODULE, Output, Pipeline};
use anyhow::{Context, Result, bail, ensure};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct FluentBitBench {
    pub fluent_bit: PathBuf,
    /// WAMR's AOT compiler; without it the AOT row is left out, saying why.
    pub wamrc: Option<PathBuf>,
    pub records: Vec<String>,
    pub policy_text: String,
}

struct Row {
    name: &'static str,
    elapsed: Duration,
}

/// Kills Fluent Bit when a measurement ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run_bench(bench: FluentBitBench) -> Result<()> {
    ensure!(
        bench.fluent_bit.is_file(),
        "no Fluent Bit at {}",
        bench.fluent_bit.display()
    );
    let dir =
        std::env::temp_dir().join(format!("clawwatch-bench-fluent-bit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policy"))?;
    let records = dir.join("records.ndjson");
    let mut text = bench.records.join("\n");
    text.push('\n');
    std::fs::write(&records, text)?;
    std::fs::write(
        dir.join("policy").join(super::POLICY_FILE),
        &bench.policy_text,
    )?;
    let wasm = dir.join("clawwatch.wasm");
    std::fs::write(&wasm, MODULE)?;
    let noop = dir.join("noop.wasm");
    std::fs::write(&noop, NOOP_MODULE)?;
    let aot = match &bench.wamrc {
        Some(wamrc) => {
            eprintln!(
                "compiling the module ahead of time with {}...",
                wamrc.display()
            );
            let aot = dir.join("clawwatch.aot");
            compile_aot(wamrc, &wasm, &aot)?;
            Some(aot)
        }
        None => None,
    };
    let n = bench.records.len();
    let clawwatch = |module: &Path| Filter {
        module: module.to_path_buf(),
        function: FILTER_FUNCTION.into(),
        policy_dir: Some(dir.join("policy")),
        heap_size: None,
    };
    let mut variants: Vec<(&'static str, Option<Filter>)> = vec![
        ("no filter", None),
        (
            "no-op wasm filter",
            Some(Filter {
                module: noop.clone(),
                function: NOOP_FUNCTION.into(),
                policy_dir: None,
                heap_size: Some("4M"),
            }),
        ),
        ("clawwatch, interpreted", Some(clawwatch(&wasm))),
    ];
    if let Some(aot) = &aot {
        variants.push(("clawwatch, AOT (wamrc)", Some(clawwatch(aot))));
    }
    let mut rows = Vec::new();
    let mut clawwatch_outputs = Vec::new();
    for (i, (name, filter)) in variants.into_iter().enumerate() {
        eprintln!("{name}...");
        let out_dir = dir.join(format!("out-{i}"));
        std::fs::create_dir_all(&out_dir)?;
        let is_clawwatch = filter
            .as_ref()
            .is_some_and(|f| f.function == FILTER_FUNCTION);
        let pipeline = Pipeline {
            inputs: vec![Input {
                format: None,
                path: records.display().to_string(),
            }],
            filter,
            output: Output::Dir(out_dir.clone()),
            flush_secs: 0.2,
            alerts: false,
        };
        let output = out_dir.join("clawwatch.ndjson");
        let elapsed = run_pipeline(
            &bench.fluent_bit,
            &pipeline,
            &dir.join(format!("{i}.yaml")),
            &output,
            n,
        )?;
        if is_clawwatch {
            clawwatch_outputs.push(output);
        }
        rows.push(Row { name, elapsed });
    }
    let identical = match clawwatch_outputs.as_slice() {
        [interpreted, aot] => std::fs::read(interpreted)? == std::fs::read(aot)?,
        _ => true,
    };

    let rate = |r: &Row| n as f64 / r.elapsed.as_secs_f64();
    let base = rate(&rows[0]);
    let noop = rate(&rows[1]);
    println!(
        "Fluent Bit ({}): {n} records, tail -> filter -> file, one run",
        bench.fluent_bit.display()
    );
    println!(
        "{:<24} {:>11} {:>9} {:>13} {:>15}",
        "pipeline", "records/s", "seconds", "vs no filter", "vs no-op filter"
    );
    for (i, row) in rows.iter().enumerate() {
        let vs_noop = if i == 0 {
            String::new()
        } else {
            format!("{:.2}x", rate(row) / noop)
        };
        println!(
            "{:<24} {:>11.0} {:>9.2} {:>12.2}x {:>15}",
            row.name,
            rate(row),
            row.elapsed.as_secs_f64(),
            rate(row) / base,
            vs_noop
        );
    }
    if aot.is_none() {
        println!("(AOT left out: no wamrc; pass --wamrc PATH)");
    }
    println!(
        "(seconds from Fluent Bit's start to the last record in the output file, flushed every 0.2 s)"
    );
    println!(
        "interpreted and AOT outputs identical: {}",
        if identical { "yes" } else { "NO" }
    );
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        identical,
        "the AOT-compiled module's output differs from the interpreted one's"
    );
    Ok(())
}

/// `wamrc --target=x86_64 -o AOT WASM` (an AOT file loads only in the same
/// WAMR version on the same CPU family).
pub fn compile_aot(wamrc: &Path, wasm: &Path, aot: &Path) -> Result<()> {
    let out = Command::new(wamrc)
        .arg("--target=x86_64")
        .arg("-o")
        .arg(aot)
        .arg(wasm)
        .output()
        .with_context(|| format!("running {}", wamrc.display()))?;
    ensure!(
        out.status.success() && aot.is_file(),
        "{} failed ({}): {}",
        wamrc.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Runs Fluent Bit on `pipeline` until `output` holds `records` lines; returns
/// the time from its start.
fn run_pipeline(
    fluent_bit: &Path,
    pipeline: &Pipeline,
    config: &Path,
    output: &Path,
    records: usize,
) -> Result<Duration> {
    std::fs::write(config, pipeline.render())?;
    // Its log goes to a file: an unread pipe would stall it once full.
    let log = config.with_extension("log");
    let started = Instant::now();
    let mut child = Running(
        Command::new(fluent_bit)
            .arg("-c")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", fluent_bit.display()))?,
    );
    // The slowest path seen runs a few thousand records a second.
    let deadline = Duration::from_secs(30) + Duration::from_millis(records as u64);
    let mut lines = 0usize;
    let mut read = 0u64;
    loop {
        if let Ok(mut file) = std::fs::File::open(output) {
            use std::io::Seek;
            file.seek(std::io::SeekFrom::Start(read))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)?;
            read += buf.len() as u64;
            lines += memchr::memchr_iter(b'\n', &buf).count();
        }
        if lines >= records {
            let elapsed = started.elapsed();
            ensure!(
                lines == records,
                "Fluent Bit wrote {lines} records for {records}"
            );
            return Ok(elapsed);
        }
        if let Some(status) = child.0.try_wait()? {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            bail!(
                "Fluent Bit exited ({status}) after {lines} of {records} records: {}",
                said.trim()
            );
        }
        if started.elapsed() > deadline {
            bail!(
                "Fluent Bit wrote {lines} of {records} records in {:.0} s; see {} and {}",
                deadline.as_secs_f64(),
                config.display(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
