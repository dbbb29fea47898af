//! The Fluent forward protocol end to end: real clients send to
//! `clawwatch run --forward-listen`, which forwards the enriched records to a
//! forward receiver in this test. Senders: PyPI's `fluent-logger` (Message
//! mode, EventTime) and chunks built by Python's `msgpack` (PackedForward and
//! gzip CompressedPackedForward, asking for acks). Acks are honoured: a
//! sender's chunk is acked only after the receiver acked the enriched records.
//!
//! Needs `python3` with `fluent-logger` and `msgpack` (`.ci/run` installs them);
//! without them the test says so and passes, except under CI.

use serde_json::Value as Json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn python_ready() -> bool {
    Command::new("python3")
        .args(["-c", "import fluent.sender, msgpack"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// What the receiver got: (tag, record as JSON).
type Received = Arc<Mutex<Vec<(String, Json)>>>;

/// A forward receiver: refuses (closes without acking) the first `refuse`
/// messages it reads, then acks every message.
fn receiver(refuse: usize) -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got: Received = Arc::default();
    let store = got.clone();
    std::thread::spawn(move || {
        let mut refused = 0;
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            'conn: loop {
                let n = match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    let mut cur = std::io::Cursor::new(&buf[..]);
                    let Ok(v) = rmpv::decode::read_value(&mut cur) else {
                        break;
                    };
                    buf.drain(..cur.position() as usize);
                    if refused < refuse {
                        refused += 1;
                        break 'conn; // drop the connection: no ack
                    }
                    let parts = v.as_array().unwrap();
                    let tag = parts[0].as_str().unwrap().to_string();
                    for entry in parts[1].as_array().unwrap() {
                        let record = &entry.as_array().unwrap()[1];
                        let json: Json = serde_json::from_str(&rmpv_json(record)).unwrap();
                        store.lock().unwrap().push((tag.clone(), json));
                    }
                    let chunk_id = parts[2]
                        .as_map()
                        .unwrap()
                        .iter()
                        .find(|(k, _)| k.as_str() == Some("chunk"))
                        .unwrap()
                        .1
                        .as_str()
                        .unwrap()
                        .to_string();
                    let mut ack = Vec::new();
                    rmpv::encode::write_value(
                        &mut ack,
                        &rmpv::Value::Map(vec![(
                            rmpv::Value::from("ack"),
                            rmpv::Value::from(chunk_id),
                        )]),
                    )
                    .unwrap();
                    conn.write_all(&ack).unwrap();
                }
            }
        }
    });
    (addr, got)
}

/// A msgpack value as JSON text (records hold only JSON-like values here).
fn rmpv_json(v: &rmpv::Value) -> String {
    match v {
        rmpv::Value::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!(
                    "{}:{}",
                    serde_json::to_string(k.as_str().unwrap()).unwrap(),
                    rmpv_json(v)
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
        rmpv::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(rmpv_json).collect::<Vec<_>>().join(",")
        ),
        rmpv::Value::String(s) => serde_json::to_string(s.as_str().unwrap()).unwrap(),
        rmpv::Value::Nil => "null".into(),
        other => other.to_string(),
    }
}

fn start(out: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clawwatch"))
        .args([
            "run",
            "--policy",
            "testdata/policy.toml",
            "--forward-listen",
            "127.0.0.1:0",
            "--output",
            &format!("forward://{out}"),
        ])
        .current_dir(repo())
        .env(
            "CLAWWATCH_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "clawwatch exited before listening"
        );
        if let Some(addr) = line.trim().strip_prefix("clawwatch: listening on ") {
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            return (child, addr.to_string());
        }
    }
}

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn wait_for(got: &Received, n: usize) {
    for _ in 0..100 {
        if got
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t != "clawwatch.incident")
            .count()
            >= n
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("only {} records arrived", got.lock().unwrap().len());
}

fn skip() -> bool {
    if python_ready() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install fluent-logger and msgpack"
    );
    eprintln!(
        "SKIPPED: python3 with fluent-logger and msgpack missing (pip install fluent-logger msgpack)"
    );
    true
}

#[test]
fn fluent_logger_records_arrive_enriched_and_in_order() {
    if skip() {
        return;
    }
    let (out, got) = receiver(0);
    let (child, addr) = start(&out);
    let (host, port) = addr.rsplit_once(':').unwrap();
    // The scenario holds a non-UTF-8 line on purpose; a forward sender only sends records.
    let scenario = String::from_utf8_lossy(
        &std::fs::read(repo().join("testdata/scenario/records.ndjson")).unwrap(),
    )
    .into_owned();
    let records: Vec<&str> = scenario
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Map<String, Json>>(l).is_ok())
        .collect();
    assert!(records.len() > 250, "{}", records.len());
    let input = records.join("\n");
    // fluent-logger reads its records from stdin.
    let mut feed = Command::new("python3")
        .arg("-c")
        .arg("import sys, json\nfrom fluent import sender\ns = sender.FluentSender('agents', host=sys.argv[1], port=int(sys.argv[2]), nanosecond_precision=True)\nfor line in sys.stdin.read().splitlines():\n    assert s.emit_with_time('scenario', 1795530600.25, json.loads(line)), s.last_error\ns.close()\n")
        .args([host, port])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    feed.stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(feed.wait().unwrap().success());
    wait_for(&got, records.len());
    stop(child);
    let got = got.lock().unwrap();
    let enriched: Vec<&Json> = got
        .iter()
        .filter(|(t, _)| t == "agents.scenario")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(enriched.len(), records.len());
    for (sent, back) in records.iter().zip(&enriched) {
        let sent: Json = serde_json::from_str(sent).unwrap();
        // In order, unchanged apart from the clawwatch note.
        let mut back = (*back).clone();
        assert!(back.as_object_mut().unwrap().remove("clawwatch").is_some());
        assert_eq!(back, sent);
    }
    assert!(
        enriched
            .iter()
            .any(|r| r["clawwatch"]["verdict"] == "alert")
    );
    assert!(
        got.iter()
            .any(|(t, r)| t == "clawwatch.incident" && r["clawwatch"]["stream"] == "incident")
    );
}

