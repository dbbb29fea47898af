//! `clawwatch fluent-bit`: the engine as the module Fluent Bit's `wasm` filter
//! runs, embedded in this binary so the two always match, and a Fluent Bit
//! configuration that runs it (inputs tagged by format, the filter and its
//! policy directory, records out, alerts copied to an output of their own).
//! `bench --fluent-bit` renders its pipelines with the same code.

mod bench;
mod filter_call;
pub mod operators;
mod pipeline;

pub use bench::{FluentBitBench, run_bench};
pub use pipeline::{Filter, Input, Output, Pipeline};

use anyhow::{Context, Result, bail, ensure};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// The Fluent Bit filter module (the engine built for wasm32-wasip1).
pub const MODULE: &[u8] = include_bytes!(env!("CLAWWATCH_FLUENT_BIT_MODULE_PATH"));
/// The function Fluent Bit calls per record (`Function_Name`).
pub const FILTER_FUNCTION: &str = "clawwatch_filter";
/// The file the module looks for in each directory of `Accessible_Paths`.
pub const POLICY_FILE: &str = "policy.toml";

/// A wasm filter that hands every record back unchanged: what the wasm filter
/// itself costs, the baseline `bench --fluent-bit` compares clawwatch with.
/// `(module (memory (export "memory") 1) (func (export "noop_filter")
/// (param i32 i32 i32 i32 i32 i32) (result i32) local.get 4))`
pub const NOOP_MODULE: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x0b, 0x01, 0x60, 0x06, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, // type
    0x03, 0x02, 0x01, 0x00, // function
    0x05, 0x03, 0x01, 0x00, 0x01, // memory: 1 page
    0x07, 0x18, 0x02, // export: 2
    0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00, // "memory"
    0x0b, b'n', b'o', b'o', b'p', b'_', b'f', b'i', b'l', b't', b'e', b'r', 0x00,
    0x00, // "noop_filter"
    0x0a, 0x06, 0x01, 0x04, 0x00, 0x20, 0x04, 0x0b, // code: local.get 4
];
pub const NOOP_FUNCTION: &str = "noop_filter";

#[derive(clap::Subcommand)]
pub enum FluentBitCommand {
    /// Write the embedded filter module (WebAssembly, for Fluent Bit's `wasm` filter) to stdout,
    /// e.g. `clawwatch fluent-bit module > clawwatch.wasm`. Compile it ahead of time for a
    /// several-fold speed-up with WAMR's wamrc: `wamrc --target=x86_64 -o clawwatch.aot clawwatch.wasm`.
    Module(ModuleArgs),
    /// Print a Fluent Bit configuration (YAML) that runs clawwatch on your logs: tail inputs
    /// tagged by format, the wasm filter reading the policy, every record to stdout (or
    /// --output-dir), and a copy of each alert routed by tag to an output of its own.
    Config(ConfigArgs),
}

