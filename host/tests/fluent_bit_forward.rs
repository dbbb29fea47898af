//! The sidecar pipeline of `pipelines/fluent-bit-forward/` with the real
//! Fluent Bit of `../shared/tools/fluent-bit`: tail → forward output (acks
//! required) → `clawwatch run --forward-listen --output forward:// --state` →
//! forward input → stdout. clawwatch is killed with `kill -9` mid-stream and
//! started again: Fluent Bit resends every chunk clawwatch had not acked, so
//! every record comes out, and what clawwatch learnt before the kill is
//! still known after it, so none raises a false alert. Skipped (saying so)
//! where that directory is absent, never under CI.

mod common;

use common::bulk_exporter::{self, DNS, SPAWN, flow};
use common::{Listening, free_port};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kills a child however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_9_between_real_fluent_bit_ends_loses_no_record_and_raises_no_false_alert() {
    let Some((fluent_bit, _)) = common::fluent_bit_tools() else {
        return;
    };
    let policy = bulk_exporter::policy_in("fluent-bit-forward-kill-9");
    let dir = policy.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let (to_clawwatch, back) = (free_port(), free_port());
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
        policy.to_str().unwrap(),
    ]
    .map(String::from)
    .into();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Drops kill it: that is the `kill -9` below.
    let start_clawwatch = || Listening::start(env!("CARGO_BIN_EXE_clawwatch"), &args, false);
    let first = start_clawwatch();
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
            second = Some(start_clawwatch());
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
