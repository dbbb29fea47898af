//! `clawwatch`: tags every agent log record with the agent it belongs to and a
//! policy verdict, through the detection engine compiled to WebAssembly.

mod accept;
mod bench;
mod cache;
mod check;
mod component;
mod fluent_bit;
mod forward;
mod journal;
mod lines;
mod metrics;
mod openclaw_gateway;
mod run;
mod selftest;
mod state;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The example policy bundled with clawwatch (testdata/policy.toml).
const EXAMPLE_POLICY: &str = include_str!("../../testdata/policy.toml");

/// The sample scenario bundled with clawwatch (testdata/scenario/records.ndjson).
const SAMPLE_RECORDS: &[u8] = include_bytes!("../../testdata/scenario/records.ndjson");

#[derive(Parser)]
#[command(name = "clawwatch", version, about = "Checks, record by record, that each AI agent is still doing only what its type declared.", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read NDJSON records (stdin, or --input files in order), write each one
    /// back to stdout tagged with its agent and verdict: one line out per line in.
    Run(RunArgs),
    /// Run the bundled sample scenario (a small fleet with a few incidents and
    /// malformed lines) through the bundled example policy; same output as `run`.
    Demo(DemoArgs),
    /// Measure engine throughput natively and through the component on
    /// generated flow/DNS/control records, in one run, and print the ratio.
    Bench(BenchArgs),
    /// Validate a policy and lint it. Exit status: 0 valid with no warnings,
    /// 1 valid with warnings, 2 invalid (the error names the line and key).
    Check(check::CheckArgs),
    /// Mutation-test a policy and the engine: for every profile, compliant behaviour must raise
    /// no alert and behaviour just outside it (port ±1, sibling/parent domain, address outside
    /// a CIDR, volume over threshold, past lifetime, foreign resolver, tunnelling, random names,
    /// undeclared action, hidden connection) must. Reports each hole. Exit status: 0 no holes,
    /// 1 holes or false alarms, 2 the policy does not load.
    Selftest(SelftestArgs),
    /// Run clawwatch inside Fluent Bit, as its `wasm` filter: write the embedded module, or
    /// print a configuration that runs it.
    FluentBit {
        #[command(subcommand)]
        command: fluent_bit::FluentBitCommand,
    },
}

