//! `clawwatch bench`: the engine's throughput natively and through the
//! component, measured in one run on the same generated records, so the ratio
//! is meaningful on a noisy machine where absolute figures are not.

use crate::component::{Limits, Monitor, Runtime};
use anyhow::{Result, ensure};
use clawwatch_plugin::Engine;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct BenchOptions {
    pub records: usize,
    /// Only the native engine, for a profiler.
    pub native_only: bool,
    /// Only the component (bounded as `run` uses it), for a profiler.
    pub component_only: bool,
    pub batch_records: usize,
    pub policy_text: String,
    pub component: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
}

/// Heap counting for the bench, compiled in only with the `bench-heap`
/// feature (`cargo build --release --features bench-heap`): the production
/// binary keeps the system allocator untouched.
#[cfg(feature = "bench-heap")]
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts heap bytes in use and allocations made. One relaxed atomic per
    /// allocation: negligible next to the engine.
    struct CountingAllocator;

    static IN_USE: AtomicUsize = AtomicUsize::new(0);
    static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

    // SAFETY: defers every call to the system allocator unchanged; only counts.
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            IN_USE.fetch_add(new_size, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: CountingAllocator = CountingAllocator;

    /// Heap bytes in use now.
    pub fn in_use() -> Option<usize> {
        Some(IN_USE.load(Ordering::Relaxed))
    }

    /// Allocations (and reallocations) made so far.
    pub fn allocations() -> Option<usize> {
        Some(ALLOCATIONS.load(Ordering::Relaxed))
    }
}

/// Without the `bench-heap` feature nothing is counted.
#[cfg(not(feature = "bench-heap"))]
mod heap {
    pub fn in_use() -> Option<usize> {
        None
    }
    pub fn allocations() -> Option<usize> {
        None
    }
}

/// What the report says where the heap was not counted.
const NOT_COUNTED: &str = "not counted (build with --features bench-heap)";

