//! The sidecar pipeline of `pipelines/fluent-bit-forward/` with the real
//! Fluent Bit of `../shared/tools/fluent-bit`: tail → forward output (acks
//! required) → `clawwatch run --forward-listen --output forward:// --state` →
//! forward input → stdout. clawwatch is killed with `kill -9` mid-stream and
//! started again: Fluent Bit resends every chunk clawwatch had not acked, so
//! every record comes out, and what clawwatch learnt before the kill is
//! still known after it, so none raises a false alert. Skipped (saying so)
//! where that directory is absent, never under CI.

mod common;

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A bulk exporter: many calls to one API are its normal (no volume baseline).
const POLICY: &str = r#"
[monitor]
agent_subnets = ["10.20.0.0/16"]
corp_resolvers = ["10.0.0.53"]

[agent_profile."data_collector_v1"]
expected_lifetime_minutes = 120
allowed_outbound = [
{ protocol = "TCP", port = 443, destination = "api.internal.example.net" },
{ protocol = "UDP", port = 53, destination = "10.0.0.53" },
]
"#;

const SPAWN: &str = r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","agent_type":"data_collector_v1","deployment":"staging","ip":"10.20.0.15"}"#;
const DNS: &str = r#"{"type":"dns","ts":"2026-11-24T14:30:05Z","client_ip":"10.20.0.15","resolver_ip":"10.0.0.53","qname":"api.internal.example.net","qtype":"A","answers":[{"data":"93.184.216.34","ttl":3600}]}"#;

/// An allowed flow, numbered by its source port, two a second from 14:31 on.
fn flow(n: usize) -> String {
    let secs = 14 * 3600 + 31 * 60 + n / 2;
    format!(
        r#"{{"type":"flow","ts":"2026-11-24T{:02}:{:02}:{:02}Z","src_ip":"10.20.0.15","src_port":{},"dst_ip":"93.184.216.34","dst_port":443,"proto":"TCP","bytes":900}}"#,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        10000 + n
    )
}

/// Kills a child however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `clawwatch run` between the two Fluent Bit ends, once it listens; what it
/// says goes on to `log`.
fn start_clawwatch(args: &[String], log: &Path) -> Running {
    let mut child = common::command(env!("CARGO_BIN_EXE_clawwatch"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "clawwatch exited");
        if line.starts_with("clawwatch: listening on") {
            break;
        }
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut log));
    Running(child)
}

#[test]
fn kill_9_between_real_fluent_bit_ends_loses_no_record_and_raises_no_false_alert() {
    let Some((fluent_bit, _)) = common::fluent_bit_tools() else {
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fluent-bit-forward-kill-9");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let (to_clawwatch, back) = (free_port(), free_port());
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    let input = dir.join("agents.ndjson");
    std::fs::write(&input, "").unwrap();
    // The shipped configuration, on this test's ports, retrying quickly.
    let shipped = std::fs::read_to_string(
        common::repo().join("pipelines/fluent-bit-forward/fluent-bit.conf"),
    )
    .unwrap();
    let config = shipped
        .replace("24224", &to_clawwatch.to_string())
        .replace("24225", &back.to_string())
        .replace(
            "    Flush        1\n",
            "    Flush        1\n    scheduler.base 1\n    scheduler.cap  2\n",
        );
    assert_ne!(config, shipped, "the shipped configuration changed shape");
    std::fs::write(dir.join("fluent-bit.conf"), config).unwrap();
    let args: Vec<String> = [
        "run",
        "--forward-listen",
        &format!("127.0.0.1:{to_clawwatch}"),
        "--output",
        &format!("forward://127.0.0.1:{back}"),
        "--state",
        dir.join("state").to_str().unwrap(),
        "--snapshot-secs",
        "3600",
        "--policy",
        dir.join("policy.toml").to_str().unwrap(),
    ]
    .map(String::from)
    .into();
    let first = start_clawwatch(&args, &dir.join("clawwatch.log"));
    let mut bit = Running(
        Command::new(&fluent_bit)
            .arg("-c")
            .arg(dir.join("fluent-bit.conf"))
            .arg("-R")
            .arg(common::repo().join("pipelines/fluent-bit-forward/parsers.conf"))
            .env("CLAWWATCH_INPUT", &input)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("fluent-bit.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let out = Arc::new(Mutex::new(Vec::<Value>::new()));
    let reader = std::thread::spawn({
        let (out, stdout) = (out.clone(), bit.0.stdout.take().unwrap());
        move || {
            for line in BufReader::new(stdout).lines() {
                if let Ok(v) = serde_json::from_str::<Value>(&line.unwrap()) {
                    out.lock().unwrap().push(v);
                }
            }
        }
    });
    let log = || std::fs::read_to_string(dir.join("fluent-bit.log")).unwrap_or_default();
    let flows = |out: &[Value]| -> BTreeSet<u64> {
        out.iter()
            .filter(|v| v["clawwatch"]["stream"] == "flow")
            .filter_map(|v| v["src_port"].as_u64())
            .collect()
    };
    // The agents' log grows while Fluent Bit tails it: 30 writes of 100 flows.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    writeln!(file, "{SPAWN}\n{DNS}").unwrap();
    let mut first = Some(first);
    let mut second = None;
    for batch in 0..30 {
        // One write per batch, as a logger flushing its buffer does.
        let lines: String = (batch * 100..(batch + 1) * 100)
            .map(|n| flow(n) + "\n")
            .collect();
        file.write_all(lines.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        if batch == 12 {
            // Some records are through by now; then the hard way down.
            let started = Instant::now();
            while flows(&out.lock().unwrap()).is_empty() {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "nothing through: {}",
                    log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(first.take()); // SIGKILL
            std::thread::sleep(Duration::from_millis(500));
            second = Some(start_clawwatch(&args, &dir.join("clawwatch.log")));
        }
    }
    let started = Instant::now();
    loop {
        let seen = flows(&out.lock().unwrap()).len();
        if seen == 3000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{seen} of 3000 flows came back: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(second);
    drop(bit);
    let _ = reader.join();
    let out = out.lock().unwrap();
    let mut alerts = 0;
    let flow_records = out.iter().filter(|v| v["type"] == "flow").count();
    for v in out.iter().filter(|v| v["type"] == "flow") {
        // Each record is judged once per delivery, never fed back: the
        // configuration must not route enriched records back to clawwatch.
        assert!(v.get("clawwatch_previous").is_none(), "judged twice: {v}");
        assert_eq!(v["clawwatch"]["agent"]["id"], "0x8a3f", "{v}");
        if v["clawwatch"]["verdict"] != "allow" {
            alerts += 1;
            eprintln!("not allowed: {v}");
        }
    }
    assert_eq!(alerts, 0, "false alerts after the restart");
    // Only what was in flight at the kill comes again.
    assert!(
        flow_records < 4500,
        "{flow_records} flow records for 3000 flows"
    );
    eprintln!(
        "kill -9 between real Fluent Bit ends: 3000 of 3000 flows back ({flow_records} flow records with resends), 0 alerts"
    );
}