#[derive(Args)]
struct SelftestArgs {
    /// The policy file (TOML). Without it, the bundled example policy.
    #[arg(value_name = "POLICY")]
    policy_file: Option<PathBuf>,
    /// Output: text for people, json for CI.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    format: String,
    /// List every trial and the rules that caught it, not only the problems.
    #[arg(long, short)]
    verbose: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Output field sets, as the command line names them.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Fields {
    Native,
    Ecs,
    Ocsf,
}

impl From<Fields> for component::FieldSet {
    fn from(f: Fields) -> Self {
        match f {
            Fields::Native => component::FieldSet::Native,
            Fields::Ecs => component::FieldSet::Ecs,
            Fields::Ocsf => component::FieldSet::Ocsf,
        }
    }
}

#[derive(Args)]
struct EngineArgs {
    /// Policy file (TOML). Without it, the bundled example policy is used. `run` re-reads it on
    /// SIGHUP and when it changes; a policy that does not load is rejected and the running one stays.
    #[arg(long, value_name = "PATH")]
    policy: Option<PathBuf>,
    /// Load this engine component instead of the embedded one.
    #[arg(long, value_name = "PATH")]
    component: Option<PathBuf>,
    /// Where compiled components are cached [default: $CLAWWATCH_CACHE_DIR, $XDG_CACHE_HOME/clawwatch or ~/.cache/clawwatch].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the component on every start instead of caching it.
    #[arg(long)]
    no_cache: bool,
    /// Memory the engine may use, in MiB; past it the batch is passed through tagged `error`.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    guest_memory_mib: usize,
    /// Time one batch may take, in milliseconds; past it the batch is passed through tagged `error`.
    /// 0 removes the bound: about a quarter faster, but a stuck engine would stall the pipeline.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    batch_timeout_ms: u64,
    /// Records handed to the engine per call (the boundary is crossed per batch, not per record).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    batch_records: usize,
}

#[derive(Args)]
struct RunArgs {
    /// Input file of NDJSON records; repeat for several, read in order. Default: stdin.
    #[arg(long, short, value_name = "PATH")]
    input: Vec<PathBuf>,
    /// Also accept NDJSON over TCP on this address (e.g. from Vector's `socket` sink), from any
    /// number of connections, until interrupted.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Also accept the Fluent forward protocol on this address (Fluent Bit's or Fluentd's
    /// `forward` output), until interrupted; chunks are acked once their records are out.
    #[arg(long, value_name = "HOST:PORT")]
    forward_listen: Option<String>,
    /// Connections a listener (--listen, --forward-listen) serves at once; more are closed at
    /// once and counted (clawwatch_connections_refused_total). Keep it below the file limit.
    #[arg(long, value_name = "N", default_value_t = 512)]
    max_connections: usize,
    /// Also follow an OpenClaw gateway's events live (ws://HOST:PORT), as a read-only operator
    /// client: agent runs, tool calls, scheduled turns and exec approvals. Reconnects with backoff.
    /// The token comes from --openclaw-token-file or OPENCLAW_GATEWAY_TOKEN, never the command line.
    #[arg(long, value_name = "URL")]
    openclaw_gateway: Option<String>,
    /// File holding the OpenClaw gateway's token (gateway.auth.token).
    #[arg(long, value_name = "PATH", requires = "openclaw_gateway")]
    openclaw_token_file: Option<PathBuf>,
    /// clawwatch's device key for the gateway (created on first use; the gateway pairs it once)
    /// [default: $XDG_STATE_HOME/clawwatch/openclaw-device.key].
    #[arg(long, value_name = "PATH", requires = "openclaw_gateway")]
    openclaw_device_key: Option<PathBuf>,
    /// Where enriched records go: "-" (stdout), tcp://HOST:PORT (NDJSON, e.g. Vector's `socket`
    /// source; no acknowledgements, so records in flight when the receiver restarts can be lost)
    /// or forward://HOST:PORT (Fluent forward, each chunk resent until acked: nothing lost).
    #[arg(long, value_name = "DEST", default_value = "-")]
    output: run::Output,
    /// The inputs' format, for records whose shape does not say (a record's own `stream`
    /// field still wins). Default: each record's format is recognised by its shape.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(clawwatch_plugin::record::FORMAT_NAMES))]
    format: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Lines longer than this are not parsed: they pass through as base64, tagged `error`.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_line_bytes: usize,
    /// A batch goes to the engine when full (--batch-records) or when its oldest record has
    /// waited this long (ms), whatever the input rate: the latency a slow stream sees.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 200,
        alias = "idle-flush-ms"
    )]
    max_latency_ms: u64,
    /// When input has been idle this long (seconds), move event time to the wall clock so
    /// time-driven checks (silent agents past their lifetime, missing heartbeats, closing
    /// incidents) still fire on a live stream. 0 (default): event time moves only with records.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    idle_advance_secs: u64,
    /// Keep the engine's state (agents, DNS answers, baselines, windows, open incidents) in this
    /// file (or, for a directory, in its clawwatch-state.msgpack): restored at start, saved every --snapshot-secs and at shutdown (Ctrl-C, SIGTERM, end
    /// of input), replaced atomically. A snapshot that cannot be used is reported, moved to
    /// PATH.rejected, and the run starts empty.
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,
    /// Seconds between state snapshots (with --state). After a crash, at most this much is relearnt.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    snapshot_secs: u64,
    /// The fields records leave with: native (the record plus its `clawwatch` note), ecs
    /// (Elastic Common Schema, the record in event.original) or ocsf (incident and audit records
    /// as OCSF Detection Findings, class 2004; other records native).
    #[arg(long, visible_alias = "output-format", value_enum, value_name = "SET", default_value_t = Fields::Native)]
    fields: Fields,
    /// Serve Prometheus metrics on http://HOST:PORT/metrics: records by stream and verdict,
    /// findings by rule, open incidents, evictions, batch latency, reloads, snapshots.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// Log progress at this interval (seconds) on long runs (visible with RUST_LOG=info).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    progress_secs: u64,
}