/// What the state of a fleet costs: heap per agent, and its snapshot (size,
/// time to export, time to restore into a new engine).
struct StateCost {
    heap_per_agent: Option<f64>,
    /// The same state restored from its snapshot into a new engine.
    restored_heap_per_agent: Option<f64>,
    snapshot_bytes: usize,
    /// Bytes of the snapshot by part of the state, largest first.
    snapshot_parts: Vec<(&'static str, usize)>,
    export: Duration,
    restore: Duration,
    /// Changes after the snapshot, once the busy agents each made one more connection.
    changes_bytes: usize,
    changes_export: Duration,
}

/// One agent in this many makes a connection between the snapshot and the
/// changes the bench measures: a fleet checkpointed every few seconds.
const BUSY_ONE_IN: usize = 100;

/// The state of `agents` agents held by the native engine, each spawned with
/// a plan, resolving three names, making 30 connections to them and sending a
/// heartbeat (their state then includes registry entry, bindings, DNS
/// answers, activity and rate windows).
fn state_cost(policy_text: &str, agents: usize) -> Result<StateCost> {
    let mut engine = Engine::new(policy_text).map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let before = heap::in_use();
    let mut out = Vec::new();
    for i in 0..agents as u64 {
        let ip = format!("10.20.{}.{}", i / 250, i % 250 + 2);
        let mut batch = format!(
            "{{\"type\":\"agent.spawn\",\"ts\":\"2026-11-24T14:00:00Z\",\"agent_id\":\"a-{i}\",\"agent_type\":\"data_collector_v1\",\"deployment\":\"staging\",\"ip\":\"{ip}\"}}\n\
             {{\"type\":\"agent.plan\",\"ts\":\"2026-11-24T14:00:01Z\",\"agent_id\":\"a-{i}\",\"actions\":[{{\"dest\":\"api.internal.example.net\",\"port\":443}}]}}\n"
        );
        for (k, name) in [
            "api.internal.example.net",
            "cdn-{i}.example.net",
            "status.example.net",
        ]
        .iter()
        .enumerate()
        {
            batch.push_str(&format!(
                "{{\"type\":\"dns\",\"ts\":\"2026-11-24T14:00:02Z\",\"client_ip\":\"{ip}\",\"resolver_ip\":\"10.0.0.53\",\"qname\":\"{}\",\"answers\":[{{\"data\":\"93.184.{k}.{}\",\"ttl\":3600}}]}}\n",
                name.replace("{i}", &i.to_string()),
                i % 250
            ));
        }
        for c in 0..30u64 {
            batch.push_str(&format!(
                "{{\"type\":\"flow\",\"ts\":\"2026-11-24T14:{:02}:00Z\",\"src_ip\":\"{ip}\",\"src_port\":{},\"dst_ip\":\"93.184.{}.{}\",\"dst_port\":443,\"proto\":\"TCP\",\"bytes\":1000}}\n",
                c + 1,
                40000 + c,
                c % 3,
                i % 250
            ));
        }
        batch.push_str(&format!(
            "{{\"type\":\"agent.heartbeat\",\"ts\":\"2026-11-24T14:45:00Z\",\"agent_id\":\"a-{i}\",\"window_start\":\"2026-11-24T14:30:00Z\",\"window_end\":\"2026-11-24T14:45:00Z\",\"connections\":[{{\"dest\":\"api.internal.example.net\",\"port\":443}}]}}\n"
        ));
        out.clear();
        engine.process_ndjson(batch.as_bytes(), &mut out);
    }
    drop(out);
    let held = heap::in_use()
        .zip(before)
        .map(|(after, before)| after.saturating_sub(before) as f64 / agents as f64);
    let started = Instant::now();
    let snapshot = engine.export_state();
    let export = started.elapsed();
    let snapshot_parts = engine.snapshot_parts();
    let mut busy = String::new();
    for i in (0..agents as u64).step_by(BUSY_ONE_IN) {
        busy.push_str(&format!(
            "{{\"type\":\"flow\",\"ts\":\"2026-11-24T14:46:00Z\",\"src_ip\":\"10.20.{}.{}\",\"src_port\":41000,\"dst_ip\":\"93.184.0.{}\",\"dst_port\":443,\"proto\":\"TCP\",\"bytes\":1000}}\n",
            i / 250,
            i % 250 + 2,
            i % 250
        ));
    }
    let mut out = Vec::new();
    engine.process_ndjson(busy.as_bytes(), &mut out);
    let started = Instant::now();
    let changes = engine.export_changes();
    let changes_export = started.elapsed();
    drop(engine);
    let before_restore = heap::in_use();
    let mut restored = Engine::new(policy_text).map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let started = Instant::now();
    restored
        .restore_state(&snapshot)
        .map_err(|e| anyhow::anyhow!("restoring the bench's own snapshot: {e}"))?;
    let restore = started.elapsed();
    let restored_heap_per_agent = heap::in_use()
        .zip(before_restore)
        .map(|(after, before)| after.saturating_sub(before) as f64 / agents as f64);
    restored
        .restore_state(&changes)
        .map_err(|e| anyhow::anyhow!("applying the bench's own changes: {e}"))?;
    ensure!(
        restored.stats().agents == agents as u64,
        "the restored engine lost agents"
    );
    Ok(StateCost {
        heap_per_agent: held,
        restored_heap_per_agent,
        snapshot_bytes: snapshot.len(),
        snapshot_parts,
        export,
        restore,
        changes_bytes: changes.len(),
        changes_export,
    })
}

/// What finding the admitting rule costs in a long list (a policy allowing
/// many SaaS names, subnets and wildcards), with the lookup tables and by
/// trying each rule in order: nanoseconds per connection, each way.
fn rule_lookup_cost() -> (usize, f64, f64) {
    use clawwatch_plugin::net::destination::{Ports, Protocol, Rule};
    use clawwatch_plugin::net::{Destination, Proto, RuleSet};
    let rules = 1000;
    let rule = |i: usize| -> Rule {
        let destination = match i % 4 {
            0 => format!("api{i}.saas.example"),
            1 => format!("*.tenant{i}.example"),
            2 => format!("**.zone{i}.example"),
            _ => format!("10.{}.{}.0/24", 40 + i / 250, i % 250),
        };
        Rule {
            protocol: Protocol::Tcp,
            port: Ports {
                low: 443,
                high: 443,
            },
            destination: Destination::parse(&destination).expect("a valid destination"),
        }
    };
    let set = RuleSet::new((0..rules).map(rule).collect());
    // Half are listed (anywhere in the list), half are not (every rule tried).
    let names: Vec<String> = (0..rules)
        .map(|i| match i % 2 {
            0 => format!("api{}.saas.example", i / 4 * 4),
            _ => format!("cdn.unlisted{i}.example"),
        })
        .collect();
    let ip: std::net::IpAddr = "93.184.216.34".parse().expect("an address");
    let time = |tables: bool| {
        let started = Instant::now();
        let mut found = 0usize;
        for _ in 0..20 {
            for name in &names {
                let names = [name.as_str()];
                let rule = if tables {
                    set.first_allowing(Proto::Tcp, 443, ip, &names)
                } else {
                    set.first_allowing_in_order(Proto::Tcp, 443, ip, &names)
                };
                found += usize::from(rule.is_some());
            }
        }
        std::hint::black_box(found);
        started.elapsed().as_secs_f64() * 1e9 / (20 * names.len()) as f64
    };
    (rules, time(true), time(false))
}

/// The peer to beat: what a naive enricher costs with no detection at all:
/// each line parsed into a `serde_json::Value`, a constant note inserted,
/// the value written back (a line that is not an object is wrapped).
fn naive_enrich(batch: &[u8], out: &mut Vec<u8>) {
    out.clear();
    for line in batch.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut value = match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(map)) => serde_json::Value::Object(map),
            _ => serde_json::json!({ "raw": String::from_utf8_lossy(line) }),
        };
        value["clawwatch"] = serde_json::json!({ "verdict": "allow" });
        serde_json::to_writer(&mut *out, &value).expect("writing to a Vec");
        out.push(b'\n');
    }
}

