//! `clawwatch run` between Kafka topics, against a real Kafka-protocol
//! broker (tansu, in memory, on loopback): every record read is written once,
//! keyed by its agent, with the verdicts of the same records read from a
//! file; incidents go to their own topic; offsets are committed only for
//! what is out, so a second run of the group reads nothing again.

mod common;

use common::{clawwatch, command, free_port, repo, tansu};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Broker {
    child: Child,
    address: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The topics the single-instance tests use.
const TOPICS: &[(&str, &str)] = &[
    ("records", "1"),
    ("enriched", "3"),
    ("incidents", "1"),
    ("traffic", "4"),
    ("keyed", "4"),
];

fn start_broker(tansu: &std::path::Path, topics: &[(&str, &str)]) -> Broker {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let url = format!("tcp://{address}");
    let child = command(tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "tansu did not listen on {address}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let broker = Broker { child, address };
    for &(topic, partitions) in topics {
        let out = command(tansu)
            .args([
                "topic",
                "create",
                "--broker",
                &url,
                "--partitions",
                partitions,
                topic,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    broker
}

fn produce(brokers: &str, topic: &str, lines: &[&[u8]]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for line in lines {
            producer
                .send(
                    FutureRecord::<(), [u8]>::to(topic).payload(*line),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
}

/// Every message of `topic` (all partitions, from the start) until `count`
/// arrived or `within` passed: (key, payload).
fn consume(
    brokers: &str,
    topic: &str,
    count: usize,
    within: Duration,
) -> Vec<(Option<String>, String)> {
    consume_from_partitions(brokers, topic, count, within)
        .into_iter()
        .map(|(_, key, payload)| (key, payload.to_string()))
        .collect()
}

/// [`consume`], with each message's partition, the payload as bytes shown lossily.
fn consume_from_partitions(
    brokers: &str,
    topic: &str,
    count: usize,
    within: Duration,
) -> Vec<(i32, Option<String>, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut got = Vec::new();
    let started = Instant::now();
    while got.len() < count && started.elapsed() < within {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            got.push((
                m.partition(),
                m.key().map(text),
                text(m.payload().unwrap_or_default()),
            ));
        }
    }
    got
}

fn run_clawwatch(brokers: &str, policy: &str) -> Child {
    command(env!("CARGO_BIN_EXE_clawwatch"))
        .args(["run", "--policy", policy, "--kafka-brokers", brokers])
        .args([
            "--kafka-group",
            "clawwatch-test",
            "--kafka-input",
            "records",
        ])
        .args([
            "--kafka-output",
            "enriched",
            "--kafka-incidents",
            "incidents",
        ])
        .args(["--max-latency-ms", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stop(child: Child) -> String {
    // SIGTERM: clawwatch hands on what it read, writes it, then exits.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The offset `group` committed for partition 0 of `topic`.
fn committed(brokers: &str, group: &str, topic: &str) -> Offset {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .unwrap();
    committed.find_partition(topic, 0).unwrap().offset()
}

/// The number before `word` in `clawwatch route`'s summary ("N records to
/// T: D traffic (…), C control, each copied into all P partitions").
fn count_before(said: &str, word: &str) -> usize {
    let at = said
        .find(word)
        .unwrap_or_else(|| panic!("{word} in {said}"));
    said[..at]
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap()
}

/// `clawwatch route` of the bundled scenario file to the topic `traffic`:
/// its summary.
fn route_scenario(brokers: &str) -> String {
    let out = clawwatch(&[
        "route",
        "--policy",
        "testdata/policy.toml",
        "--input",
        "testdata/scenario/records.ndjson",
        "--kafka-brokers",
        brokers,
        "--kafka-output",
        "traffic",
    ]);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The records without their order across partitions: sorted.
fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

#[test]
fn a_kafka_run_writes_every_record_once_keyed_by_agent_and_commits_only_what_is_out() {
    let Some(tansu) = tansu() else { return };
    let broker = start_broker(&tansu, TOPICS);
    let policy = repo().join("testdata/policy.toml");
    let policy = policy.to_str().unwrap();
    // Not all UTF-8, and one blank: the scenario has damaged lines, each a
    // record passed through tagged; one message each.
    let scenario = std::fs::read(repo().join("testdata/scenario/records.ndjson")).unwrap();
    let lines: Vec<&[u8]> = scenario
        .split_inclusive(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\n").unwrap_or(l))
        .collect();

    // The same records read from a file: what the topics must hold.
    let expected = clawwatch(&[
        "run",
        "--policy",
        policy,
        "--input",
        "testdata/scenario/records.ndjson",
    ]);
    let expected: Vec<Value> = String::from_utf8(expected.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let is_incident = |v: &Value| {
        matches!(
            v["clawwatch"]["stream"].as_str(),
            Some("incident" | "audit")
        )
    };
    let (expected_incidents, expected_records): (Vec<&Value>, Vec<&Value>) =
        expected.iter().partition(|v| is_incident(v));
    assert_eq!(expected_records.len(), lines.len());
    assert!(
        !expected_incidents.is_empty(),
        "the scenario opens incidents"
    );

    produce(&broker.address, "records", &lines);
    let first = run_clawwatch(&broker.address, policy);
    let minute = Duration::from_secs(60);
    let records = consume(&broker.address, "enriched", expected_records.len(), minute);
    let incidents = consume(
        &broker.address,
        "incidents",
        expected_incidents.len(),
        minute,
    );
    let said = stop(first);
    assert_eq!(records.len(), expected_records.len(), "{said}");
    assert_eq!(incidents.len(), expected_incidents.len(), "{said}");

    let text = |vs: &[&Value]| sorted(vs.iter().map(|v| v.to_string()).collect());
    let got = |ms: &[(Option<String>, String)]| {
        sorted(
            ms.iter()
                .map(|(_, p)| serde_json::from_str::<Value>(p).unwrap().to_string())
                .collect(),
        )
    };
    assert_eq!(
        got(&records),
        text(&expected_records),
        "same records, same verdicts"
    );
    assert_eq!(got(&incidents), text(&expected_incidents));
    // Keyed by the agent clawwatch attributed each to; no agent, no key.
    for (key, payload) in records.iter().chain(&incidents) {
        let v: Value = serde_json::from_str(payload).unwrap();
        let agent = v["clawwatch"]["agent"]["id"].as_str().map(str::to_string);
        assert_eq!(key, &agent, "{payload}");
    }
    assert!(records.iter().filter(|(k, _)| k.is_some()).count() > lines.len() / 2);

    // Committed: the group's offset is past every record read.
    assert_eq!(
        committed(&broker.address, "clawwatch-test", "records"),
        Offset::Offset(lines.len() as i64)
    );

    // A second member of the group starts from there: only a new record is read.
    let extra = r#"{"type":"agent.spawn","ts":"2026-11-24T18:00:00Z","agent_id":"late-1","agent_type":"data_collector_v1","ip":"10.20.9.9"}"#;
    produce(&broker.address, "records", &[extra.as_bytes()]);
    let second = run_clawwatch(&broker.address, policy);
    let again = consume(
        &broker.address,
        "enriched",
        expected_records.len() + 1,
        minute,
    );
    assert_eq!(again.len(), expected_records.len() + 1);
    std::thread::sleep(Duration::from_secs(2));
    stop(second);
    // Anything read twice would be here by now.
    let again = consume(
        &broker.address,
        "enriched",
        usize::MAX,
        Duration::from_secs(5),
    );
    assert_eq!(
        again.len(),
        expected_records.len() + 1,
        "nothing read twice"
    );
    assert!(again.iter().any(|(k, _)| k.as_deref() == Some("late-1")));
}

/// `clawwatch route` keys the scenario's traffic by the agent-side address
/// and copies each control record into every partition: each partition
/// holds its traffic and all control in the order they were read, one
/// agent's traffic in one partition.
#[test]
fn route_keys_traffic_by_agent_address_and_copies_control_into_every_partition() {
    let Some(tansu) = tansu() else { return };
    let broker = start_broker(&tansu, TOPICS);
    let scenario = std::fs::read(repo().join("testdata/scenario/records.ndjson")).unwrap();
    let lines: Vec<String> = scenario
        .split_inclusive(|b| *b == b'\n')
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\n").unwrap_or(l)).into_owned())
        .collect();
    let said = route_scenario(&broker.address);
    assert!(said.contains(&format!("{} records", lines.len())), "{said}");
    let (data, lifecycle) = (
        count_before(&said, " traffic ("),
        count_before(&said, " control,"),
    );
    assert_eq!(data + lifecycle, lines.len(), "{said}");
    let partitions = 4;
    let got = consume_from_partitions(
        &broker.address,
        "traffic",
        data + lifecycle * partitions,
        Duration::from_secs(60),
    );
    assert_eq!(got.len(), data + lifecycle * partitions, "{said}");
    let in_partition = |p: i32| -> Vec<&String> {
        (got.iter())
            .filter(|(at, _, _)| *at == p)
            .map(|(_, _, payload)| payload)
            .collect()
    };
    // Control: the records every partition holds.
    let control: Vec<&String> = (lines.iter())
        .filter(|l| (0..partitions as i32).all(|p| in_partition(p).contains(l)))
        .collect();
    assert_eq!(control.len(), lifecycle, "{said}");
    assert!(lifecycle > 10 && data > 100, "{said}");
    for p in 0..partitions as i32 {
        let held = in_partition(p);
        // The input, less the other partitions' traffic, in input order.
        let expected: Vec<&String> = (lines.iter())
            .filter(|l| control.contains(l) || held.contains(l))
            .collect();
        assert_eq!(held, expected, "partition {p}");
    }

    let mut partition_of = std::collections::HashMap::new();
    let mut keys = std::collections::HashSet::new();
    for (partition, key, payload) in &got {
        if control.contains(&payload) {
            let record: Value = serde_json::from_str(payload).unwrap();
            assert_eq!(key.as_deref(), record["agent_id"].as_str(), "{payload}");
            continue;
        }
        let Some(key) = key else { continue };
        let ip: std::net::IpAddr = key.parse().unwrap();
        assert!(
            matches!(ip, std::net::IpAddr::V4(v4) if v4.octets()[..2] == [10, 20]),
            "{key}"
        );
        assert!(
            payload.contains(key.as_str()),
            "keyed by an address of its own: {payload}"
        );
        assert_eq!(
            *partition_of.entry(key.clone()).or_insert(*partition),
            *partition,
            "{key}"
        );
        keys.insert(key.clone());
    }
    assert!(keys.len() > 3, "several agents: {keys:?}");
    assert!(
        partition_of
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1,
        "spread over partitions"
    );
}

/// One instance reading a topic `clawwatch route` wrote, without a group's
/// changelog, judges each control record once, not once per partition's
/// copy: every record is written once.
#[test]
fn one_instance_on_a_routed_topic_writes_each_record_once() {
    let Some(tansu) = tansu() else { return };
    let broker = start_broker(&tansu, TOPICS);
    let brokers = broker.address.as_str();
    let said = route_scenario(brokers);
    let records = count_before(&said, " records to");
    assert!(count_before(&said, " control,") > 10, "{said}");
    let run = command(env!("CARGO_BIN_EXE_clawwatch"))
        .args(["run", "--policy", "testdata/policy.toml"])
        .args(["--kafka-brokers", brokers, "--kafka-group", "single"])
        .args(["--kafka-input", "traffic", "--kafka-output", "enriched"])
        .args(["--kafka-incidents", "incidents", "--max-latency-ms", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let written = gather(
        brokers,
        "enriched",
        records,
        Duration::from_secs(3),
        Duration::from_secs(60),
    );
    stop(run);
    assert_eq!(written.len(), records, "{said}");
}

/// `clawwatch route --kafka-input` reads what shippers' Kafka sinks write
/// (one record per message, unkeyed) and routes it as it routes a file: the
/// same records in the same partitions in the same order; and it commits
/// what it routed.
#[test]
fn route_reads_a_topic_shippers_write_as_it_reads_a_file_and_commits_it() {
    let Some(tansu) = tansu() else { return };
    let broker = start_broker(&tansu, TOPICS);
    let brokers = broker.address.as_str();
    let scenario = std::fs::read(repo().join("testdata/scenario/records.ndjson")).unwrap();
    // Each line a message, the blank one too.
    let lines: Vec<&[u8]> = scenario
        .strip_suffix(b"\n")
        .unwrap_or(&scenario)
        .split(|b| *b == b'\n')
        .collect();
    produce(brokers, "records", &lines);
    let said = route_scenario(brokers);
    let routed = command(env!("CARGO_BIN_EXE_clawwatch"))
        .args(["route", "--policy", "testdata/policy.toml"])
        .args(["--kafka-brokers", brokers, "--kafka-input", "records"])
        .args(["--kafka-output", "keyed"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let expected = count_before(&said, " traffic (") + count_before(&said, " control,") * 4;
    let minute = Duration::from_secs(60);
    let file_routed = consume_from_partitions(brokers, "traffic", expected, minute);
    let topic_routed = consume_from_partitions(brokers, "keyed", expected, minute);
    let summary = stop(routed);
    assert_eq!(topic_routed.len(), expected, "{summary}");
    assert!(
        summary.contains(&said["clawwatch route: ".len()..].replace(" to traffic:", " to keyed:")),
        "the same counts:\n{said}\n{summary}"
    );
    // Unkeyed records go to a partition the producer picks at random.
    let keyed_in = |all: &[(i32, Option<String>, String)], p: i32| -> Vec<String> {
        (all.iter())
            .filter(|(at, key, _)| *at == p && key.is_some())
            .map(|(_, _, payload)| payload.clone())
            .collect()
    };
    for p in 0..4 {
        assert_eq!(
            keyed_in(&topic_routed, p),
            keyed_in(&file_routed, p),
            "partition {p}"
        );
    }
    assert!(keyed_in(&topic_routed, 0).len() > 10);
    // What it routed is committed: a restart reads on from there.
    assert_eq!(
        committed(brokers, "clawwatch-route", "records"),
        Offset::Offset(lines.len() as i64)
    );
}

/// 2026-11-24T14:00:00Z plus `secs`.
fn at(secs: u32) -> String {
    format!(
        "2026-11-24T{:02}:{:02}:{:02}Z",
        14 + secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A simulated fleet of `agents` workers (testdata/cases/policy.toml) over
/// 100 minutes, in event-time order, as shippers would deliver it: each
/// spawns, resolves its API, calls it every 4 minutes, reports a heartbeat
/// every 10 minutes and ends before its hour is up. Among them: every tenth
/// `…3` makes a call it hides from its heartbeat (`egress.not_allowed`,
/// `heartbeat.mismatch`), `…5` stops reporting (`heartbeat.missing`), `…7`
/// outlives its hour (`lifetime.exceeded`); one address no agent holds
/// calls out (`egress.unknown_agent`). The rest are healthy and must stay quiet.
fn fleet(agents: u32) -> Vec<String> {
    let mut events: Vec<(u32, String)> = Vec::new();
    for i in 0..agents {
        let (id, ip) = (
            format!("w-{i:03}"),
            format!("10.20.{}.{}", 1 + i / 100, 10 + i % 100),
        );
        let jitter = i % 30;
        events.push((jitter, format!(r#"{{"type":"agent.spawn","ts":"{}","agent_id":"{id}","agent_type":"worker","deployment":"prod","ip":"{ip}"}}"#, at(jitter))));
        events.push((jitter + 5, format!(r#"{{"type":"dns","ts":"{}","client_ip":"{ip}","resolver_ip":"10.0.0.53","qname":"api.internal.example.net","qtype":"A","rcode":"NOERROR","answers":[{{"data":"93.184.216.34","ttl":7200}}]}}"#, at(jitter + 5))));
        let flow = |t: u32, dst: &str, port: u32| {
            format!(
                r#"{{"type":"flow","ts":"{}","src_ip":"{ip}","src_port":{port},"dst_ip":"{dst}","dst_port":443,"proto":"TCP","bytes":1500,"packets":6}}"#,
                at(t)
            )
        };
        let last_minute = if i % 10 == 7 { 75 } else { 55 };
        let mut calls = Vec::new();
        for minute in (1..last_minute).step_by(4) {
            let t = minute * 60 + 20 + jitter;
            calls.push(t);
            events.push((t, flow(t, "93.184.216.34", 40000 + minute)));
        }
        if i % 10 == 3 {
            let t = 14 * 60 + 40;
            events.push((t, flow(t, "198.51.100.66", 41000)));
        }
        let last_window = if i % 10 == 5 { 3 } else { 5 };
        for w in 1..=last_window {
            let (start, end) = ((w - 1) * 600, w * 600);
            let count = calls.iter().filter(|t| (start..end).contains(*t)).count();
            let t = end + 1 + jitter;
            events.push((t, format!(r#"{{"type":"agent.heartbeat","ts":"{}","agent_id":"{id}","window_start":"{}","window_end":"{}","connections":[{{"dest":"api.internal.example.net","port":443,"proto":"tcp","count":{count}}}]}}"#, at(t), at(start), at(end))));
        }
        if i % 10 != 7 {
            let t = 56 * 60 + jitter;
            events.push((t, format!(r#"{{"type":"agent.terminate","ts":"{}","agent_id":"{id}","reason":"completed"}}"#, at(t))));
        }
    }
    events.push((1800, format!(r#"{{"type":"flow","ts":"{}","src_ip":"10.20.9.99","src_port":50000,"dst_ip":"93.184.216.34","dst_port":443,"proto":"TCP","bytes":900,"packets":4}}"#, at(1800))));
    // Moves every engine's event time past the fleet's last deadlines.
    events.push((6000, format!(r#"{{"type":"agent.spawn","ts":"{}","agent_id":"clock","agent_type":"worker","ip":"10.20.9.200"}}"#, at(6000))));
    events.sort_by_key(|(t, _)| *t);
    events.into_iter().map(|(_, line)| line).collect()
}

/// An output record: the input it was judged from (`clawwatch.source`) and itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Out {
    source: String,
    line: String,
}

/// Everything `topic` holds once at least `min` messages arrived and none
/// came for `quiet` (all partitions, from the start).
fn gather(brokers: &str, topic: &str, min: usize, quiet: Duration, within: Duration) -> Vec<Out> {
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("gather-{topic}-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let (started, mut last) = (Instant::now(), Instant::now());
    let mut got = Vec::new();
    while started.elapsed() < within && (got.len() < min || last.elapsed() < quiet) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let source = (m.headers().into_iter())
                .flat_map(|h| h.iter())
                .find(|h| h.key == "clawwatch.source")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            let line = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            got.push(Out { source, line });
            last = Instant::now();
        }
    }
    got
}

/// An instance in a group, its log gathered while it runs so the test can
/// wait for what it says (an assignment, a restore).
struct Member {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Member {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `what` occurs in the log more than `seen` times.
    fn wait_for(&self, what: &str, seen: usize, within: Duration) {
        let started = Instant::now();
        while self.log().matches(what).count() <= seen {
            assert!(
                started.elapsed() < within,
                "no new {what:?} within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM: the instance writes what it read, saves, leaves the group.
    fn stop(self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.finish(true)
    }

    /// SIGKILL: no save, no goodbye.
    fn crash(mut self) -> String {
        self.child.kill().unwrap();
        self.finish(false)
    }

    fn finish(self, cleanly: bool) -> String {
        let Member {
            mut child,
            log,
            reader,
        } = self;
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let log = log.lock().unwrap().clone();
        assert!(status.success() || !cleanly, "{status}:\n{log}");
        log
    }
}

fn run_in_group(brokers: &str, group: &str, output: &str, changelog: &str) -> Member {
    use std::io::BufRead;
    let policy = repo().join("testdata/cases/policy.toml");
    let mut child = command(env!("CARGO_BIN_EXE_clawwatch"))
        .args(["run", "--policy", policy.to_str().unwrap()])
        .args(["--kafka-brokers", brokers, "--kafka-group", group])
        .args(["--kafka-input", "traffic"])
        .args(["--kafka-output", output, "--kafka-changelog", changelog])
        .args(["--snapshot-secs", "1", "--batch-records", "32"])
        .env("RUST_LOG", "clawwatch=info,clawwatch::group=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let gathered = log.clone();
    let reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let mut log = gathered.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    Member { child, log, reader }
}

/// A save to or restore from the changelog, as an instance logged it.
#[derive(Debug)]
struct ChangelogEvent {
    /// RFC 3339 UTC: compares as text.
    at: String,
    partition: u32,
    pieces: usize,
    bytes: usize,
}

/// The `what` lines (`saved to the changelog`, `restored from the
/// changelog`) of the instances' logs.
fn changelog_events(logs: &[&str], what: &str) -> Vec<ChangelogEvent> {
    let field = |line: &str, name: &str| -> Option<usize> {
        line.split(&format!(" {name}="))
            .nth(1)?
            .split(' ')
            .next()?
            .parse()
            .ok()
    };
    (logs.iter().flat_map(|log| log.lines()))
        .filter(|line| line.contains(what))
        .map(|line| ChangelogEvent {
            at: line.split(' ').next().unwrap_or_default().to_string(),
            partition: field(line, "partition").expect(line) as u32,
            pieces: field(line, "pieces").expect(line),
            bytes: field(line, "bytes").expect(line),
        })
        .collect()
}

/// The partitions an instance restored from the changelog after `since`
/// (a log timestamp: RFC 3339 UTC, so they compare as text).
fn restored_after(log: &str, since: &str) -> std::collections::BTreeSet<u32> {
    (changelog_events(&[log], "restored from the changelog").into_iter())
        .filter(|restore| restore.at.as_str() > since)
        .map(|restore| restore.partition)
        .collect()
}

/// The partitions an instance was last assigned.
fn last_assigned(log: &str) -> std::collections::BTreeSet<u32> {
    (log.lines().rev())
        .find_map(|l| l.split(" assigned partitions=[").nth(1))
        .map(|list| {
            (list.trim_end_matches(']').split(", "))
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn value(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn is_incident(line: &str) -> bool {
    matches!(
        value(line)["clawwatch"]["stream"].as_str(),
        Some("incident" | "audit")
    )
}

/// What a run wrote, in the terms a SIEM alerts on: each input record's
/// stream, verdict, agent and findings (rule and incident), once (a copy
/// written again after a restore must say the same); the incidents opened
/// and closed, as many times as each was (a copy written again is one); the
/// due findings, which ride on whichever record an engine writes next.
/// Occurrence counts are left out: whether a deadline or a record that
/// arrived at the same moment first reported an incident depends on which
/// the broker delivered first.
struct Written {
    records: std::collections::BTreeMap<String, Value>,
    incidents: Vec<(String, String)>,
    due: std::collections::BTreeSet<String>,
}

fn by_source(outs: &[Out]) -> Written {
    let mut records = std::collections::BTreeMap::new();
    let mut incidents = std::collections::BTreeSet::new();
    let mut due = std::collections::BTreeSet::new();
    for out in outs {
        let v = value(&out.line);
        let note = &v["clawwatch"];
        if is_incident(&out.line) {
            let incident = &note["incident"];
            let (id, status) = (incident["id"].to_string(), incident["status"].to_string());
            incidents.insert((out.source.clone(), id, status));
            continue;
        }
        for d in note["due"].as_array().into_iter().flatten() {
            due.insert(d["incident"].as_str().unwrap().to_string());
        }
        let findings: std::collections::BTreeSet<(String, String)> =
            (note["findings"].as_array().into_iter().flatten())
                .map(|f| (f["rule"].to_string(), f["incident"].to_string()))
                .collect();
        let said = serde_json::json!({
            "stream": note["stream"],
            "verdict": note["verdict"],
            "agent": note["agent"]["id"],
            "findings": findings,
        });
        if let Some(before) = records.insert(out.source.clone(), said.clone()) {
            assert_eq!(before, said, "{} written twice, differently", out.source);
        }
    }
    let mut incidents: Vec<(String, String)> = incidents
        .into_iter()
        .map(|(_, id, status)| (id, status))
        .collect();
    incidents.sort();
    Written {
        records,
        incidents,
        due,
    }
}

#[test]
fn instances_in_a_group_write_what_one_writes_though_one_crashes_and_one_leaves() {
    let Some(tansu) = tansu() else { return };
    let broker = start_broker(
        &tansu,
        &[
            ("traffic", "12"),
            ("alone", "12"),
            ("alone-state", "1"),
            ("shared", "12"),
            ("shared-state", "1"),
        ],
    );
    let brokers = broker.address.as_str();
    let records = fleet(240);
    let file = std::env::temp_dir().join(format!("clawwatch-fleet-{}.ndjson", std::process::id()));
    std::fs::write(&file, records.join("\n") + "\n").unwrap();

    // The three join first, so the fleet's records are shared among them.
    let mut trio: Vec<Member> = (0..3)
        .map(|_| run_in_group(brokers, "trio", "shared", "shared-state"))
        .collect();
    for member in &trio {
        member.wait_for(" assigned partitions=", 0, Duration::from_secs(60));
    }
    std::thread::sleep(Duration::from_secs(2));
    let policy = repo().join("testdata/cases/policy.toml");
    clawwatch(&[
        "route",
        "--policy",
        policy.to_str().unwrap(),
        "--input",
        file.to_str().unwrap(),
        "--kafka-brokers",
        brokers,
        "--kafka-output",
        "traffic",
        // tansu 0.6.0 answers a fetch from inside a record batch with the
        // batch after it: one record per batch, so a partition restored at
        // any offset reads on from exactly there (as on a Kafka broker).
        "--kafka-option",
        "batch.num.messages=1",
    ]);
    let written = |at_least: usize| {
        let got = gather(
            brokers,
            "shared",
            at_least,
            Duration::ZERO,
            Duration::from_secs(120),
        );
        assert!(got.len() >= at_least, "only {} written", got.len());
    };
    // Mid-stream, one leaves: its partitions move, with their state, to
    // the other two.
    written(records.len() / 5);
    let left_log = trio.remove(0).stop();
    // Later, one of those crashes: no save, no goodbye.
    written(records.len() * 2 / 5);
    let crashed = trio.remove(0);
    let survivor = trio.remove(0);
    let killed = Instant::now();
    let crashed_log = crashed.crash();
    let held = last_assigned(&crashed_log);
    assert!(
        !held.is_empty(),
        "the crashed instance held no partitions:\n{crashed_log}"
    );
    let crashed_after = (crashed_log.lines().last())
        .and_then(|l| l.split(' ').next())
        .unwrap_or_default()
        .to_string();
    // The broker drops it session.timeout.ms (10 s) after its last
    // heartbeat (at most 1 s before it died), and the survivor rejoins.
    // tansu 0.6.0 then gives the survivor back only its own partitions (a
    // Kafka broker gives it all twelve); the next member to join makes it
    // share all twelve among the living, as a replacement started by a
    // supervisor would.
    std::thread::sleep(Duration::from_secs(8).saturating_sub(killed.elapsed()));
    let rejoined = survivor.log().matches(" assigned partitions=").count();
    survivor.wait_for(" assigned partitions=", rejoined, Duration::from_secs(60));
    let replacement = run_in_group(brokers, "trio", "shared", "shared-state");
    replacement.wait_for(" assigned partitions=", 0, Duration::from_secs(60));

    let alone = run_in_group(brokers, "alone", "alone", "alone-state");
    let reference = gather(
        brokers,
        "alone",
        records.len(),
        Duration::from_secs(5),
        Duration::from_secs(240),
    );
    alone.stop();
    let shared = gather(
        brokers,
        "shared",
        reference.len(),
        Duration::from_secs(5),
        Duration::from_secs(240),
    );
    let survivor_log = survivor.stop();
    let replacement_log = replacement.stop();
    std::fs::remove_file(&file).ok();

    let expected = by_source(&reference);
    assert_eq!(
        expected.records.len(),
        records.len(),
        "one instance wrote each record once"
    );
    let got = by_source(&shared);
    let missing: Vec<&String> = (expected.records.keys())
        .filter(|s| !got.records.contains_key(*s))
        .collect();
    assert!(
        missing.is_empty(),
        "{} records never written, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for (source, v) in &expected.records {
        assert_eq!(&got.records[source], v, "{source}");
    }
    assert_eq!(got.records.len(), expected.records.len());
    assert_eq!(got.incidents, expected.incidents);
    assert_eq!(got.due, expected.due);
    // State moved with the partitions: those of the one that left to the
    // other two; every one the crashed one held to the survivor or the
    // replacement, from what it saved before it died.
    assert!(
        !(restored_after(&crashed_log, "").is_empty()
            && restored_after(&survivor_log, "").is_empty()),
        "nobody took over the state of the one that left:\n{left_log}\n{crashed_log}\n{survivor_log}"
    );
    // Saves after the first add only the engine's changes, and a restore
    // reads back the whole chain the partition's last save left: as many
    // pieces and bytes. (Whether that last save was a fresh snapshot or
    // changes depends on when the owner stopped; both must come back.)
    let logs = [&left_log, &crashed_log, &survivor_log, &replacement_log].map(String::as_str);
    let saves = changelog_events(&logs, "saved to the changelog");
    assert!(
        saves.iter().any(|save| save.pieces > 1),
        "no save added changes to a snapshot: {saves:?}"
    );
    let restores = changelog_events(&logs, "restored from the changelog");
    assert!(!restores.is_empty());
    for restore in &restores {
        let last_save = (saves.iter())
            .filter(|save| save.partition == restore.partition && save.at < restore.at)
            .max_by(|a, b| a.at.cmp(&b.at));
        assert_eq!(
            last_save.map(|save| (save.pieces, save.bytes)),
            Some((restore.pieces, restore.bytes)),
            "{restore:?} is not what was last saved"
        );
    }
    let mut taken_over = restored_after(&survivor_log, &crashed_after);
    taken_over.extend(restored_after(&replacement_log, ""));
    assert!(
        held.is_subset(&taken_over),
        "the crashed one held {held:?}, restored since: {taken_over:?}\n{survivor_log}\n{replacement_log}"
    );

    // What the fleet did, and only that.
    let mut rules_by_agent: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for out in &reference {
        let v = value(&out.line);
        let note = &v["clawwatch"];
        // An incident key starts with its subject: the agent, or an address.
        let findings = note["findings"].as_array().into_iter().flatten();
        for said in findings.chain(Some(&note["incident"])) {
            let (Some(key), Some(rule)) = (
                said["incident"].as_str().or(said["id"].as_str()),
                said["rule"].as_str(),
            ) else {
                continue;
            };
            let subject = key.split('/').next().unwrap_or_default().to_string();
            rules_by_agent
                .entry(subject)
                .or_default()
                .insert(rule.to_string());
        }
    }
    rules_by_agent.retain(|_, rules| !rules.is_empty());
    for (subject, rules) in &rules_by_agent {
        let misbehaving = match subject.strip_prefix("w-") {
            Some(n) => matches!(n.parse::<u32>().unwrap() % 10, 3 | 5 | 7),
            None => subject == "10.20.9.99",
        };
        assert!(misbehaving, "a healthy agent raised {rules:?}: {subject}");
    }
    let fired = |subject: &str, rule: &str| {
        rules_by_agent
            .get(subject)
            .is_some_and(|r| r.contains(rule))
    };
    assert!(
        fired("w-003", "egress.not_allowed") && fired("w-003", "heartbeat.mismatch"),
        "{rules_by_agent:?}"
    );
    assert!(fired("w-005", "heartbeat.missing"), "{rules_by_agent:?}");
    assert!(fired("w-007", "lifetime.exceeded"), "{rules_by_agent:?}");
    assert!(
        fired("10.20.9.99", "egress.unknown_agent"),
        "{rules_by_agent:?}"
    );
    let unknown = rules_by_agent
        .values()
        .filter(|r| r.contains("egress.unknown_agent"))
        .count();
    assert_eq!(
        unknown, 1,
        "only the address no agent holds: {rules_by_agent:?}"
    );
}