#[derive(Args)]
struct DemoArgs {
    /// Show only records whose verdict is `alert`.
    #[arg(long)]
    alerts_only: bool,
    /// The fields records leave with (as for `run`).
    #[arg(long, visible_alias = "output-format", value_enum, value_name = "SET", default_value_t = Fields::Native)]
    fields: Fields,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args)]
struct BenchArgs {
    /// Records to generate.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    records: usize,
    /// Measure through this Fluent Bit binary instead (tail -> wasm filter -> file): no filter,
    /// a no-op wasm filter, clawwatch interpreted and clawwatch AOT-compiled, with the ratios.
    #[arg(long, value_name = "PATH")]
    fluent_bit: Option<PathBuf>,
    /// WAMR's AOT compiler for the AOT row [default: `wamrc` beside --fluent-bit, if there].
    #[arg(long, value_name = "PATH", requires = "fluent_bit")]
    wamrc: Option<PathBuf>,
    /// Write the generated records (NDJSON) to this file and measure nothing.
    #[arg(long, value_name = "PATH", conflicts_with = "fluent_bit")]
    write_records: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

impl EngineArgs {
    fn policy(&self) -> Result<(String, String)> {
        load_policy(self.policy.as_deref())
    }

    fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(cache::default_dir)
        }
    }

    fn limits(&self) -> component::Limits {
        component::Limits {
            memory_bytes: self.guest_memory_mib.saturating_mul(1 << 20),
            batch_timeout: (self.batch_timeout_ms > 0)
                .then(|| Duration::from_millis(self.batch_timeout_ms)),
        }
    }
}

