//! The host under conditions a quiet test never meets: a trickle of records,
//! signals at awkward moments. Each test is bounded in time.

mod common;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `clawwatch run ARGS` reading a pipe, its output lines handed over as they
/// appear, with the time each did.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(Instant, Value)>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_clawwatch"))
            .arg("run")
            .args(args)
            .current_dir(common::repo())
            .env(
                "CLAWWATCH_CACHE_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let _ = tx.send((Instant::now(), serde_json::from_str(&line).unwrap()));
            }
        });
        Running {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    fn send(&mut self, line: &str) -> Instant {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        Instant::now()
    }

    fn next_line(&self, within: Duration) -> (Instant, Value) {
        self.lines
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("no output line within {within:?}: {e}"))
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Closes the input; returns the remaining output and what was said on stderr.
    fn finish(mut self) -> (Vec<Value>, String) {
        drop(self.stdin.take());
        let output = self.child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let rest = self.lines.iter().map(|(_, v)| v).collect();
        (rest, String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn flow(n: usize, src: &str) -> String {
    format!(
        r#"{{"type":"flow","ts":"2026-11-24T14:{:02}:{:02}Z","src_ip":"{src}","src_port":{},"dst_ip":"203.0.113.9","dst_port":443,"proto":"TCP","bytes":100}}"#,
        n / 60,
        n % 60,
        40000 + n
    )
}

/// At 10 records a second a 1,024-record batch would take 100 s to fill: each
/// record must still come out within `--max-latency-ms` of being read.
#[test]
fn a_trickle_of_records_is_written_within_the_latency_bound() {
    let mut run = Running::start(&["--max-latency-ms", "200"]);
    let mut worst = Duration::ZERO;
    for n in 0..25 {
        let sent = run.send(&flow(n, "10.9.0.1"));
        std::thread::sleep(Duration::from_millis(100));
        if n % 5 == 4 {
            // Everything sent so far is out by now, give or take the bound.
            for _ in 0..5 {
                let (at, _) = run.next_line(Duration::from_secs(5));
                worst = worst.max(at.saturating_duration_since(sent));
            }
        }
    }
    let (rest, _) = run.finish();
    assert!(rest.is_empty());
    eprintln!("trickle: slowest record out {worst:?} after the last of its group was written");
    assert!(
        worst < Duration::from_millis(1500),
        "a record waited {worst:?} at 10 records/s (bound 200 ms)"
    );
}

/// Without `--policy` there is no file to re-read: SIGHUP must not end the run.
#[test]
fn sighup_without_a_policy_file_is_ignored_with_a_message() {
    let mut run = Running::start(&[]);
    run.send(&flow(0, "10.9.0.1"));
    run.next_line(Duration::from_secs(30)); // running, handlers in place
    run.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    run.send(&flow(1, "10.9.0.1"));
    let (rest, stderr) = run.finish();
    assert_eq!(rest.len(), 1, "the record after the signal is judged too");
    assert!(
        stderr.contains("SIGHUP ignored: no --policy file to re-read"),
        "{stderr}"
    );
}

/// Records read before a reload's signal are judged by the policy that was
/// running, even when they still wait in a half-full batch; those read after
/// it by the new one.
#[test]
fn a_reload_applies_at_the_record_boundary_of_its_signal() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-reload");
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    let watching = |subnet: &str| {
        format!("[monitor]\nagent_subnets = [\"{subnet}\"]\ncorp_resolvers = [\"10.0.0.53\"]\n")
    };
    // 10.20.0.99 holds no agent: under the first policy its traffic is an
    // unknown agent's (an alert); the second watches another subnet.
    std::fs::write(&policy, watching("10.20.0.0/16")).unwrap();
    let mut run = Running::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--max-latency-ms",
        "3000",
    ]);
    run.send(&flow(0, "10.20.0.99"));
    run.next_line(Duration::from_secs(30)); // running, handlers in place
    // These wait in the reader's batch (3 s latency bound) when the signal comes.
    for n in 1..=5 {
        run.send(&flow(n, "10.20.0.99"));
    }
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&policy, watching("10.30.0.0/16")).unwrap();
    run.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    for n in 6..=10 {
        run.send(&flow(n, "10.20.0.99"));
    }
    let (rest, stderr) = run.finish();
    let verdicts: Vec<&str> = rest
        .iter()
        .filter(|v| !matches!(v["clawwatch"]["stream"].as_str(), Some("incident")))
        .map(|v| v["clawwatch"]["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        [["alert"; 5], ["unattributed"; 5]].concat(),
        "{stderr}"
    );
    assert!(stderr.contains("policy reloaded"), "{stderr}");
}
