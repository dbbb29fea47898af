//! The command line: every subcommand and flag, with the help text users read.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The example policy bundled with clawwatch (testdata/policy.toml).
pub const EXAMPLE_POLICY: &str = include_str!("../../testdata/policy.toml");

#[derive(Parser)]
#[command(name = "clawwatch", version, about = "Checks, record by record, that each AI agent is still doing only what its type declared.", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    Check(crate::commands::check::CheckArgs),
    /// Mutation-test a policy and the engine: for every profile, compliant behaviour must raise
    /// no alert and behaviour just outside it (port ±1, sibling/parent domain, address outside
    /// a CIDR, volume over threshold, past lifetime, foreign resolver, tunnelling, random names,
    /// undeclared action, hidden connection) must. Reports each hole. Exit status: 0 no holes,
    /// 1 holes or false alarms, 2 the policy does not load.
    Selftest(SelftestArgs),
    /// Key records for clawwatch instances sharing Kafka topics: traffic (flows, DNS, proxy calls)
    /// to --kafka-output keyed by its agent-side address (the end inside agent_subnets), so one
    /// agent's traffic reaches one instance in order; lifecycle and intent (spawns, plans,
    /// heartbeats, approvals…) copied into every partition, so every instance meets them in
    /// order among the traffic. Stateless: run as many as the input needs. Every record is
    /// produced (unreadable ones unkeyed, to be tagged). Read the topic with `clawwatch run
    /// --kafka-changelog`.
    Route(RouteArgs),
    /// Run clawwatch inside Fluent Bit, as its `wasm` filter: write the embedded module, or
    /// print a configuration that runs it.
    FluentBit {
        #[command(subcommand)]
        command: crate::commands::fluent_bit::FluentBitCommand,
    },
}

#[derive(Args)]
pub struct RouteArgs {
    /// Policy file (TOML) whose agent_subnets and [inputs] say which end is the agent's and how
    /// to read framework logs. Without it, the bundled example policy.
    #[arg(long, value_name = "PATH")]
    pub policy: Option<PathBuf>,
    /// Input file of NDJSON records; repeat for several, read in order. Default: stdin.
    #[arg(long, short, value_name = "PATH", conflicts_with = "kafka_input")]
    pub input: Vec<PathBuf>,
    /// Read records from this Kafka topic instead (repeat for several; e.g. what shippers'
    /// Kafka sinks write, unkeyed), as a member of --kafka-group, until interrupted. A message is
    /// one record or NDJSON lines; offsets are committed once what they became is acked.
    #[arg(long, value_name = "TOPIC")]
    pub kafka_input: Vec<String>,
    /// The consumer group --kafka-input is read in: run several to share the topic.
    #[arg(long, value_name = "NAME", default_value = "clawwatch-route")]
    pub kafka_group: String,
    /// The inputs' format, for records whose shape does not say.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(clawwatch_plugin::record::FORMAT_NAMES))]
    pub format: Option<String>,
    /// Kafka brokers (HOST:PORT[,HOST:PORT…]).
    #[arg(long, value_name = "HOST:PORT,…")]
    pub kafka_brokers: String,
    /// The topic the instances read (their --kafka-input): traffic keyed by agent-side address,
    /// control copied into every partition.
    #[arg(long, value_name = "TOPIC")]
    pub kafka_output: String,
    /// A librdkafka property for the Kafka client, e.g. security.protocol=SASL_SSL; repeat for
    /// several.
    #[arg(long, value_name = "KEY=VALUE", value_parser = kafka_option)]
    pub kafka_option: Vec<(String, String)>,
}

/// `KEY=VALUE`, as librdkafka properties are written.
fn kafka_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "`{text}` is not KEY=VALUE (a librdkafka property, e.g. security.protocol=SASL_SSL)"
        )),
    }
}