/// The policy file's name and text, or the bundled example's.
fn load_policy(path: Option<&std::path::Path>) -> Result<(String, String)> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading policy {}", path.display()))?;
            Ok((path.display().to_string(), text))
        }
        None => {
            eprintln!(
                "clawwatch: no --policy given; using the bundled example policy (testdata/policy.toml)"
            );
            Ok(("<bundled example>".into(), EXAMPLE_POLICY.to_string()))
        }
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::Check(args) = &cli.command {
        return check::run(args);
    }
    if let Command::Selftest(args) = &cli.command {
        let path = args.policy_file.as_ref().or(args.engine.policy.as_ref());
        let (policy_name, policy_text) = match load_policy(path.map(PathBuf::as_path)) {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("clawwatch: error: {e:#}");
                return std::process::ExitCode::from(2);
            }
        };
        return selftest::run(selftest::SelftestOptions {
            policy_name,
            policy_text,
            component: args.engine.component.clone(),
            cache_dir: args.engine.cache_dir(),
            limits: args.engine.limits(),
            json: args.format == "json",
            verbose: args.verbose,
        });
    }
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clawwatch: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => {
            anyhow::ensure!(
                args.engine.batch_records > 0,
                "--batch-records must be at least 1"
            );
            let (policy_name, policy_text) = args.engine.policy()?;
            let mut inputs: Vec<run::Input> =
                args.input.iter().cloned().map(run::Input::File).collect();
            anyhow::ensure!(
                !(args.listen.is_some() && args.forward_listen.is_some()),
                "--listen and --forward-listen: run one clawwatch per listener"
            );
            let openclaw = match &args.openclaw_gateway {
                Some(url) => Some(openclaw_gateway::GatewayOptions::new(
                    url,
                    args.openclaw_token_file.as_deref(),
                    args.openclaw_device_key
                        .clone()
                        .unwrap_or_else(openclaw_gateway::default_device_key),
                )?),
                None => None,
            };
            match (&args.listen, &args.forward_listen) {
                (Some(addr), _) => inputs.push(run::Input::Listen(addr.clone())),
                (_, Some(addr)) => inputs.push(run::Input::Forward(addr.clone())),
                // A live gateway alone is input enough; stdin is not read then.
                _ if inputs.is_empty() && openclaw.is_none() => inputs.push(run::Input::Stdin),
                _ => {}
            }
            let opts = run::RunOptions {
                policy_name,
                policy_text,
                policy_path: args.engine.policy.clone(),
                inputs,
                openclaw,
                alerts_only: false,
                stream: args.format.clone(),
                output: args.output.clone(),
                component: args.engine.component.clone(),
                cache_dir: args.engine.cache_dir(),
                limits: args.engine.limits(),
                batch: lines::BatchLimits {
                    records: args.engine.batch_records,
                    bytes: 4 << 20,
                    line_bytes: args.max_line_bytes.max(1),
                },
                idle: lines::IdlePolicy {
                    max_latency: Duration::from_millis(args.max_latency_ms.max(1)),
                    advance: (args.idle_advance_secs > 0)
                        .then(|| Duration::from_secs(args.idle_advance_secs)),
                },
                progress_every: Duration::from_secs(args.progress_secs.max(1)),
                max_connections: args.max_connections,
                metrics_listen: args.metrics_listen.clone(),
                field_set: args.fields.into(),
                state: args.state.clone().map(|path| {
                    (
                        state::StateFile::new(path),
                        Duration::from_secs(args.snapshot_secs.max(1)),
                    )
                }),
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?
                .block_on(run::run(opts))
        }
        Command::Demo(args) => {
            let (policy_name, policy_text) = args.engine.policy()?;
            eprintln!(
                "clawwatch: running the bundled sample scenario (testdata/scenario/records.ndjson)"
            );
            let opts = run::RunOptions {
                policy_name,
                policy_text,
                policy_path: None,
                inputs: vec![run::Input::Embedded(SAMPLE_RECORDS)],
                openclaw: None,
                alerts_only: args.alerts_only,
                stream: None,
                output: run::Output::Stdout,
                component: args.engine.component.clone(),
                cache_dir: args.engine.cache_dir(),
                limits: args.engine.limits(),
                batch: lines::BatchLimits {
                    records: args.engine.batch_records.max(1),
                    bytes: 4 << 20,
                    line_bytes: 1 << 20,
                },
                idle: lines::IdlePolicy {
                    max_latency: Duration::from_millis(200),
                    advance: None,
                },
                progress_every: Duration::from_secs(10),
                max_connections: 1,
                state: None,
                metrics_listen: None,
                field_set: args.fields.into(),
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?
                .block_on(run::run(opts))
        }
        Command::Check(_) | Command::Selftest(_) => unreachable!("handled in main"),
        Command::FluentBit { command } => fluent_bit::run(&command),
        Command::Bench(args) => {
            anyhow::ensure!(args.records > 0, "--records must be at least 1");
            if let Some(path) = &args.write_records {
                let mut text = bench::sample_lines(args.records).join("\n");
                text.push('\n');
                return std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()));
            }
            let (_, policy_text) = args.engine.policy()?;
            if let Some(fluent_bit) = args.fluent_bit {
                let wamrc = args.wamrc.or_else(|| {
                    let beside = fluent_bit.with_file_name("wamrc");
                    beside.is_file().then_some(beside)
                });
                return fluent_bit::run_bench(fluent_bit::FluentBitBench {
                    fluent_bit,
                    wamrc,
                    records: bench::sample_lines(args.records),
                    policy_text,
                });
            }
            bench::run(bench::BenchOptions {
                records: args.records,
                batch_records: args.engine.batch_records,
                policy_text,
                component: args.engine.component.clone(),
                cache_dir: args.engine.cache_dir(),
                limits: args.engine.limits(),
            })
        }
    }
}
