//! An allowed record costs no heap allocation once its agent's state exists:
//! the engine reads the keys in place, judges against precompiled policy,
//! updates counters it already holds and writes the note straight into the
//! output buffer. Counted by a global allocator in this test binary only
//! (the production binaries carry none); counts, not timings, so the
//! machine's noise cannot make it pass or fail.

use clawwatch_plugin::Engine;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Allocations (and reallocations) made by this thread: each test counts
    /// only its own, whatever the others running beside it do.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const POLICY: &str = r#"
[monitor]
agent_subnets = ["10.20.0.0/16"]
corp_resolvers = ["10.0.0.53"]

[agent_profile."fetcher"]
allowed_outbound = [
{ protocol = "TCP", port = 443, destination = "**.example.edu" },
{ protocol = "TCP", port = 8443, destination = "10.30.0.0/24" },
{ protocol = "UDP", port = 53, destination = "10.0.0.53" },
]
"#;

/// One minute of an agent's allowed traffic, in the shapes flow exporters and
/// resolvers log it: connections to an allowed name (a generic flow record)
/// and to an allowed subnet (goflow2's IPFIX record), and, with `dns`, a DNS
/// answer for the name.
fn minute(agent: u32, minute: u32, dns: bool) -> String {
    let ip = format!("10.20.1.{agent}");
    let ts = format!("2026-11-24T{:02}:{:02}", 15 + minute / 60, minute % 60);
    let ns = 1_795_532_400_000_000_000u64 + u64::from(minute) * 60_000_000_000;
    let mut lines = String::new();
    if dns {
        lines.push_str(&format!(
            "{{\"type\":\"dns\",\"ts\":\"{ts}:01Z\",\"client_ip\":\"{ip}\",\"resolver_ip\":\"10.0.0.53\",\"qname\":\"data.example.edu\",\"qtype\":\"A\",\"rcode\":\"NOERROR\",\"answers\":[{{\"data\":\"93.184.216.{agent}\",\"ttl\":3600}}]}}\n"
        ));
    }
    for i in 0..4u32 {
        let port = 40_000 + minute * 8 + i;
        lines.push_str(&format!(
            "{{\"type\":\"flow\",\"ts\":\"{ts}:{:02}Z\",\"src_ip\":\"{ip}\",\"src_port\":{port},\"dst_ip\":\"93.184.216.{agent}\",\"dst_port\":443,\"proto\":\"TCP\",\"bytes\":1800}}\n",
            10 + i
        ));
        lines.push_str(&format!(
            "{{\"type\":\"IPFIX\",\"time_received_ns\":{},\"sequence_num\":{minute},\"sampling_rate\":0,\"sampler_address\":\"10.0.0.1\",\"time_flow_start_ns\":{},\"time_flow_end_ns\":{},\"bytes\":40468,\"packets\":34,\"src_addr\":\"{ip}\",\"dst_addr\":\"10.30.0.{agent}\",\"etype\":\"IPv4\",\"proto\":\"TCP\",\"src_port\":{},\"dst_port\":8443,\"in_if\":3,\"out_if\":4,\"src_mac\":\"0a:58:0a:14:00:0f\",\"dst_mac\":\"0a:58:0a:14:00:01\",\"tcp_flags\":27}}\n",
            ns + 30_000_000_000 + u64::from(i) * 1_000_000_000,
            ns + 20_000_000_000 + u64::from(i) * 1_000_000_000,
            ns + 21_500_000_000 + u64::from(i) * 1_000_000_000,
            port + 4
        ));
    }
    lines
}

const AGENTS: std::ops::Range<u32> = 2..12;

/// Minutes of traffic before the count: past an hour, so each agent's hour
/// of volume and its list of connections (capped) have stopped growing.
const WARM_UP_MINUTES: u32 = 70;

/// An engine that knows ten agents and has seen [`WARM_UP_MINUTES`] of their
/// traffic, and the next three minutes, to count.
fn warmed_up(dns: bool) -> (Engine, String) {
    let mut engine = Engine::new(POLICY).unwrap();
    let mut warm_up = String::new();
    for agent in AGENTS {
        warm_up.push_str(&format!(
            "{{\"type\":\"agent.spawn\",\"ts\":\"2026-11-24T15:00:00Z\",\"agent_id\":\"fetcher-{agent}\",\"agent_type\":\"fetcher\",\"ip\":\"10.20.1.{agent}\"}}\n"
        ));
    }
    // The warm-up always resolves the name, so the flows are judged by it.
    for m in 0..WARM_UP_MINUTES {
        for agent in AGENTS {
            warm_up.push_str(&minute(agent, m, true));
        }
    }
    let mut out = Vec::new();
    engine.process_ndjson(warm_up.as_bytes(), &mut out);
    assert_all_allowed(&out);
    let mut next = String::new();
    for m in WARM_UP_MINUTES..WARM_UP_MINUTES + 3 {
        for agent in AGENTS {
            next.push_str(&minute(agent, m, dns));
        }
    }
    (engine, next)
}

fn assert_all_allowed(out: &[u8]) {
    let text = std::str::from_utf8(out).unwrap();
    assert!(
        text.lines().all(|l| l.contains("\"verdict\":\"allow\"")),
        "the traffic is all allowed:\n{text}"
    );
}

/// Allocations made processing `records` (in one batch) into an output
/// buffer already large enough, with the records' notes checked.
fn allocations_for(engine: &mut Engine, records: &str) -> u64 {
    let mut out = Vec::with_capacity(1 << 20);
    let before = allocations();
    engine.process_ndjson(records.as_bytes(), &mut out);
    let made = allocations() - before;
    assert_eq!(
        out.iter().filter(|&&b| b == b'\n').count(),
        records.lines().count()
    );
    assert_all_allowed(&out);
    made
}

#[test]
fn an_allowed_flow_allocates_nothing_once_its_agent_is_known() {
    let (mut engine, flows) = warmed_up(false);
    let made = allocations_for(&mut engine, &flows);
    assert_eq!(
        made,
        0,
        "{made} allocations for {} allowed flow records",
        flows.lines().count()
    );
}

/// A DNS answer still costs a few: the question's name and each answer's
/// address are owned strings in the decoded query, and the `answers` array
/// is read as a list of objects. The answer's name and the tunnelling
/// window are found without a copy; what is left is counted here so that
/// more cannot creep in unseen.
#[test]
fn an_allowed_dns_answer_allocates_at_most_five_times() {
    let (mut engine, mixed) = warmed_up(true);
    let answers = mixed.lines().filter(|l| l.contains("\"dns\"")).count() as u64;
    let made = allocations_for(&mut engine, &mixed);
    assert!(
        made <= 5 * answers,
        "{made} allocations for {answers} DNS answers (and flows that should cost none)"
    );
}