#[derive(Args)]
pub struct SelftestArgs {
    /// The policy file (TOML). Without it, the bundled example policy.
    #[arg(value_name = "POLICY")]
    pub policy_file: Option<PathBuf>,
    /// Output: text for people, json for CI.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// List every trial and the rules that caught it, not only the problems.
    #[arg(long, short)]
    pub verbose: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Output field sets, as the command line names them.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Fields {
    Native,
    Ecs,
    Ocsf,
}

impl From<Fields> for crate::component::FieldSet {
    fn from(f: Fields) -> Self {
        match f {
            Fields::Native => crate::component::FieldSet::Native,
            Fields::Ecs => crate::component::FieldSet::Ecs,
            Fields::Ocsf => crate::component::FieldSet::Ocsf,
        }
    }
}

#[derive(Args)]
pub struct EngineArgs {
    /// Policy file (TOML). Without it, the bundled example policy is used. `run` re-reads it on
    /// SIGHUP and when it changes; a policy that does not load is rejected and the running one stays.
    #[arg(long, value_name = "PATH")]
    pub policy: Option<PathBuf>,
    /// Load this engine component instead of the embedded one.
    #[arg(long, value_name = "PATH")]
    pub component: Option<PathBuf>,
    /// Where compiled components are cached [default: $CLAWWATCH_CACHE_DIR, $XDG_CACHE_HOME/clawwatch or ~/.cache/clawwatch].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile the component on every start instead of caching it.
    #[arg(long)]
    pub no_cache: bool,
    /// Memory the engine may use, in MiB; past it the batch is passed through tagged `error`.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    pub guest_memory_mib: usize,
    /// Time one batch may take, in milliseconds; past it the batch is passed through tagged `error`.
    /// 0 removes the bound and its checks (a fifth of the engine's instructions), but a stuck
    /// engine would stall the pipeline.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub batch_timeout_ms: u64,
    /// Records handed to the engine per call (the boundary is crossed per batch, not per record).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub batch_records: usize,
}

#[derive(Args)]
pub struct RunArgs {
    /// Input file of NDJSON records; repeat for several, read in order. Default: stdin.
    #[arg(long, short, value_name = "PATH")]
    pub input: Vec<PathBuf>,
    /// Also accept NDJSON over TCP on this address (e.g. from Vector's `socket` sink), from any
    /// number of connections, until interrupted.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Also accept the Fluent forward protocol on this address (Fluent Bit's or Fluentd's
    /// `forward` output), until interrupted; chunks are acked once their records are out.
    #[arg(long, value_name = "HOST:PORT")]
    pub forward_listen: Option<String>,
    /// Also accept NDJSON batches POSTed over HTTP on this address (Vector's `http` sink with
    /// `framing.method = "newline_delimited"`), until interrupted. Each request is answered 200
    /// only once its records are out downstream (written, or acked by the forward/HTTP output),
    /// so the sender retries what a crash lost. POST to / (records recognised by their shape) or
    /// to /FORMAT (e.g. /pmacct); gzip bodies are read; GET /health answers 200.
    #[arg(long, value_name = "HOST:PORT")]
    pub http_listen: Option<String>,
    /// Kafka brokers (HOST:PORT[,HOST:PORT…]) for --kafka-input and --kafka-output.
    #[arg(long, value_name = "HOST:PORT,…")]
    pub kafka_brokers: Option<String>,
    /// The consumer group clawwatch instances reading --kafka-input join; the group shares the
    /// topics' partitions among them.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "clawwatch",
        requires = "kafka_brokers"
    )]
    pub kafka_group: String,
    /// Also read records from this Kafka topic (repeat for several), as a member of
    /// --kafka-group, until interrupted; a message is one record (or NDJSON lines). Offsets are
    /// committed only once the records' output is out (acked by the broker, for --kafka-output),
    /// so a crash re-reads what was not. A topic named for a format (`flows.goflow2`) says how to
    /// read its records.
    #[arg(long, value_name = "TOPIC", requires = "kafka_brokers")]
    pub kafka_input: Vec<String>,
    /// Write enriched records to this Kafka topic instead of --output, each keyed by its agent's
    /// id (so one agent's records stay in one partition, in order) and produced again until the
    /// broker acknowledges it.
    #[arg(long, value_name = "TOPIC", requires = "kafka_brokers")]
    pub kafka_output: Option<String>,
    /// Write incident and audit records to this Kafka topic rather than with the others.
    #[arg(long, value_name = "TOPIC", requires = "kafka_output")]
    pub kafka_incidents: Option<String>,
    /// A librdkafka property for every Kafka client (e.g. security.protocol=SASL_SSL,
    /// sasl.mechanisms=SCRAM-SHA-512, ssl.ca.location=PATH); repeat for several.
    #[arg(long, value_name = "KEY=VALUE", value_parser = kafka_option, requires = "kafka_brokers")]
    pub kafka_option: Vec<(String, String)>,
    /// Share the work with the other instances in --kafka-group, keeping each partition's state
    /// in this compacted topic (cleanup.policy=compact; one per group). The --kafka-input topics
    /// are as `clawwatch route` writes them: traffic keyed by agent-side address and a copy of
    /// every control record in every partition, all with one partition count. Each assigned
    /// partition is judged by an engine of its own whose state is saved here every
    /// --snapshot-secs and on revocation, and restored by the partition's next owner; each
    /// record is written once, by the owner of its agent's partition, with a `clawwatch.source`
    /// header naming its input topic/partition/offset.
    #[arg(
        long,
        value_name = "TOPIC",
        requires_all = ["kafka_input", "kafka_output"]
    )]
    pub kafka_changelog: Option<String>,
    /// Connections a listener (--listen, --forward-listen, --http-listen) serves at once; more
    /// are closed at once and counted (clawwatch_connections_refused_total). Keep it below the
    /// file limit.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_connections: usize,
    /// Memory one forward or HTTP connection may hold for a message or request not yet whole,
    /// in MiB (gzip counted expanded); a sender past it is cut off and counted
    /// (clawwatch_connections_cut_total). Larger than the largest chunk your shippers send.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub connection_budget_mib: usize,
    /// Memory all forward and HTTP connections together may hold for messages not yet whole,
    /// in MiB. A connection that needs more waits for others to finish, up to its message
    /// deadline, then is cut off.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    pub input_budget_mib: usize,
    /// Seconds a forward message or HTTP request may take from its first byte to its last; a
    /// sender trickling one (or stalling mid-way) is cut off then, and its memory freed.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub message_deadline_secs: u64,
    /// Also follow an OpenClaw gateway's events live (ws://HOST:PORT), as a read-only operator
    /// client: agent runs, tool calls, scheduled turns and exec approvals. Reconnects with backoff.
    /// The token comes from --openclaw-token-file or OPENCLAW_GATEWAY_TOKEN, never the command line.
    #[arg(long, value_name = "URL")]
    pub openclaw_gateway: Option<String>,
    /// File holding the OpenClaw gateway's token (gateway.auth.token).
    #[arg(long, value_name = "PATH", requires = "openclaw_gateway")]
    pub openclaw_token_file: Option<PathBuf>,
    /// clawwatch's device key for the gateway (created on first use; the gateway pairs it once)
    /// [default: $XDG_STATE_HOME/clawwatch/openclaw-device.key].
    #[arg(long, value_name = "PATH", requires = "openclaw_gateway")]
    pub openclaw_device_key: Option<PathBuf>,
    /// Where enriched records go: "-" (stdout); forward://HOST:PORT (Fluent forward, each chunk
    /// resent until acked: nothing lost); http://HOST:PORT/PATH (NDJSON POSTs, e.g. to Vector's
    /// `http_server` source with acknowledgements on, each resent until answered 2xx: nothing
    /// lost); or tcp://HOST:PORT (NDJSON, e.g. Vector's `socket` source: TCP cannot confirm
    /// delivery, so what a receiver took in as it went down is lost; prefer http or forward).
    #[arg(long, value_name = "DEST", default_value = "-")]
    pub output: crate::sink::Output,
    /// The inputs' format, for records whose shape does not say (a record's own `stream`
    /// field still wins). Default: each record's format is recognised by its shape.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(clawwatch_plugin::record::FORMAT_NAMES))]
    pub format: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Lines longer than this are not parsed: they pass through as base64, tagged `error`.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_line_bytes: usize,
    /// A batch goes to the engine when full (--batch-records) or when its oldest record has
    /// waited this long (ms), whatever the input rate: the latency a slow stream sees.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 200,
        alias = "idle-flush-ms"
    )]
    pub max_latency_ms: u64,
    /// When input has been idle this long (seconds), move event time to the wall clock so
    /// time-driven checks (silent agents past their lifetime, missing heartbeats, closing
    /// incidents) still fire on a live stream. 0 (default): event time moves only with records.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub idle_advance_secs: u64,
    /// Keep the engine's state (agents, DNS answers, baselines, windows, open incidents) in this
    /// file (or, for a directory, in its clawwatch-state.msgpack): restored at start, saved every --snapshot-secs and at shutdown (Ctrl-C, SIGTERM, end
    /// of input), replaced atomically. A snapshot that cannot be used is reported, moved to
    /// PATH.rejected, and the run starts empty.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// Seconds between state snapshots (with --state). After a crash, at most this much is relearnt.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub snapshot_secs: u64,
    /// The fields records leave with: native (the record plus its `clawwatch` note), ecs
    /// (Elastic Common Schema, the record in event.original) or ocsf (incident and audit records
    /// as OCSF Detection Findings, class 2004; other records native).
    #[arg(long, visible_alias = "output-format", value_enum, value_name = "SET", default_value_t = Fields::Native)]
    pub fields: Fields,
    /// Serve Prometheus metrics on http://HOST:PORT/metrics: records by stream and verdict,
    /// findings by rule, open incidents, evictions, batch latency, reloads, snapshots.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// Log progress at this interval (seconds) on long runs (visible with RUST_LOG=info).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub progress_secs: u64,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Show only records whose verdict is `alert`.
    #[arg(long)]
    pub alerts_only: bool,
    /// The fields records leave with (as for `run`).
    #[arg(long, visible_alias = "output-format", value_enum, value_name = "SET", default_value_t = Fields::Native)]
    pub fields: Fields,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Records to generate.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub records: usize,
    /// Measure through this Fluent Bit binary instead (tail -> wasm filter -> file): no filter,
    /// a no-op wasm filter, clawwatch interpreted and clawwatch AOT-compiled, with the ratios.
    #[arg(long, value_name = "PATH")]
    pub fluent_bit: Option<PathBuf>,
    /// WAMR's AOT compiler for the AOT row [default: `wamrc` beside --fluent-bit, if there].
    #[arg(long, value_name = "PATH", requires = "fluent_bit")]
    pub wamrc: Option<PathBuf>,
    /// Write the generated records (NDJSON) to this file and measure nothing.
    #[arg(long, value_name = "PATH", conflicts_with = "fluent_bit")]
    pub write_records: Option<PathBuf>,
    /// Measure only the native engine, nothing else in the process: for profiling it
    /// (`perf record -g clawwatch bench --native-only`).
    #[arg(long, conflicts_with_all = ["fluent_bit", "write_records"])]
    pub native_only: bool,
    /// Measure only the component, as `run` uses it (bounded by --batch-timeout-ms; 0: not
    /// bounded), nothing else in the process: for profiling it (`CLAWWATCH_PERFMAP=1 perf record
    /// -g clawwatch bench --component-only` names the guest's functions).
    #[arg(long, conflicts_with_all = ["fluent_bit", "write_records", "native_only"])]
    pub component_only: bool,
    /// Count the WebAssembly operators the Fluent Bit filter module runs per record (wasmtime's
    /// fuel, the module called as Fluent Bit's filter_wasm calls it), checking each output
    /// against the native engine's: the work WAMR's interpreter does, a figure that does not
    /// swing between runs as records/s through Fluent Bit do.
    #[arg(long, conflicts_with_all = ["fluent_bit", "write_records", "native_only", "component_only"])]
    pub fluent_bit_operators: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl EngineArgs {
    pub fn policy(&self) -> Result<(String, String)> {
        load_policy(self.policy.as_deref())
    }

    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(crate::cache::default_dir)
        }
    }

    pub fn limits(&self) -> crate::component::Limits {
        crate::component::Limits {
            memory_bytes: self.guest_memory_mib.saturating_mul(1 << 20),
            batch_timeout: (self.batch_timeout_ms > 0)
                .then(|| Duration::from_millis(self.batch_timeout_ms)),
        }
    }
}

/// The policy file's name and text, or the bundled example's.
pub fn load_policy(path: Option<&std::path::Path>) -> Result<(String, String)> {
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
