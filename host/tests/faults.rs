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
        let mut child = common::command(env!("CARGO_BIN_EXE_clawwatch"))
            .arg("run")
            .args(args)
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

const SPAWN_A: &str = r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","agent_type":"data_collector_v1","deployment":"staging","ip":"10.20.0.15"}"#;
const DNS_A: &str = r#"{"type":"dns","ts":"2026-11-24T14:30:05Z","client_ip":"10.20.0.15","resolver_ip":"10.0.0.53","qname":"api.internal.example.net","qtype":"A","answers":[{"data":"93.184.216.34","ttl":3600}]}"#;
const FLOW_A: &str = r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.0.15","src_port":40000,"dst_ip":"93.184.216.34","dst_port":443,"proto":"TCP","bytes":900}"#;

/// A batch the engine cannot hold under `--guest-memory-mib` passes through
/// tagged with that cause; the engine is rebuilt with everything it knew (an
/// agent spawned before is still known after), and the run goes on.
#[test]
fn a_trap_names_its_cause_and_the_engine_resumes_with_what_it_knew() {
    let mut run = Running::start(&["--guest-memory-mib", "8", "--batch-records", "100000"]);
    run.send(SPAWN_A);
    run.send(DNS_A);
    run.next_line(Duration::from_secs(30));
    run.next_line(Duration::from_secs(5));
    // One write of ~6 MB: a 4 MiB batch (the batch byte cap) no 8 MiB engine can take in and out.
    let filler: Vec<String> = (0..6000)
        .map(|i| format!(r#"{{"type":"note","n":{i},"pad":"{}"}}"#, "x".repeat(1000)))
        .collect();
    run.send(&filler.join("\n"));
    let mut trapped = 0;
    for _ in 0..filler.len() {
        let (_, line) = run.next_line(Duration::from_secs(30));
        let error = line["clawwatch"]["error"].as_str().unwrap_or_default();
        if error.contains("memory limit: the engine needed more than --guest-memory-mib (8 MiB)") {
            trapped += 1;
        }
    }
    assert!(
        trapped > 1000,
        "{trapped} records tagged with the memory limit"
    );
    run.send(FLOW_A);
    let (_, flow) = run.next_line(Duration::from_secs(30));
    let (rest, stderr) = run.finish();
    assert_eq!(
        flow["clawwatch"]["agent"]["id"], "0x8a3f",
        "{flow}\n{stderr}"
    );
    assert_eq!(
        flow["clawwatch"]["verdict"], "allow",
        "the name it resolved is known too: {flow}"
    );
    assert!(rest.iter().all(|v| v["clawwatch"]["stream"] == "incident"));
    // The run's summary counts every record, the unjudged ones as errors.
    assert!(
        stderr.contains(&format!("clawwatch: {} records in", filler.len() + 3)),
        "{stderr}"
    );
}

/// A valid snapshot the engine cannot load under a smaller memory limit is
/// not set aside or overwritten: the run says what to raise and goes on.
#[test]
fn a_snapshot_too_big_for_the_limits_is_kept_and_the_run_says_what_to_raise() {
    let dir = common::fresh_dir("faults-restore");
    let state = dir.join("state.msgpack");
    let input = dir.join("agents.ndjson");
    let mut lines = String::new();
    // Long ids: a snapshot writes each name once, so only distinct text makes it big.
    let padding = "x".repeat(200);
    for i in 0..20_000u32 {
        lines.push_str(&format!(
            r#"{{"type":"agent.spawn","ts":"2026-11-24T14:00:00Z","agent_id":"a-{i}-{padding}","agent_type":"data_collector_v1","ip":"10.20.{}.{}"}}"#,
            i / 250,
            i % 250 + 2
        ));
        lines.push('\n');
    }
    std::fs::write(&input, lines).unwrap();
    common::clawwatch(&[
        "run",
        "--input",
        input.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    let saved = std::fs::read(&state).unwrap();
    assert!(saved.len() > 4 << 20, "a snapshot of {} bytes", saved.len());

    let mut run = Running::start(&[
        "--guest-memory-mib",
        "8",
        "--state",
        state.to_str().unwrap(),
    ]);
    run.send(FLOW_A);
    run.next_line(Duration::from_secs(30));
    let (_, stderr) = run.finish();
    assert!(
        stderr.contains("could not be loaded within the engine's limits")
            && stderr.contains("raise --guest-memory-mib"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&state).unwrap(), saved, "kept as it was");
    assert!(!dir.join("state.msgpack.rejected").exists());
}

/// `--state` names a file or a directory; a save that fails is an error that
/// shows in the exit status, not a message lost in a log.
#[test]
fn state_goes_into_a_directory_and_a_failed_save_fails_the_run() {
    let dir = common::fresh_dir("faults-state-dir");
    let input = dir.join("in.ndjson");
    std::fs::write(&input, format!("{SPAWN_A}\n{DNS_A}\n")).unwrap();
    common::clawwatch(&[
        "run",
        "--input",
        input.to_str().unwrap(),
        "--state",
        dir.to_str().unwrap(),
    ]);
    assert!(dir.join("clawwatch-state.msgpack").is_file());

    // A place state cannot be kept: said at once, before any record is read.
    let unwritable = dir.join("no-such-directory").join("state.msgpack");
    let out = common::clawwatch_output(&[
        "run",
        "--input",
        input.to_str().unwrap(),
        "--state",
        unwritable.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("keeping state at") && stderr.contains("no-such-directory"),
        "{stderr}"
    );

    // A save that fails at shutdown (the engine cannot export its state
    // within 8 MiB): the records still come out, and the exit status says so.
    let mut lines = String::new();
    for i in 0..2000u32 {
        let ip = format!("10.20.{}.{}", i / 250, i % 250 + 2);
        lines.push_str(&format!(
            r#"{{"type":"agent.spawn","ts":"2026-11-24T14:00:00Z","agent_id":"a-{i}","agent_type":"data_collector_v1","ip":"{ip}"}}"#
        ));
        lines.push('\n');
        for k in 0..10 {
            lines.push_str(&format!(
                r#"{{"type":"dns","ts":"2026-11-24T14:01:00Z","client_ip":"{ip}","resolver_ip":"10.0.0.53","qname":"h{k}-{i}-abcdefghijklmnop.example.net","answers":[{{"data":"93.1.{}.{k}","ttl":3600}}]}}"#,
                i % 250
            ));
            lines.push('\n');
        }
    }
    let big = dir.join("big.ndjson");
    std::fs::write(&big, lines).unwrap();
    let state = dir.join("small.msgpack");
    let out = common::clawwatch_output(&[
        "run",
        "--guest-memory-mib",
        "8",
        "--input",
        big.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("state could not be saved at shutdown"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.contains(r#""stream":"incident""#))
            .count(),
        22_000,
        "every record still comes out"
    );
}

/// More connections than the process may hold files: the listener stops
/// accepting for a while, says so, and takes connections again once some
/// close; the process never exits of it.
#[test]
fn a_listener_rides_out_running_out_of_file_descriptors() {
    let script = format!(
        "ulimit -n 64 && exec {} run --listen 127.0.0.1:0",
        env!("CARGO_BIN_EXE_clawwatch")
    );
    let mut run = common::Listening::start("sh", &["-c", &script], false);
    // Twice what the process may open, all idle.
    let idle: Vec<std::net::TcpStream> = (0..128)
        .map(|_| std::net::TcpStream::connect(&run.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "still running with every descriptor in use"
    );
    drop(idle);
    std::thread::sleep(Duration::from_millis(1500));
    let mut conn = std::net::TcpStream::connect(&run.addr).unwrap();
    conn.write_all(format!("{SPAWN_A}\n").as_bytes()).unwrap();
    drop(conn);
    let mut line = String::new();
    run.stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"agent_id\":\"0x8a3f\""), "{line}");
    let said = run.stop();
    assert!(said.contains("cannot accept a connection"), "{said}");
}

/// Hostile forward input (a 3 MB message of a million entries, a gzip bomb)
/// is refused before it is expanded or built; memory stays small and the
/// listener serves the next client.
#[test]
fn hostile_forward_messages_are_refused_within_bounded_memory() {
    use std::io::Read;
    let run = common::Listening::start(
        env!("CARGO_BIN_EXE_clawwatch"),
        &["run", "--forward-listen", "127.0.0.1:0"],
        false,
    );
    let (addr, pid) = (run.addr.clone(), run.child.id());
    let tag = [&[0xa3u8][..], b"bad"].concat();
    // ["bad", [[1, {}] × 1,000,000]] in Forward mode: 3 MB.
    let mut many = vec![0x92];
    many.extend_from_slice(&tag);
    many.push(0xdd);
    many.extend_from_slice(&1_000_000u32.to_be_bytes());
    for _ in 0..1_000_000 {
        many.extend_from_slice(&[0x92, 0x01, 0x80]);
    }
    // ["bad", <gzip of 300 MB of zeros>, {"compressed": "gzip"}].
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..300 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb_bytes = gz.finish().unwrap();
    let mut bomb = vec![0x93];
    bomb.extend_from_slice(&tag);
    bomb.push(0xc6);
    bomb.extend_from_slice(&(bomb_bytes.len() as u32).to_be_bytes());
    bomb.extend_from_slice(&bomb_bytes);
    bomb.push(0x81);
    bomb.extend_from_slice(&[0xaa]);
    bomb.extend_from_slice(b"compressed");
    bomb.extend_from_slice(&[0xa4]);
    bomb.extend_from_slice(b"gzip");
    let mut peak = 0;
    for (what, message) in [("a million entries", &many), ("a gzip bomb", &bomb)] {
        let started = Instant::now();
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = conn.write_all(message);
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest); // the connection is cut
        peak = peak.max(common::peak_rss_mib(pid));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: {:?}",
            started.elapsed()
        );
        assert!(rest.is_empty(), "{what}: no ack for a refused message");
    }
    assert!(peak < 150, "{peak} MiB resident after hostile input");
    run.stop(); // still running, and ends cleanly
    eprintln!("hostile forward input: peak {peak} MiB resident");
}

/// Past --max-connections a listener closes new connections at once and
/// counts them; the connections it serves go on undisturbed.
#[test]
fn connections_past_the_limit_are_closed_at_once_and_counted() {
    use std::io::Read;
    let mut run = common::Listening::start(
        env!("CARGO_BIN_EXE_clawwatch"),
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "2",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        true,
    );
    let addr = run.addr.clone();
    let mut first = std::net::TcpStream::connect(&addr).unwrap();
    let _second = std::net::TcpStream::connect(&addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = std::net::TcpStream::connect(&addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(third.read(&mut buf).unwrap_or(0), 0, "closed at once");
    first.write_all(format!("{SPAWN_A}\n").as_bytes()).unwrap();
    let mut line = String::new();
    run.stdout.read_line(&mut line).unwrap();
    assert!(line.contains("0x8a3f"), "{line}");
    let body = run.metrics_text();
    assert!(
        body.contains("clawwatch_connections_refused_total 1"),
        "{body}"
    );
    run.stop();
}

/// `kill -9` between snapshots: what the engine learnt and wrote out since the
/// last one is in the journal, so after a restart an agent spawned just
/// before the kill is known, and its traffic raises no false alert.
#[test]
fn after_kill_9_the_journal_brings_back_what_was_learnt_since_the_snapshot() {
    let dir = common::fresh_dir("faults-kill-9");
    let state = dir.join("state.msgpack");
    let args = [
        "--state",
        state.to_str().unwrap(),
        "--snapshot-secs",
        "3600",
    ];
    let mut run = Running::start(&args);
    run.send(SPAWN_A);
    run.send(DNS_A);
    run.next_line(Duration::from_secs(30));
    run.next_line(Duration::from_secs(5));
    // Written out, so journaled: now the hard way down, no snapshot since the start.
    run.signal("KILL");
    let _ = run.child.wait();

    let mut run = Running::start(&args);
    run.send(FLOW_A);
    let (_, flow) = run.next_line(Duration::from_secs(30));
    let (_, stderr) = run.finish();
    assert_eq!(
        flow["clawwatch"]["agent"]["id"], "0x8a3f",
        "{flow}\n{stderr}"
    );
    assert_eq!(flow["clawwatch"]["verdict"], "allow", "{flow}");
    assert!(stderr.contains("journaled steps replayed"), "{stderr}");
}

/// Unfinished forward messages (four of 20 MB, sent and never completed) and
/// a sender trickling a small one: each is cut off at its per-connection
/// budget or its message deadline, counted, and memory stays small; a sender
/// that behaves is served all along.
#[test]
fn unfinished_and_trickled_forward_messages_are_cut_off_and_others_served() {
    use std::io::Read;
    let mut run = common::Listening::start(
        env!("CARGO_BIN_EXE_clawwatch"),
        &[
            "run",
            "--forward-listen",
            "127.0.0.1:0",
            "--connection-budget-mib",
            "8",
            "--message-deadline-secs",
            "2",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        true,
    );
    let (addr, pid) = (run.addr.clone(), run.child.id());
    // ["t", <bin32 of 20 MB>, ...: announced, never finished.
    let mut head = vec![0x93, 0xa1, b't', 0xc6];
    head.extend_from_slice(&(20u32 << 20).to_be_bytes());
    let hostile: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            let head = head.clone();
            std::thread::spawn(move || {
                let mut conn = std::net::TcpStream::connect(&addr).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let _ = conn.write_all(&head);
                let _ = conn.write_all(&vec![0u8; 19 << 20]);
                let mut rest = Vec::new();
                let _ = conn.read_to_end(&mut rest); // cut off
            })
        })
        .collect();
    // A message trickled a byte a second: past the 2 s deadline it is cut off.
    let trickle = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let mut conn = std::net::TcpStream::connect(&addr).unwrap();
            let started = Instant::now();
            for byte in [0x93u8, 0xa1, b't', 0x90, 0x80, 0x80] {
                if conn.write_all(&[byte]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            let mut rest = Vec::new();
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = conn.read_to_end(&mut rest);
            started.elapsed()
        }
    });
    // Meanwhile a well-behaved sender is served: one record, one line out.
    let mut good = std::net::TcpStream::connect(&addr).unwrap();
    let mut message = vec![0x92, 0xa1, b'g', 0x91, 0x92, 0x01, 0x81, 0xa4];
    message.extend_from_slice(b"type");
    message.push(0xa3);
    message.extend_from_slice(b"ok!");
    good.write_all(&message).unwrap();
    let mut line = String::new();
    run.stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"ok!\""), "{line}");
    for h in hostile {
        h.join().unwrap();
    }
    let took = trickle.join().unwrap();
    assert!(
        took < Duration::from_secs(8),
        "the trickle was cut at its deadline, not served: {took:?}"
    );
    let peak = common::peak_rss_mib(pid);
    assert!(
        peak < 150,
        "{peak} MiB resident with four 20 MB messages unfinished"
    );
    let metrics = run.metrics_text();
    assert!(
        metrics.contains("clawwatch_connections_cut_total 5"),
        "{metrics}"
    );
    run.stop();
    eprintln!(
        "four unfinished 20 MB messages and a trickle: all cut off, peak {peak} MiB resident"
    );
}
