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

fn start_broker(tansu: &std::path::Path) -> Broker {
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
    let topics = [
        ("records", "1"),
        ("enriched", "3"),
        ("incidents", "1"),
        ("traffic", "4"),
        ("control", "1"),
    ];
    for (topic, partitions) in topics {
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

/// The records without their order across partitions: sorted.
fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

#[test]
fn a_kafka_run_writes_every_record_once_keyed_by_agent_and_commits_only_what_is_out() {
    let Some(tansu) = tansu() else { return };
    let broker = start_broker(&tansu);
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
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", "clawwatch-test")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition("records", 0);
    let committed = group
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        committed.find_partition("records", 0).unwrap().offset(),
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

/// `clawwatch route` splits the scenario into traffic keyed by the agent-side
/// address and control keyed by agent id: every record once, one agent's
/// traffic in one partition and in its original order.
#[test]
fn route_keys_traffic_by_agent_address_and_sends_lifecycle_to_control() {
    let Some(tansu) = tansu() else { return };
    let broker = start_broker(&tansu);
    let scenario = std::fs::read(repo().join("testdata/scenario/records.ndjson")).unwrap();
    let lines: Vec<String> = scenario
        .split_inclusive(|b| *b == b'\n')
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\n").unwrap_or(l)).into_owned())
        .collect();
    let out = clawwatch(&[
        "route",
        "--policy",
        "testdata/policy.toml",
        "--input",
        "testdata/scenario/records.ndjson",
        "--kafka-brokers",
        &broker.address,
        "--kafka-output",
        "traffic",
        "--kafka-control",
        "control",
    ]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains(&format!("{} records", lines.len())), "{said}");
    // "N records: T traffic to traffic (…), C control to control"
    let count_before = |word: &str| -> usize {
        let at = said
            .find(word)
            .unwrap_or_else(|| panic!("{word} in {said}"));
        said[..at]
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (data, lifecycle) = (count_before(" traffic to"), count_before(" control to"));
    let minute = Duration::from_secs(60);
    let traffic = consume_from_partitions(&broker.address, "traffic", data, minute);
    let control = consume_from_partitions(&broker.address, "control", lifecycle, minute);
    assert_eq!(
        traffic.len() + control.len(),
        lines.len(),
        "every record once: {said}"
    );
    assert!(traffic.len() > 100 && control.len() > 10, "{said}");
    let mut got: Vec<&String> = traffic.iter().chain(&control).map(|(_, _, p)| p).collect();
    let mut sent: Vec<&String> = lines.iter().collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent);

    let mut partition_of = std::collections::HashMap::new();
    let mut keys = std::collections::HashSet::new();
    for (partition, key, payload) in &traffic {
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
    // In its partition, one address's records keep the order they were read in.
    for key in &keys {
        let mine: Vec<&String> = (traffic.iter())
            .filter(|(_, k, _)| k.as_ref() == Some(key))
            .map(|(_, _, p)| p)
            .collect();
        let in_input: Vec<&String> = lines.iter().filter(|l| mine.contains(l)).collect();
        assert_eq!(mine, in_input, "{key}");
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
    for (_, key, payload) in &control {
        let record: Value = serde_json::from_str(payload).unwrap();
        assert_eq!(key.as_deref(), record["agent_id"].as_str(), "{payload}");
    }
}