/// Sends one PackedForward chunk (gzip or not) built by Python's msgpack and
/// waits for clawwatch's ack; prints the ack.
const PACKED: &str = r#"
import sys, json, socket, gzip, msgpack
host, port, compress = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "gzip"
entries = b""
for i, line in enumerate(sys.stdin.read().splitlines()):
    t = msgpack.ExtType(0, (1795530600 + i).to_bytes(4, "big") + (0).to_bytes(4, "big"))
    entries += msgpack.packb([[t, {}], json.loads(line)])
option = {"chunk": "chunk-from-python", "size": 1}
if compress:
    entries = gzip.compress(entries)
    option["compressed"] = "gzip"
s = socket.create_connection((host, port))
s.sendall(msgpack.packb(["agents.flows", entries, option], use_bin_type=True))
s.settimeout(30)
unpacker = msgpack.Unpacker(raw=False)
while True:
    data = s.recv(4096)
    if not data:
        raise SystemExit("closed before the ack")
    unpacker.feed(data)
    for msg in unpacker:
        print(msg["ack"])
        raise SystemExit(0)
"#;

fn send_packed(addr: &str, compress: bool, lines: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PACKED)
        .args([host, port, if compress { "gzip" } else { "plain" }])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const FLOWS: &[&str] = &[
    r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","agent_type":"data_collector_v1","ip":"10.20.0.15"}"#,
    r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.0.15","src_port":51000,"dst_ip":"203.0.113.9","dst_port":8443,"proto":"TCP"}"#,
];

#[test]
fn packed_and_gzip_chunks_are_acked_after_the_receiver_acks() {
    if skip() {
        return;
    }
    let (out, got) = receiver(0);
    let (child, addr) = start(&out);
    assert_eq!(send_packed(&addr, false, FLOWS), "chunk-from-python");
    assert_eq!(send_packed(&addr, true, FLOWS), "chunk-from-python");
    wait_for(&got, 4);
    stop(child);
    let got = got.lock().unwrap();
    let flows: Vec<&Json> = got
        .iter()
        .filter(|(t, r)| t == "agents.flows" && r["type"] == "flow")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(flows.len(), 2);
    assert_eq!(
        flows[0]["clawwatch"]["findings"][0]["rule"],
        "egress.not_allowed"
    );
}

#[test]
fn a_receiver_failing_mid_stream_gets_the_chunk_again_and_nothing_is_lost() {
    if skip() {
        return;
    }
    // The receiver drops the first message it reads without acking.
    let (out, got) = receiver(1);
    let (child, addr) = start(&out);
    assert_eq!(
        send_packed(&addr, true, FLOWS),
        "chunk-from-python",
        "acked only once the resend was acked"
    );
    wait_for(&got, 2);
    stop(child);
    assert_eq!(
        got.lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == "agents.flows")
            .count(),
        2
    );
}

#[test]
fn forward_heartbeats_are_answered() {
    let (out, _) = receiver(0);
    let (child, addr) = start(&out);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(&[0], &addr).unwrap();
    let mut buf = [9u8; 8];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[0]);
    stop(child);
}

/// A record msgpack cannot carry as a map (nested deeper than the parser
/// goes, a number beyond f64) still arrives, whole, as text with its verdict:
/// an agent cannot hide a record by shaping it so.
#[test]
fn records_the_forward_output_cannot_encode_arrive_as_text_with_their_verdict() {
    let (out, got) = receiver(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("forward-uncarried");
    std::fs::create_dir_all(&dir).unwrap();
    let deep = format!(
        "{{\"type\":\"note\",\"x\":{}1{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let huge = r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.9.9","src_port":51000,"dst_ip":"203.0.113.9","dst_port":8443,"proto":"TCP","bytes":100,"sampling_error":1e999}"#;
    let input = dir.join("input.ndjson");
    std::fs::write(&input, format!("{deep}\n{huge}\n{}\n", FLOWS[0])).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_clawwatch"))
        .args(["run", "--policy", "testdata/policy.toml", "--input"])
        .arg(&input)
        .args(["--output", &format!("forward://{out}")])
        .current_dir(repo())
        .env(
            "CLAWWATCH_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
        )
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(&got, 3);
    let got = got.lock().unwrap();
    let records: Vec<&Json> = got
        .iter()
        .filter(|(t, _)| t != "clawwatch.incident")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(records.len(), 3, "{records:?}");
    // The original bytes, then the note clawwatch appended.
    assert!(
        records[0]["raw"]
            .as_str()
            .unwrap()
            .starts_with(&deep[..deep.len() - 1])
    );
    assert_eq!(records[0]["clawwatch"]["verdict"], "not_applicable");
    assert!(
        records[0]["clawwatch"]["carrier_error"]
            .as_str()
            .unwrap()
            .contains("travels whole, as text")
    );
    assert!(
        records[1]["raw"]
            .as_str()
            .unwrap()
            .contains("\"sampling_error\":1e999")
    );
    assert_eq!(
        records[1]["clawwatch"]["verdict"], "alert",
        "an unknown agent's call: the verdict survives"
    );
    assert_eq!(records[2]["type"], "agent.spawn");
}