/// A small deterministic generator: the same records on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const AGENTS: u64 = 2_000;
const START_NS: u64 = 1_795_530_600_000_000_000;

fn agent_ip(i: u64) -> String {
    format!("10.20.{}.{}", i / 250, i % 250 + 2)
}

/// A day-in-the-life mix of 2,000 agents: mostly allowed goflow2 flows, some
/// DNS, a few forbidden, inbound, unknown-agent and malformed records.
pub fn sample_lines(records: usize) -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut lines: Vec<String> = Vec::with_capacity(records);
    for i in 0..AGENTS {
        lines.push(format!(
            r#"{{"type":"agent.spawn","ts":"2026-11-24T14:29:00Z","agent_id":"agent-{i:04}","agent_type":"data_collector_v1","deployment":"staging","ip":"{}","task_id":"t-{i}","expected_lifetime_minutes":1500}}"#,
            agent_ip(i)
        ));
        lines.push(format!(
            r#"{{"type":"dns","ts":"2026-11-24T14:29:30Z","client_ip":"{}","resolver_ip":"10.0.0.53","qname":"api.internal.example.net","qtype":"A","rcode":"NOERROR","answers":[{{"data":"93.184.216.34","ttl":36000}}]}}"#,
            agent_ip(i)
        ));
    }
    let mut t = START_NS;
    while lines.len() < records {
        // About a day for a million records: ~20 connections an hour per agent.
        t += 60_000_000 + rng.below(50_000_000);
        let agent = agent_ip(rng.below(AGENTS));
        let sport = 32_768 + rng.below(28_000);
        let roll = rng.below(100);
        let (src, dst, sp, dp, proto) = match roll {
            0..=1 => {
                lines.push(format!(
                    r#"{{"type":"dns","ts":{},"client_ip":"{agent}","resolver_ip":"10.0.0.53","qname":"api.internal.example.net","qtype":"A","rcode":"NOERROR","answers":[{{"data":"93.184.216.34","ttl":36000}}]}}"#,
                    t / 1_000_000_000
                ));
                continue;
            }
            2 => {
                lines.push(format!(
                    r#"{{"message":"agent log line {t}","level":"info"}}"#
                ));
                continue;
            }
            3 => {
                lines.push(format!(
                    r#"{{"time_flow_start_ns":{t},"src_addr":"{agent}","dst_addr":"#
                ));
                continue;
            }
            4..=87 => (
                agent.clone(),
                "93.184.216.34".to_string(),
                sport,
                443,
                "TCP",
            ),
            88..=91 => (
                agent.clone(),
                format!("203.0.113.{}", rng.below(8)),
                sport,
                8443,
                "TCP",
            ),
            92..=95 => (agent.clone(), "10.0.0.53".to_string(), sport, 53, "UDP"),
            96..=98 => (
                "93.184.216.34".to_string(),
                agent.clone(),
                443,
                sport,
                "TCP",
            ),
            _ => (
                format!("10.20.200.{}", rng.below(200)),
                "198.51.100.7".to_string(),
                sport,
                443,
                "TCP",
            ),
        };
        let bytes = 200 + rng.below(60_000);
        lines.push(format!(
            r#"{{"type":"IPFIX","time_received_ns":{},"sequence_num":{},"sampling_rate":0,"sampler_address":"10.0.0.1","time_flow_start_ns":{t},"time_flow_end_ns":{},"bytes":{bytes},"packets":{},"src_addr":"{src}","dst_addr":"{dst}","etype":"IPv4","proto":"{proto}","src_port":{sp},"dst_port":{dp},"in_if":3,"out_if":4,"src_mac":"0a:58:0a:14:00:0f","dst_mac":"0a:58:0a:14:00:01","tcp_flags":27}}"#,
            t + 60_000_000_000,
            lines.len(),
            t + 1_500_000_000,
            bytes / 1200 + 1
        ));
    }
    // Fewer records than the fleet's spawns and first lookups: the first ones.
    lines.truncate(records);
    lines
}

