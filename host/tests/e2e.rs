//! The built `clawwatch` binary, end to end, through the embedded component.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The built binary, run from the repository root with a test-local cache.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawwatch"));
    cmd.args(args)
        .current_dir(repo())
        .env(
            "CLAWWATCH_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn clawwatch(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = command(args).spawn().expect("clawwatch runs");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// Every output line, incident and audit records included.
fn all_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn is_emitted(v: &Value) -> bool {
    matches!(
        v["clawwatch"]["stream"].as_str(),
        Some("incident" | "audit")
    )
}

/// The output lines that stand for input lines, in order.
fn lines(out: &Output) -> Vec<Value> {
    all_lines(out)
        .into_iter()
        .filter(|v| !is_emitted(v))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const SCENARIO: &str = "testdata/scenario/records.ndjson";

#[test]
fn scenario_through_the_component_matches_the_native_snapshot() {
    let out = clawwatch(
        &[
            "run",
            "--policy",
            "testdata/policy.toml",
            "--input",
            SCENARIO,
            "--batch-records",
            "50",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(repo().join("testdata/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("scenario_enriched", text));
}

fn find<'a>(out: &'a [Value], pred: impl Fn(&Value) -> bool) -> &'a Value {
    out.iter()
        .find(|v| pred(v))
        .expect("a matching output record")
}

fn rules(v: &Value) -> Vec<&str> {
    v["clawwatch"]["findings"]
        .as_array()
        .map(|f| f.iter().map(|f| f["rule"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

#[test]
fn verdicts_through_the_component() {
    let input = std::fs::read(repo().join(SCENARIO)).unwrap();
    let out = clawwatch(&["run", "--policy", "testdata/policy.toml"], &input);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = all_lines(&out);
    let out = lines(&out);
    assert_eq!(out.len(), input.split(|b| *b == b'\n').count() - 1);
    // Each incident of the scenario is one `incident` record with status open.
    let opened: Vec<&str> = all
        .iter()
        .filter(|v| v["clawwatch"]["stream"] == "incident")
        .map(|v| v["clawwatch"]["incident"]["id"].as_str().unwrap())
        .collect();
    assert!(
        opened.contains(&"0x8a40/egress.not_allowed/203.0.113.9:8443"),
        "{opened:?}"
    );
    assert_eq!(
        opened
            .iter()
            .filter(|id| **id == "0x8a40/egress.not_allowed/203.0.113.9:8443")
            .count(),
        1,
        "three findings, one incident record"
    );

    // Allowed through a prior DNS answer (FQDN rule, IP-level flow).
    let allowed = find(&out, |v| {
        v["src_ip"] == "10.20.0.16" && v["dst_ip"] == "93.184.216.34"
    });
    assert_eq!(allowed["clawwatch"]["verdict"], "allow");
    assert_eq!(allowed["clawwatch"]["agent"]["id"], "0x8a40");

    let forbidden = find(&out, |v| v["dst_ip"] == "203.0.113.9");
    assert_eq!(forbidden["clawwatch"]["verdict"], "alert");
    assert_eq!(
        forbidden["clawwatch"]["findings"][0]["rule"],
        "egress.not_allowed"
    );
    assert_eq!(forbidden["clawwatch"]["findings"][0]["severity"], "high");

    let unknown = find(&out, |v| v["src_addr"] == "10.20.9.99");
    assert_eq!(rules(unknown), ["egress.unknown_agent"]);

    let foreign = find(&out, |v| v["dst_ip"] == "8.8.8.8");
    assert_eq!(rules(foreign), ["dns.foreign_resolver"]);

    // After agent.terminate the address no longer maps to the agent...
    let after = find(&out, |v| {
        v["src_addr"] == "10.20.0.15"
            && v["time_flow_start_ns"].as_u64() > Some(1_795_533_600_000_000_000)
    });
    assert!(after["clawwatch"].get("agent").is_none());
    assert_eq!(rules(after), ["egress.unknown_agent"]);
    // ...but a late record of a flow that started before it still does.
    let late = find(&out, |v| {
        v["src_ip"] == "10.20.0.15" && v["ts"] == "2026-11-24T15:28:00Z"
    });
    assert_eq!(late["clawwatch"]["agent"]["id"], "0x8a3f");
}

#[test]
fn garbage_in_gives_one_tagged_line_out_per_line_in() {
    let mut input = Vec::new();
    for i in 0..3000u32 {
        match i % 6 {
            0 => input.extend_from_slice(b"not json at all"),
            1 => input.extend_from_slice(&[0xc3, 0x28, 0xff]),
            2 => {}
            3 => input.extend_from_slice(b"{\"unterminated\": "),
            4 => input.extend_from_slice(format!("{{\"n\":{i}}}").as_bytes()),
            _ => input.extend_from_slice(b"{\"type\":\"flow\",\"src_ip\":7}"),
        }
        input.push(b'\n');
    }
    let out = clawwatch(&["run"], &input);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = lines(&out);
    assert_eq!(out.len(), 3000);
    for (i, v) in out.iter().enumerate() {
        let expected = if i % 6 == 4 {
            "not_applicable"
        } else {
            "error"
        };
        assert_eq!(v["clawwatch"]["verdict"], expected, "line {i}: {v}");
    }
    assert_eq!(out[4]["n"], 4);
}

#[test]
fn oversized_lines_pass_through_without_loss() {
    let big = format!("{{\"blob\":\"{}\"}}", "y".repeat(5000));
    let input = format!("{{\"a\":1}}\n{big}\n{{\"b\":2}}\n");
    let out = clawwatch(&["run", "--max-line-bytes", "1000"], input.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = lines(&out);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["a"], 1);
    assert!(
        out[1]["clawwatch"]["error"]
            .as_str()
            .unwrap()
            .contains("line of 5011 bytes")
    );
    assert!(out[1]["raw_base64"].as_str().unwrap().len() > 6000);
    assert_eq!(out[2]["b"], 2);
}

#[test]
fn a_guest_out_of_memory_loses_no_record_and_the_host_survives() {
    // Batches far larger than the guest may allocate: every call fails inside
    // the guest; every record must still come out, tagged.
    let line = format!("{{\"type\":\"flow\",\"pad\":\"{}\"}}\n", "z".repeat(4000));
    let input = line.repeat(2000);
    let out = clawwatch(
        &["run", "--guest-memory-mib", "4", "--batch-records", "1000"],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = lines(&out);
    assert_eq!(out.len(), 2000);
    assert!(out.iter().all(|v| v["clawwatch"]["verdict"] == "error"));
    assert!(
        out[0]["clawwatch"]["error"]
            .as_str()
            .unwrap()
            .contains("detection engine failed"),
        "{}",
        out[0]
    );
    assert_eq!(out[1999]["pad"].as_str().unwrap().len(), 4000);
}

#[test]
fn a_bad_policy_is_rejected_with_file_line_and_key() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("bad-policy.toml");
    std::fs::write(&path, "[monitor]\nagent_subnets = [\"10.20.0.0/16\"]\n\n[agent_profile.\"x\"]\nexpected_lifetime_minute = 5\n").unwrap();
    let out = clawwatch(&["run", "--policy", path.to_str().unwrap()], b"{}\n");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad-policy.toml"), "{err}");
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("expected_lifetime_minute"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_inputs_and_policies_are_named() {
    let out = clawwatch(&["run", "--input", "no/such/file.ndjson"], b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no/such/file.ndjson"),
        "{}",
        stderr(&out)
    );
    let out = clawwatch(&["run", "--policy", "no/such/policy.toml"], b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no/such/policy.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_reports_both_paths_and_their_ratio() {
    let out = clawwatch(&["bench", "--records", "20000"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let report = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "native",
        "component",
        "unbounded",
        "time vs native",
        "per active agent",
        "snapshot of those",
        "changes after 100 of them",
        "with the policy's lookup tables",
        "outputs identical: yes",
    ] {
        assert!(report.contains(needle), "{report}");
    }
}

#[test]
fn bench_counts_the_fluent_bit_modules_operators_and_checks_its_outputs() {
    let out = clawwatch(
        &["bench", "--records", "3000", "--fluent-bit-operators"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(
        report.contains("outputs identical to the native engine's: yes"),
        "{report}"
    );
    let per_record = |label: &str| -> u64 {
        let line = report
            .lines()
            .find(|l| l.starts_with("WebAssembly operators per record:"))
            .unwrap_or_else(|| panic!("{report}"));
        let at = line.find(label).unwrap_or_else(|| panic!("{line}"));
        line[..at]
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"))
    };
    let (filter, with_copies) = (per_record(" in the filter"), per_record(" with the copies"));
    // A record is read, judged and written: thousands of operators, not a handful.
    assert!((1_000..1_000_000).contains(&filter), "{report}");
    assert!(with_copies > filter, "{report}");
}

#[test]
fn demo_runs_the_bundled_sample_and_can_show_only_alerts() {
    let all = clawwatch(&["demo"], b"");
    assert!(all.status.success(), "{}", stderr(&all));
    let all = all_lines(&all);
    let per_input = all.iter().filter(|v| !is_emitted(v)).count();
    assert_eq!(
        per_input,
        include_bytes!("../../testdata/scenario/records.ndjson")
            .split(|b| *b == b'\n')
            .count()
            - 1
    );
    let alerts = clawwatch(&["demo", "--alerts-only"], b"");
    let alerts = all_lines(&alerts);
    let expected = all
        .iter()
        .filter(|v| v["clawwatch"]["verdict"] == "alert")
        .count();
    assert!(expected > 0);
    assert_eq!(alerts.len(), expected);
    assert!(alerts.iter().all(|v| v["clawwatch"]["verdict"] == "alert"));
}

#[test]
fn compiled_component_is_cached_and_another_component_can_be_loaded() {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fresh-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let cache_arg = cache.to_str().unwrap();
    let out = clawwatch(&["run", "--cache-dir", cache_arg], b"{}\n");
    assert!(out.status.success(), "{}", stderr(&out));
    // wasmtime's cache layout: modules/wasmtime-VERSION/ENTRY (+ ENTRY.stats).
    let entries = |dir: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir).map_or(Vec::new(), |d| d.map(|e| e.unwrap().path()).collect())
    };
    let versions = entries(&cache.join("modules"));
    let cached: Vec<_> = versions.iter().flat_map(|v| entries(v)).collect();
    assert!(
        cached
            .iter()
            .any(|p| p.extension().is_none()
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 100_000)),
        "{cached:?}"
    );
    // A second start loads the cached code and gives the same output.
    let again = clawwatch(&["run", "--cache-dir", cache_arg], b"{}\n");
    assert_eq!(again.stdout, out.stdout);

    // --component: the same engine from a file, then something that is not a component.
    let copy = Path::new(env!("CARGO_TARGET_TMPDIR")).join("engine-copy.wasm");
    std::fs::copy(env!("CLAWWATCH_COMPONENT_PATH"), &copy).unwrap();
    let from_file = clawwatch(
        &["run", "--no-cache", "--component", copy.to_str().unwrap()],
        b"{}\n",
    );
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    assert_eq!(from_file.stdout, out.stdout);
    let bogus = Path::new(env!("CARGO_TARGET_TMPDIR")).join("not-a-component.wasm");
    std::fs::write(&bogus, b"hello").unwrap();
    let failed = clawwatch(
        &["run", "--no-cache", "--component", bogus.to_str().unwrap()],
        b"{}\n",
    );
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("not-a-component.wasm"),
        "{}",
        stderr(&failed)
    );
}

#[test]
fn idle_input_advances_event_time_so_silent_agents_are_noticed() {
    // An agent spawned three hours ago with a 120 (+15) minute lifetime, then silence.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let spawn = format!(
        r#"{{"type":"agent.spawn","ts":{},"agent_id":"sleepy","agent_type":"data_collector_v1","ip":"10.20.0.99"}}"#,
        now - 3 * 3600
    );
    let mut child = command(&["run", "--idle-advance-secs", "1"])
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{spawn}\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let all = all_lines(&out);
    let lifetime: Vec<&Value> = all
        .iter()
        .filter(|v| v["clawwatch"]["incident"]["rule"] == "lifetime.exceeded")
        .collect();
    assert_eq!(lifetime.len(), 1, "{all:?}");
    assert_eq!(lifetime[0]["clawwatch"]["agent"]["id"], "sleepy");
    assert!(
        lifetime[0]["clawwatch"]["incident"]["summary"]
            .as_str()
            .unwrap()
            .contains("is still alive")
    );
}

#[test]
fn rule_cases_through_the_component_match_the_native_snapshots() {
    // A representative subset: record-driven, time-driven, stateful and audit rules.
    for rule in [
        "egress.not_allowed",
        "dns.tunneling",
        "rate.runaway",
        "heartbeat.mismatch",
        "heartbeat.missing",
        "approval.granted",
    ] {
        for case in ["fires", "near_miss"] {
            let input = format!("testdata/cases/{rule}/{case}.ndjson");
            let out = clawwatch(
                &[
                    "run",
                    "--policy",
                    "testdata/cases/policy.toml",
                    "--input",
                    &input,
                ],
                b"",
            );
            assert!(out.status.success(), "{rule}/{case}: {}", stderr(&out));
            let text = String::from_utf8(out.stdout).unwrap();
            let mut settings = insta::Settings::clone_current();
            settings.set_snapshot_path(repo().join("testdata/cases").join(rule));
            settings.set_prepend_module_to_snapshot(false);
            settings.bind(|| insta::assert_snapshot!(case, text));
        }
    }
}

#[test]
fn format_names_the_inputs_format_when_the_shape_does_not() {
    // A pmacct record trimmed of the keys its shape is known by.
    let line = br#"{"ip_src":"10.20.0.15","port_src":1,"port_dst":2,"ip_proto":"tcp","timestamp_start":"2026-11-24 14:31:00"}"#;
    let plain = lines(&clawwatch(&["run"], line));
    assert_eq!(plain[0]["clawwatch"]["verdict"], "not_applicable");
    let named = lines(&clawwatch(&["run", "--format", "pmacct"], line));
    assert_eq!(named[0]["clawwatch"]["verdict"], "error");
    assert!(
        named[0]["clawwatch"]["error"]
            .as_str()
            .unwrap()
            .contains("pmacct record: field `ip_dst` is missing")
    );
    let bad = clawwatch(&["run", "--format", "syslog"], line);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("syslog"), "{}", stderr(&bad));
}

#[test]
fn ndjson_over_tcp_in_and_out_loses_nothing() {
    use std::io::{BufRead, BufReader, Read};
    use std::net::{TcpListener, TcpStream};
    // The receiver (Vector's socket source) picks its port; it starts accepting only later,
    // so clawwatch's output must wait and retry.
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let out_addr = receiver.local_addr().unwrap();
    let mut child = command(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--output",
        &format!("tcp://{out_addr}"),
    ])
    .spawn()
    .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let listen_addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "clawwatch exited before listening"
        );
        if let Some(addr) = line.trim().strip_prefix("clawwatch: listening on ") {
            break addr.to_string();
        }
    };
    let stderr_rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    // Two senders at once, each with its half of the scenario.
    let scenario = std::fs::read(repo().join(SCENARIO)).unwrap();
    let lines: Vec<&[u8]> = scenario
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let sent = lines.len();
    let halves: Vec<Vec<u8>> = lines
        .chunks(sent.div_ceil(2))
        .map(|c| {
            c.iter()
                .flat_map(|l| l.iter().copied().chain([b'\n']))
                .collect()
        })
        .collect();
    let senders: Vec<_> = halves
        .into_iter()
        .map(|half| {
            let addr = listen_addr.clone();
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                conn.write_all(&half).unwrap();
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (conn, _) = receiver.accept().unwrap();
    // Interrupt: clawwatch sends what it has read, drains, and exits.
    std::thread::sleep(std::time::Duration::from_millis(500));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let mut received = Vec::new();
    for line in BufReader::new(conn).lines() {
        received.push(serde_json::from_str::<Value>(&line.unwrap()).expect("JSON"));
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", stderr_rest.join().unwrap());
    let per_input = received.iter().filter(|v| !is_emitted(v)).count();
    assert_eq!(per_input, sent, "every record sent came back");
    assert!(
        received
            .iter()
            .any(|v| v["clawwatch"]["verdict"] == "alert")
    );
}

#[test]
fn check_validates_and_lints_with_documented_exit_codes() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let ok = clawwatch(&["check", "testdata/policy.toml"], b"");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid, 0 warning(s)"));

    let broad = dir.join("broad-policy.toml");
    std::fs::write(&broad, "[agent_profile.\"x\"]\nallowed_outbound = [{ protocol = \"TCP\", port = 443, destination = \"ANY\" }]\n").unwrap();
    let out = clawwatch(
        &[
            "check",
            broad.to_str().unwrap(),
            "--format",
            "json",
            "--agent-types",
            "x,y",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    let codes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"over-broad-destination") && codes.contains(&"missing-profile"),
        "{codes:?}"
    );

    let bad = dir.join("typo-policy.toml");
    std::fs::write(&bad, "[agent_profile.\"x\"]\nallowed_outbond = []\n").unwrap();
    let out = clawwatch(&["check", bad.to_str().unwrap(), "--format", "json"], b"");
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["error"]["line"], 2);
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed_outbond")
    );
    let out = clawwatch(&["check", "no/such.toml"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no/such.toml: invalid: cannot read it"));
}

/// A running `clawwatch run` fed line by line, its output read as it comes.
struct Live {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    out: std::sync::mpsc::Receiver<String>,
    err: std::sync::mpsc::Receiver<String>,
}

const LIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

impl Live {
    fn start(args: &[&str]) -> Live {
        use std::io::{BufRead, BufReader};
        let mut child = command(args).spawn().unwrap();
        let lines_of = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    if tx.send(line.unwrap()).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        Live {
            out: lines_of(Box::new(child.stdout.take().unwrap())),
            err: lines_of(Box::new(child.stderr.take().unwrap())),
            stdin: child.stdin.take(),
            child,
        }
    }

    /// Sends one record; returns the output line that stands for it.
    fn send(&mut self, line: &str) -> Value {
        let stdin = self.stdin.as_mut().expect("input still open");
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
        loop {
            let v: Value =
                serde_json::from_str(&self.out.recv_timeout(LIVE_WAIT).expect("an output line"))
                    .unwrap();
            // Incident records follow the record that opened them: not the answer to this line.
            if !is_emitted(&v) {
                return v;
            }
        }
    }

    /// The first stderr line (from now on) containing `needle`.
    fn stderr_until(&self, needle: &str) -> String {
        loop {
            let line = self
                .err
                .recv_timeout(LIVE_WAIT)
                .unwrap_or_else(|_| panic!("no `{needle}` on stderr"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn signal(&self, name: &str) {
        Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Closes the input and waits for a clean exit; returns the rest of stderr.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        assert!(self.child.wait().unwrap().success());
        self.err.iter().collect::<Vec<_>>().join("\n")
    }
}

const SPAWN_0X8A3F: &str = r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","agent_type":"data_collector_v1","ip":"10.20.0.15"}"#;
const FORBIDDEN_FROM_0X8A3F: &str = r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.0.15","src_port":51000,"dst_ip":"203.0.113.9","dst_port":8443,"proto":"TCP"}"#;

#[test]
fn sighup_reloads_the_policy_keeps_state_and_a_bad_policy_keeps_the_old_one() {
    use std::time::Duration;
    let policy = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reloaded-policy.toml");
    let original = std::fs::read_to_string(repo().join("testdata/policy.toml")).unwrap();
    std::fs::write(&policy, &original).unwrap();
    let mut live = Live::start(&["run", "--policy", policy.to_str().unwrap()]);
    let hup_until = |live: &Live, needle: &str| {
        live.signal("HUP");
        live.stderr_until(needle)
    };
    live.send(SPAWN_0X8A3F);
    assert_eq!(
        live.send(FORBIDDEN_FROM_0X8A3F)["clawwatch"]["verdict"],
        "alert"
    );

    std::fs::write(&policy, "[agent_profile.\"x\"]\nbogus = 1\n").unwrap();
    let rejected = hup_until(&live, "reload rejected");
    assert!(rejected.contains("bogus"), "{rejected}");
    assert_eq!(
        live.send(FORBIDDEN_FROM_0X8A3F)["clawwatch"]["verdict"],
        "alert",
        "the running policy stays"
    );

    let wider = original.replace(
        "{ protocol = \"UDP\", port = 53, destination = \"ANY\" },",
        "{ protocol = \"UDP\", port = 53, destination = \"ANY\" },\n{ protocol = \"TCP\", port = 8443, destination = \"203.0.113.9\" },",
    );
    std::fs::write(&policy, wider).unwrap();
    hup_until(&live, "policy reloaded");
    let after = live.send(FORBIDDEN_FROM_0X8A3F);
    assert_eq!(after["clawwatch"]["verdict"], "allow", "{after}");
    assert_eq!(
        after["clawwatch"]["agent"]["id"], "0x8a3f",
        "spawned before the reload, still known"
    );

    // A change of the file alone (no signal) is noticed too. Let the watcher's
    // poll see the last write first, and forget what it said about it.
    std::thread::sleep(Duration::from_millis(2500));
    while live.err.try_recv().is_ok() {}
    std::fs::write(&policy, &original).unwrap();
    live.stderr_until("policy reloaded");
    assert_eq!(
        live.send(FORBIDDEN_FROM_0X8A3F)["clawwatch"]["verdict"],
        "alert",
        "back to the original policy"
    );
    let rest = live.finish();
    assert!(
        rest.contains("policy reloads: 2 applied, 1 rejected"),
        "the summary counts reloads: {rest}"
    );
}

/// `kill -9` after a periodic snapshot, then a restart from it: every agent
/// spawned before the snapshot is still known and its flows attributed to it.
#[test]
fn kill_9_and_a_restart_from_the_state_snapshot_keep_every_agent() {
    use std::time::{Duration, Instant};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("state-kill-9");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("clawwatch.state");
    let state_arg = state.to_str().unwrap();
    // Lossy: the scenario holds deliberately broken lines, some not UTF-8.
    let scenario =
        String::from_utf8_lossy(&std::fs::read(repo().join(SCENARIO)).unwrap()).into_owned();
    let spawns: Vec<&str> = scenario
        .lines()
        .filter(|l| l.contains(r#""type":"agent.spawn""#))
        .collect();
    let mut agents: Vec<(String, String)> = spawns
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let ip = v["ip"].as_str().or(v["ips"][0].as_str())?;
            ip.parse::<std::net::IpAddr>().ok()?; // one spawn is broken on purpose
            Some((v["agent_id"].as_str()?.to_string(), ip.to_string()))
        })
        .collect();
    agents.sort();
    agents.dedup_by(|a, b| a.0 == b.0);
    assert!(agents.len() >= 5, "the scenario spawns a fleet");

    let mut first = Live::start(&[
        "run",
        "--state",
        state_arg,
        "--snapshot-secs",
        "1",
        "--max-latency-ms",
        "5",
    ]);
    first.stderr_until("starting empty");
    for spawn in &spawns {
        first.send(spawn);
    }
    let fed = std::time::SystemTime::now();
    let deadline = Instant::now() + LIVE_WAIT;
    while std::fs::metadata(&state)
        .and_then(|m| m.modified())
        .map_or(true, |saved| saved <= fed)
    {
        assert!(Instant::now() < deadline, "no snapshot after the spawns");
        std::thread::sleep(Duration::from_millis(100));
    }
    first.child.kill().unwrap(); // SIGKILL: no shutdown snapshot, no cleanup
    first.child.wait().unwrap();

    let mut second = Live::start(&["run", "--state", state_arg]);
    let restored = second.stderr_until("state restored");
    assert!(
        restored.contains(&format!("({} agents)", agents.len())),
        "{restored}"
    );
    for (id, ip) in &agents {
        let flow = format!(
            r#"{{"type":"flow","ts":"2026-11-24T14:40:00Z","src_ip":"{ip}","src_port":40000,"dst_ip":"10.0.0.53","dst_port":53,"proto":"UDP"}}"#
        );
        let out = second.send(&flow);
        assert_eq!(
            out["clawwatch"]["agent"]["id"],
            id.as_str(),
            "a flow after the restart is attributed to the agent spawned before it: {out}"
        );
    }
    second.finish();
}

/// A damaged snapshot is reported and set aside; the run starts empty and
/// still judges every record.
#[test]
fn a_damaged_state_snapshot_is_reported_set_aside_and_never_fatal() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("state-damaged");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("clawwatch.state");
    std::fs::write(&state, b"\x93\x01\x02 not msgpack state").unwrap();
    let out = clawwatch(
        &["run", "--state", state.to_str().unwrap()],
        format!("{SPAWN_0X8A3F}\n{FORBIDDEN_FROM_0X8A3F}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not a readable clawwatch state snapshot") && err.contains("starting empty"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.join("clawwatch.state.rejected")).unwrap(),
        b"\x93\x01\x02 not msgpack state",
        "the damaged file is kept for inspection"
    );
    assert_eq!(lines(&out)[1]["clawwatch"]["verdict"], "alert");
    // The shutdown snapshot replaced it with a good one.
    let again = clawwatch(&["run", "--state", state.to_str().unwrap()], b"");
    assert!(
        stderr(&again).contains("state restored"),
        "{}",
        stderr(&again)
    );
}

/// The Prometheus endpoint counts exactly what came out.
#[test]
fn metrics_endpoint_counts_what_the_output_shows() {
    use std::io::Read;
    let mut live = Live::start(&[
        "run",
        "--metrics-listen",
        "127.0.0.1:0",
        "--max-latency-ms",
        "5",
    ]);
    let line = live.stderr_until("metrics on http://");
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .trim_end_matches("/metrics")
        .to_string();
    // Lossy: the scenario holds deliberately broken lines, some not UTF-8.
    let scenario =
        String::from_utf8_lossy(&std::fs::read(repo().join(SCENARIO)).unwrap()).into_owned();
    let mut alerts_by_stream = std::collections::BTreeMap::<String, u64>::new();
    for record in scenario.lines() {
        let v = live.send(record);
        if v["clawwatch"]["verdict"] == "alert" {
            *alerts_by_stream
                .entry(v["clawwatch"]["stream"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert!(!alerts_by_stream.is_empty());
    // Engine totals reach the endpoint within half a second of a batch.
    std::thread::sleep(std::time::Duration::from_millis(700));
    live.send(r#"{"note":"one more batch, so the totals are read"}"#);
    let get = |path: &str| {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        response
    };
    let body = get("/metrics");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for (stream, n) in &alerts_by_stream {
        let sample =
            format!("clawwatch_records_total{{stream=\"{stream}\",verdict=\"alert\"}} {n}\n");
        assert!(body.contains(&sample), "missing {sample} in\n{body}");
    }
    assert!(body.contains("clawwatch_findings_total{rule=\"egress.not_allowed\"}"));
    assert!(body.contains("clawwatch_incidents_open "));
    assert!(body.contains("clawwatch_batch_seconds_count "));
    assert!(get("/other").starts_with("HTTP/1.1 404"));
    let summary = live.finish();
    assert!(
        summary.contains("findings: egress.not_allowed"),
        "{summary}"
    );
    assert!(summary.contains("batches: "), "{summary}");
}

/// Mutation testing through the component: the bundled policy has no holes;
/// `ANY` on TCP 443 opens holes that are named, with exit status 1.
#[test]
fn selftest_finds_no_hole_in_the_bundled_policy_and_the_holes_of_any_on_443() {
    let clean = clawwatch(&["selftest", "--format", "json"], b"");
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    let report: Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!(report["holes"], 0, "{report}");
    assert_eq!(report["false_alarms"], 0, "{report}");
    let trials = report["trials"].as_array().unwrap();
    assert!(trials.len() > 40, "{}", trials.len());
    assert!(trials.iter().any(|t| t["outcome"] == "quiet"));
    assert!(
        trials
            .iter()
            .filter(|t| t["outcome"] == "caught")
            .all(|t| !t["rules"].as_array().unwrap().is_empty())
    );

    let holed = clawwatch(&["selftest", "testdata/selftest/any_on_443.toml"], b"");
    assert_eq!(holed.status.code(), Some(1), "{}", stderr(&holed));
    let text = String::from_utf8(holed.stdout).unwrap();
    let hole = text
        .lines()
        .find(|l| {
            l.starts_with("HOLE") && l.contains("unlisted_destination") && l.contains(":443/tcp")
        })
        .unwrap_or_else(|| panic!("no hole for an unlisted address on 443:\n{text}"));
    assert!(hole.contains("data_collector_v1"), "{hole}");
    assert!(text.contains("hole(s)"), "{text}");

    let broken = clawwatch(&["selftest", "testdata/cases/policy.toml.missing"], b"");
    assert_eq!(broken.status.code(), Some(2));
}

/// `--fields ecs` and `--fields ocsf` through the component: one ECS document
/// per record, and OCSF Detection Findings for incidents.
#[test]
fn ecs_and_ocsf_field_sets_through_the_component() {
    let input =
        std::fs::read(repo().join("testdata/cases/egress.not_allowed/fires.ndjson")).unwrap();
    let native = clawwatch(&["run", "--policy", "testdata/cases/policy.toml"], &input);
    let ecs = clawwatch(
        &[
            "run",
            "--policy",
            "testdata/cases/policy.toml",
            "--fields",
            "ecs",
        ],
        &input,
    );
    let (native, ecs) = (all_lines(&native), all_lines(&ecs));
    assert_eq!(native.len(), ecs.len());
    for (n, e) in native.iter().zip(&ecs) {
        assert_eq!(e["clawwatch"], n["clawwatch"]);
        assert_eq!(e["ecs"]["version"].as_str().is_some(), true);
        let alert = n["clawwatch"]["verdict"] == "alert";
        assert_eq!(e["event"]["kind"] == "alert", alert, "{e}");
    }
    let ocsf = clawwatch(
        &[
            "run",
            "--policy",
            "testdata/cases/policy.toml",
            "--fields",
            "ocsf",
        ],
        &input,
    );
    let findings: Vec<Value> = all_lines(&ocsf)
        .into_iter()
        .filter(|v| v["class_uid"] == 2004)
        .collect();
    let incidents = native
        .iter()
        .filter(|v| v["clawwatch"]["stream"] == "incident")
        .count();
    assert!(incidents > 0);
    assert_eq!(findings.len(), incidents);
    assert!(
        findings
            .iter()
            .all(|f| f["finding_info"]["uid"].is_string())
    );
}