#[derive(clap::Args)]
pub struct ModuleArgs {
    /// Write the module to this file instead of stdout.
    #[arg(long, short, value_name = "PATH")]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ConfigArgs {
    /// The policy the filter runs. It is checked now. Fluent Bit can pass a module no file
    /// name, so the module reads `policy.toml` from the directories the filter may access:
    /// the file must be named so.
    #[arg(long, value_name = "PATH")]
    policy: PathBuf,
    /// The module (or its AOT-compiled `.aot`) as Fluent Bit will find it.
    #[arg(long, value_name = "PATH", default_value = "clawwatch.wasm")]
    module: PathBuf,
    /// A log to follow, as `[FORMAT=]PATH` (PATH may be a glob). FORMAT names the format of
    /// records whose shape does not say (e.g. `pmacct=/var/log/pmacct/*.json`); it goes into
    /// the input's tag, where the filter reads it. Repeat for several. Default: /var/log/agents/*.ndjson.
    #[arg(long, value_name = "[FORMAT=]PATH")]
    input: Vec<String>,
    /// Write records to DIR/clawwatch.ndjson and the alert copies to DIR/alerts.ndjson instead
    /// of stdout.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

pub fn run(command: &FluentBitCommand) -> Result<()> {
    match command {
        FluentBitCommand::Module(args) => write_module(args),
        FluentBitCommand::Config(args) => {
            let yaml = config(args)?;
            std::io::stdout()
                .write_all(yaml.as_bytes())
                .context("writing the configuration")
        }
    }
}

fn write_module(args: &ModuleArgs) -> Result<()> {
    match &args.output {
        Some(path) => std::fs::write(path, MODULE)
            .with_context(|| format!("writing the module to {}", path.display())),
        None => {
            let mut stdout = std::io::stdout().lock();
            ensure!(
                !stdout.is_terminal(),
                "refusing to write a binary module to a terminal: redirect it, e.g. \
                 `clawwatch fluent-bit module > clawwatch.wasm`"
            );
            stdout
                .write_all(MODULE)
                .and_then(|()| stdout.flush())
                .context("writing the module to stdout")
        }
    }
}

fn config(args: &ConfigArgs) -> Result<String> {
    let policy = std::path::absolute(&args.policy)
        .with_context(|| format!("resolving {}", args.policy.display()))?;
    let text = std::fs::read_to_string(&policy)
        .with_context(|| format!("reading policy {}", policy.display()))?;
    if let Err(e) = clawwatch_plugin::Engine::new(&text) {
        bail!(
            "policy {}: {e} (`clawwatch check {}` says more)",
            policy.display(),
            args.policy.display()
        );
    }
    if policy.file_name() != Some(POLICY_FILE.as_ref()) {
        bail!(
            "the module reads a file named {POLICY_FILE} (Fluent Bit cannot pass it a file name); \
             link or copy {} into a directory of its own as {POLICY_FILE} and name that file",
            policy.display()
        );
    }
    let policy_dir = policy
        .parent()
        .expect("a file has a parent directory")
        .to_path_buf();
    let module = std::path::absolute(&args.module)
        .with_context(|| format!("resolving {}", args.module.display()))?;
    if !module.exists() {
        eprintln!(
            "clawwatch: {} does not exist yet: `clawwatch fluent-bit module > {}`",
            module.display(),
            module.display()
        );
    }
    let inputs = if args.input.is_empty() {
        vec![Input {
            format: None,
            path: "/var/log/agents/*.ndjson".into(),
        }]
    } else {
        args.input
            .iter()
            .map(|spec| Input::parse(spec))
            .collect::<Result<_>>()?
    };
    Ok(Pipeline {
        inputs,
        filter: Some(Filter {
            module,
            function: FILTER_FUNCTION.into(),
            policy_dir: Some(policy_dir),
            heap_size: None,
        }),
        output: match &args.output_dir {
            Some(dir) => Output::Dir(std::path::absolute(dir)?),
            None => Output::Stdout,
        },
        flush_secs: 1.0,
        alerts: true,
    }
    .render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_noop_module_hands_the_record_back() {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, NOOP_MODULE).expect("a valid module");
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let f = instance
            .get_typed_func::<(i32, i32, i32, i32, i32, i32), i32>(&mut store, NOOP_FUNCTION)
            .unwrap();
        assert_eq!(f.call(&mut store, (1, 2, 3, 4, 4242, 6)).unwrap(), 4242);
        assert!(instance.get_memory(&mut store, "memory").is_some());
    }

    #[test]
    fn the_embedded_module_is_the_filter() {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, MODULE).unwrap();
        let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
        for needed in [FILTER_FUNCTION, "malloc", "free", "memory", "_initialize"] {
            assert!(exports.contains(&needed), "{needed}: {exports:?}");
        }
        assert!(!exports.contains(&"_start"), "a reactor, not a command");
    }

    fn args(policy: &Path, input: &[&str]) -> ConfigArgs {
        ConfigArgs {
            policy: policy.to_path_buf(),
            module: "/opt/clawwatch/clawwatch.aot".into(),
            input: input.iter().map(|s| s.to_string()).collect(),
            output_dir: None,
        }
    }

    fn policy_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("clawwatch-fb-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_config_names_the_module_policy_directory_and_tags() {
        let dir = policy_dir("ok");
        let policy = dir.join(POLICY_FILE);
        std::fs::write(&policy, crate::cli::EXAMPLE_POLICY).unwrap();
        let yaml = config(&args(
            &policy,
            &["pmacct=/var/log/pmacct/*.json", "/var/log/a.ndjson"],
        ))
        .unwrap();
        assert!(
            yaml.contains("wasm_path: '/opt/clawwatch/clawwatch.aot'"),
            "{yaml}"
        );
        assert!(
            yaml.contains(&format!("accessible_paths: '{}'", dir.display())),
            "{yaml}"
        );
        assert!(yaml.contains("tag: clawwatch.pmacct"), "{yaml}");
        assert!(yaml.contains("tag: clawwatch.agents"), "{yaml}");
        assert!(yaml.contains("function_name: clawwatch_filter"), "{yaml}");
    }

    #[test]
    fn the_config_refuses_a_bad_policy_a_wrong_name_and_an_unknown_format() {
        let dir = policy_dir("bad");
        let bad = dir.join(POLICY_FILE);
        std::fs::write(&bad, "[monitor]\nagent_subnets = [\"10.0.0.0/33\"]\n").unwrap();
        let e = config(&args(&bad, &[])).unwrap_err().to_string();
        assert!(
            e.contains("policy.toml") && e.contains("clawwatch check"),
            "{e}"
        );
        let named = dir.join("fleet.toml");
        std::fs::write(&named, crate::cli::EXAMPLE_POLICY).unwrap();
        let e = config(&args(&named, &[])).unwrap_err().to_string();
        assert!(e.contains("named policy.toml"), "{e}");
        std::fs::write(&bad, crate::cli::EXAMPLE_POLICY).unwrap();
        let e = config(&args(&bad, &["netflow9=/x"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`netflow9` is no format"), "{e}");
    }
}