/// [`sample_lines`] in batches of NDJSON.
fn generate(records: usize, batch_records: usize) -> Vec<Vec<u8>> {
    sample_lines(records)
        .chunks(batch_records)
        .map(|chunk| {
            let mut batch = Vec::with_capacity(chunk.iter().map(|l| l.len() + 1).sum());
            for line in chunk {
                batch.extend_from_slice(line.as_bytes());
                batch.push(b'\n');
            }
            batch
        })
        .collect()
}

struct Measured {
    elapsed: Duration,
    output_hash: u64,
    /// Allocations made while timed (other threads' included: meaningful
    /// for the paths that run on this thread alone), when counted.
    allocations: Option<usize>,
}

/// Times `process` over every batch. It writes into a buffer that lives across
/// batches, so a path able to reuse it (the native engine) is not charged for
/// allocating a fresh one per batch.
fn measure(batches: &[Vec<u8>], mut process: impl FnMut(&[u8], &mut Vec<u8>)) -> Measured {
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    let mut elapsed = Duration::ZERO;
    let mut allocations = Some(0);
    let mut out = Vec::new();
    for batch in batches {
        // Only the engine call is timed; checking that both paths agree is not.
        let allocated = heap::allocations();
        let started = Instant::now();
        process(batch, &mut out);
        elapsed += started.elapsed();
        allocations = allocations
            .zip(heap::allocations().zip(allocated))
            .map(|(sum, (now, before))| sum + (now - before));
        out.hash(&mut hasher);
    }
    Measured {
        elapsed,
        output_hash: hasher.finish(),
        allocations,
    }
}

/// The bound of the full bench's time-bounded row: the operator's
/// --batch-timeout-ms, or the default where it is 0 (the unbounded row is
/// measured beside it).
fn bounded_timeout(opts: &BenchOptions) -> Option<Duration> {
    opts.limits.batch_timeout.or(Some(Duration::from_secs(10)))
}

/// Times the component over every batch, bounded by `timeout` or not at all.
fn measure_component(
    opts: &BenchOptions,
    batches: &[Vec<u8>],
    timeout: Option<Duration>,
) -> Result<Measured> {
    let runtime = Arc::new(Runtime::load(
        opts.component.as_deref(),
        opts.cache_dir.as_deref(),
        timeout.is_some(),
    )?);
    let limits = Limits {
        batch_timeout: timeout,
        ..opts.limits.clone()
    };
    let mut monitor =
        Monitor::new(runtime, &opts.policy_text, limits).map_err(|e| e.explain("policy"))?;
    Ok(measure(batches, |batch, out| {
        *out = monitor.process(batch).ndjson
    }))
}

pub fn run(opts: BenchOptions) -> Result<()> {
    ensure!(
        opts.records > 0 && opts.batch_records > 0,
        "--records and --batch-records must be at least 1"
    );
    eprintln!("generating {} records...", opts.records);
    let batches = generate(opts.records, opts.batch_records);
    let total_bytes: usize = batches.iter().map(Vec::len).sum();
    let records = batches
        .iter()
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .sum::<usize>();

    if opts.component_only {
        // As `run` uses it: `--batch-timeout-ms 0` is unbounded here too.
        let measured = measure_component(&opts, &batches, opts.limits.batch_timeout)?;
        println!(
            "component: {records} records in {:.3} s, {:.0} records/s",
            measured.elapsed.as_secs_f64(),
            records as f64 / measured.elapsed.as_secs_f64(),
        );
        return Ok(());
    }
    eprintln!("native engine...");
    let mut engine = Engine::new(&opts.policy_text).map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let native = measure(&batches, |batch, out| {
        out.clear();
        engine.process_ndjson(batch, out);
    });
    let native_stats = engine.stats();
    drop(engine);
    let per_record = |m: &Measured| {
        m.allocations.map_or(NOT_COUNTED.to_string(), |n| {
            format!("{:.2}", n as f64 / records as f64)
        })
    };
    if opts.native_only {
        println!(
            "native: {records} records in {:.3} s, {:.0} records/s, allocations per record: {}",
            native.elapsed.as_secs_f64(),
            records as f64 / native.elapsed.as_secs_f64(),
            per_record(&native)
        );
        return Ok(());
    }
    eprintln!("naive enricher...");
    let naive = measure(&batches, naive_enrich);
    // Measured while nothing else allocates: before any component is loaded.
    let agents = 10_000;
    let cost = state_cost(&opts.policy_text, agents)?;
    let lookup = rule_lookup_cost();

    // The component as `run` uses it (CPU-bounded by epoch checks), and without
    // the bound, so the price of the bound is visible.
    let mut component_paths = Vec::new();
    for (name, timeout) in [("component", bounded_timeout(&opts)), ("unbounded", None)] {
        eprintln!("{name}...");
        component_paths.push((name, measure_component(&opts, &batches, timeout)?));
    }

    let rate = |m: &Measured| records as f64 / m.elapsed.as_secs_f64();
    let mbps = |m: &Measured| total_bytes as f64 / m.elapsed.as_secs_f64() / 1e6;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "records: {records} ({:.1} MB, {} per batch; {} alerts, {} findings natively)",
        total_bytes as f64 / 1e6,
        opts.batch_records,
        native_stats.alerts,
        native_stats.findings
    );
    let _ = writeln!(
        report,
        "{:<10} {:>14} {:>10} {:>10} {:>16} {:>14}",
        "path", "records/s", "MB/s", "seconds", "time vs native", "allocs/record"
    );
    let paths = [("native", &native), ("naive", &naive)]
        .into_iter()
        .chain(component_paths.iter().map(|(name, m)| (*name, m)));
    for (name, m) in paths {
        let ratio = m.elapsed.as_secs_f64() / native.elapsed.as_secs_f64();
        // The component's allocations are in its own linear memory, not counted here.
        let allocs = match (name, m.allocations) {
            ("native" | "naive", Some(n)) => format!("{:.2}", n as f64 / records as f64),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            report,
            "{name:<10} {:>14.0} {:>10.1} {:>10.3} {:>15.2}x {allocs:>14}",
            rate(m),
            mbps(m),
            m.elapsed.as_secs_f64(),
            ratio
        );
    }
    let _ = writeln!(
        report,
        "(naive: a serde_json parse-insert-serialise enricher with no detection, the peer to beat; component: CPU-bounded by --batch-timeout-ms, as `run` uses it; unbounded: --batch-timeout-ms 0)"
    );
    if native.allocations.is_none() {
        let _ = writeln!(report, "allocations: {NOT_COUNTED}");
    }
    let heap = cost
        .heap_per_agent
        .zip(cost.restored_heap_per_agent)
        .map_or(format!("heap {NOT_COUNTED}"), |(live, restored)| {
            format!("{live:.0} heap bytes ({restored:.0} restored from its snapshot)")
        });
    let _ = writeln!(
        report,
        "state: {heap} per active agent ({agents} agents with a plan, 3 DNS names, 30 connections and a heartbeat each)"
    );
    let _ = writeln!(
        report,
        "snapshot of those {agents} agents: {:.1} MB ({:.0} bytes per agent), export {:.0} ms, restore {:.0} ms (native)",
        cost.snapshot_bytes as f64 / 1e6,
        cost.snapshot_bytes as f64 / agents as f64,
        cost.export.as_secs_f64() * 1000.0,
        cost.restore.as_secs_f64() * 1000.0
    );
    let parts: Vec<String> = (cost.snapshot_parts.iter())
        .filter(|(_, bytes)| *bytes as f64 / agents as f64 >= 1.0)
        .map(|(part, bytes)| format!("{part} {:.0}", *bytes as f64 / agents as f64))
        .collect();
    let _ = writeln!(
        report,
        "snapshot bytes per agent by part: {}",
        parts.join(", ")
    );
    let (rules, tables_ns, in_order_ns) = lookup;
    let _ = writeln!(
        report,
        "finding the admitting rule among {rules}: {tables_ns:.0} ns with the policy's lookup tables, {in_order_ns:.0} ns trying each rule in order"
    );
    let busy = agents / BUSY_ONE_IN;
    let _ = writeln!(
        report,
        "changes after {busy} of them made one more connection: {:.1} KB ({:.0} bytes per busy agent, {:.1}% of the snapshot), export {:.1} ms",
        cost.changes_bytes as f64 / 1e3,
        cost.changes_bytes as f64 / busy as f64,
        cost.changes_bytes as f64 * 100.0 / cost.snapshot_bytes as f64,
        cost.changes_export.as_secs_f64() * 1000.0
    );
    let identical = component_paths
        .iter()
        .all(|(_, m)| m.output_hash == native.output_hash);
    let _ = writeln!(
        report,
        "outputs identical: {}",
        if identical { "yes" } else { "NO" }
    );
    print!("{report}");
    ensure!(
        identical,
        "the component's output differs from the native engine's"
    );
    Ok(())
}

/// `clawwatch bench`: the engine natively and as a component, or through
/// Fluent Bit, or only the generated records written out.
pub fn command(args: crate::cli::BenchArgs) -> Result<()> {
    use anyhow::Context as _;
    anyhow::ensure!(args.records > 0, "--records must be at least 1");
    if let Some(path) = &args.write_records {
        let mut text = sample_lines(args.records).join("\n");
        text.push('\n');
        return std::fs::write(path, text).with_context(|| format!("writing {}", path.display()));
    }
    let (_, policy_text) = args.engine.policy()?;
    if let Some(fluent_bit) = args.fluent_bit {
        let wamrc = args.wamrc.or_else(|| {
            let beside = fluent_bit.with_file_name("wamrc");
            beside.is_file().then_some(beside)
        });
        return super::fluent_bit::run_bench(super::fluent_bit::FluentBitBench {
            fluent_bit,
            wamrc,
            records: sample_lines(args.records),
            policy_text,
        });
    }
    if args.fluent_bit_operators {
        return super::fluent_bit::operators::run(&sample_lines(args.records), &policy_text);
    }
    run(BenchOptions {
        records: args.records,
        native_only: args.native_only,
        component_only: args.component_only,
        batch_records: args.engine.batch_records,
        policy_text,
        component: args.engine.component.clone(),
        cache_dir: args.engine.cache_dir(),
        limits: args.engine.limits(),
    })
}
