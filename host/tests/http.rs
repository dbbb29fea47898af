//! The acked HTTP path: records POSTed in (`--http-listen`, as Vector's
//! `http` sink sends them) and out (`--output http://`, to Vector's
//! `http_server` source with acknowledgements). A request is answered 200
//! only once its records are out downstream; a receiver that fails or
//! restarts gets the batch again; `kill -9` loses nothing a sender was told
//! is safe, and forgets nothing it learnt.

mod common;

use common::bulk_exporter::{self, DNS, SPAWN, flow};
use common::{Listening, http};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn body_of(lines: &[String]) -> Vec<u8> {
    let mut body = lines.join("\n").into_bytes();
    body.push(b'\n');
    body
}

fn read_lines(stdout: &mut BufReader<std::process::ChildStdout>, n: usize) -> Vec<Value> {
    (0..n)
        .map(|_| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
        })
        .collect()
}

/// The scenario POSTed in one request comes out exactly as `clawwatch run`
/// writes it from the file; the request is answered once it is out. The
/// format in the path, gzip, and each kind of bad request are answered as
/// documented, and nothing bad is taken in silently.
#[test]
fn posted_batches_come_out_as_from_a_file_and_bad_requests_are_answered_plainly() {
    let scenario = common::repo().join("testdata/scenario/records.ndjson");
    let expected = common::clawwatch(&["run", "--input", scenario.to_str().unwrap()]).stdout;
    let expected: Vec<&[u8]> = expected
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut run = Listening::start(
        env!("CARGO_BIN_EXE_clawwatch"),
        &[
            "run",
            "--http-listen",
            "127.0.0.1:0",
            "--connection-budget-mib",
            "1",
            "--max-line-bytes",
            "4096",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        true,
    );
    let addr = run.addr.clone();
    // Posted from another thread: the answer waits until the output is read.
    let posted = std::thread::spawn({
        let (addr, body) = (addr.clone(), std::fs::read(&scenario).unwrap());
        move || http(&addr, "POST", "/", &[], &body).unwrap()
    });
    for want in &expected {
        let mut got = String::new();
        run.stdout.read_line(&mut got).unwrap();
        assert_eq!(got.trim_end().as_bytes(), *want);
    }
    let (status, said) = posted.join().unwrap();
    assert_eq!((status, said.trim()), (200, "delivered"));

    // The path names the format; a gzip body is expanded.
    let pmacct =
        std::fs::read_to_string(common::repo().join("testdata/formats/pmacct.ndjson")).unwrap();
    let first = pmacct
        .lines()
        .find(|l| l.contains("timestamp_start"))
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("{first}\n").as_bytes()).unwrap();
    let packed = gz.finish().unwrap();
    let (status, _) = http(
        &addr,
        "POST",
        "/pmacct",
        &[("Content-Encoding", "gzip")],
        &packed,
    )
    .unwrap();
    assert_eq!(status, 200);
    let got = &read_lines(&mut run.stdout, 1)[0];
    assert_eq!(got["clawwatch"]["stream"], "flow", "{got}");
    assert_ne!(
        got["clawwatch"]["verdict"], "error",
        "read as pmacct: {got}"
    );

    let refused = [
        ("GET", "/", &[][..], b"".to_vec(), 405, "POST NDJSON"),
        (
            "POST",
            "/nonesuch",
            &[][..],
            b"{}\n".to_vec(),
            404,
            "names no input format",
        ),
        (
            "POST",
            "/",
            &[][..],
            br#"[{"type":"flow"}]"#.to_vec(),
            400,
            "newline_delimited",
        ),
        (
            "POST",
            "/",
            &[("Content-Encoding", "gzip")][..],
            b"not gzip".to_vec(),
            400,
            "not gzip",
        ),
        (
            "POST",
            "/",
            &[("Content-Encoding", "br")][..],
            b"{}".to_vec(),
            415,
            "gzip or none",
        ),
    ];
    for (method, path, headers, body, status, says) in refused {
        let (got, text) = http(&addr, method, path, headers, &body).unwrap();
        assert_eq!(got, status, "{method} {path}: {text}");
        assert!(text.contains(says), "{method} {path}: {text}");
    }
    // A body announced over the budget is refused before it is read.
    let mut conn = TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("--connection-budget-mib"), "{answer}");
    // A gzip body is bounded by what it expands to, not what it weighs.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 4 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    let (got, text) = http(&addr, "POST", "/", &[("Content-Encoding", "gzip")], &bomb).unwrap();
    assert_eq!(got, 400, "{text}");
    assert!(text.contains("expands beyond"), "{text}");
    assert_eq!(http(&addr, "GET", "/health", &[], b"").unwrap().0, 200);
    // A line over --max-line-bytes passes through tagged, in order, and is counted.
    let long = format!("{{\"pad\":\"{}\"}}\nnot json\n", "x".repeat(5000));
    let posted = std::thread::spawn({
        let addr = addr.clone();
        move || http(&addr, "POST", "/", &[], long.as_bytes()).unwrap().0
    });
    let got = read_lines(&mut run.stdout, 2);
    assert!(got[0]["raw_base64"].is_string(), "{}", got[0]);
    assert!(
        got[0]["clawwatch"]["error"]
            .as_str()
            .unwrap()
            .contains("--max-line-bytes"),
        "{}",
        got[0]
    );
    assert_eq!(got[1]["clawwatch"]["verdict"], "error", "{}", got[1]);
    assert_eq!(posted.join().unwrap(), 200);
    assert!(
        run.metrics_text()
            .contains("clawwatch_oversized_lines_total 1\n")
    );
    assert!(
        run.metrics_text()
            .contains("clawwatch_connections_cut_total 1"),
        "the body over budget is counted"
    );
    run.stop();
}

/// What a test receiver saw: each request's body, and whether it was answered 200.
#[derive(Default)]
struct Received {
    delivered: Vec<String>,
    requests: usize,
}

/// A receiver like Vector's `http_server` source, answering 200 after
/// `hold`. A `flaky` one misbehaves first: the first request is answered 503,
/// the second is read and the connection dropped unanswered, then it goes
/// away for a while (a restart) and comes back on the same port.
fn receiver(hold: Duration, flaky: bool) -> (String, Arc<Mutex<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got = Arc::new(Mutex::new(Received::default()));
    let (shared, at) = (got.clone(), addr.clone());
    std::thread::spawn(move || {
        let mut listener = Some(listener);
        loop {
            let Ok((conn, _)) = listener.as_ref().unwrap().accept() else {
                return;
            };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut conn = conn;
            while let Some(body) = read_request(&mut reader) {
                let n = {
                    let mut g = shared.lock().unwrap();
                    g.requests += 1;
                    g.requests
                };
                match n {
                    1 if flaky => {
                        let _ = conn.write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
                        );
                    }
                    2 if flaky => {
                        // Taken in and lost: the receiver dies before it answers, and
                        // is away for a second before it is back on the same port.
                        drop(listener.take());
                        let _ = conn.shutdown(std::net::Shutdown::Both);
                        std::thread::sleep(Duration::from_secs(1));
                        listener = Some(TcpListener::bind(&at).unwrap());
                        break;
                    }
                    _ => {
                        std::thread::sleep(hold);
                        shared.lock().unwrap().delivered.push(body);
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    }
                }
            }
        }
    });
    (addr, got)
}

/// One request's body, or `None` when the connection ends.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(String::from_utf8(body).unwrap())
}

/// The source ports of the flows in NDJSON text.
fn ports(ndjson: &str) -> BTreeSet<u64> {
    ndjson
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["src_port"].as_u64())
        .collect()
}

/// HTTP in, HTTP out to a receiver that refuses, drops a batch and restarts:
/// every record arrives, and each request is answered only after the
/// receiver answered 200 for its records.
#[test]
fn the_http_output_resends_until_answered_and_senders_hear_only_then() {
    let hold = Duration::from_millis(300);
    let (receiver, got) = receiver(hold, true);
    let output = format!("http://{receiver}/ingest");
    let policy = bulk_exporter::policy_in("http-output");
    let run = Listening::start(
        env!("CARGO_BIN_EXE_clawwatch"),
        &[
            "run",
            "--http-listen",
            "127.0.0.1:0",
            "--output",
            &output,
            "--policy",
            policy.to_str().unwrap(),
        ],
        false,
    );
    let mut sent = BTreeSet::new();
    for batch in 0..4 {
        let mut lines = if batch == 0 {
            vec![SPAWN.to_string(), DNS.to_string()]
        } else {
            vec![]
        };
        lines.extend((batch * 500..(batch + 1) * 500).map(flow));
        sent.extend(ports(&lines.join("\n")));
        let asked = Instant::now();
        let (status, _) = http(&run.addr, "POST", "/", &[], &body_of(&lines)).unwrap();
        assert_eq!(status, 200);
        assert!(asked.elapsed() >= hold, "answered before the receiver did");
        let delivered = ports(&got.lock().unwrap().delivered.join("\n"));
        assert!(
            lines
                .iter()
                .flat_map(|l| ports(l))
                .all(|p| delivered.contains(&p)),
            "batch {batch} answered before all its records were delivered"
        );
    }
    let received = got.lock().unwrap();
    assert!(received.requests >= 6, "{} requests", received.requests);
    let delivered = ports(&received.delivered.join("\n"));
    assert_eq!(delivered, sent, "every record arrives");
    for line in received
        .delivered
        .join("\n")
        .lines()
        .filter(|l| !l.is_empty())
    {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_ne!(v["clawwatch"]["verdict"], "alert", "{v}");
    }
    drop(received);
    run.stop();
}

/// `kill -9` while a sender posts with acks and `--state` is kept: every
/// record the sender was told is out is out, the ones it was not told about
/// it sends again, and after the restart the agent learnt before the kill is
/// still known: no record lost, no false alert.
#[test]
fn kill_9_mid_stream_loses_no_acked_record_and_raises_no_false_alert() {
    let policy = bulk_exporter::policy_in("http-kill-9");
    let state = policy.with_file_name("state");
    std::fs::create_dir_all(&state).unwrap();
    // Each batch is in flight for 200 ms downstream: the kill finds one unanswered.
    let (downstream, got) = receiver(Duration::from_millis(200), false);
    let output = format!("http://{downstream}/");
    let addr = format!("127.0.0.1:{}", common::free_port());
    let args = [
        "run",
        "--http-listen",
        &addr,
        "--output",
        &output,
        "--state",
        state.to_str().unwrap(),
        "--snapshot-secs",
        "3600",
        "--policy",
        policy.to_str().unwrap(),
    ];
    let first = Listening::start(env!("CARGO_BIN_EXE_clawwatch"), &args, false);
    // The sender: each batch until it is answered 200, as Vector's http sink retries.
    let sender = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let mut retried = 0;
            for batch in 0..30 {
                let mut lines = if batch == 0 {
                    vec![SPAWN.to_string(), DNS.to_string()]
                } else {
                    vec![]
                };
                lines.extend((batch * 200..(batch + 1) * 200).map(flow));
                while http(&addr, "POST", "/", &[], &body_of(&lines))
                    .map(|a| a.0)
                    .ok()
                    != Some(200)
                {
                    retried += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            retried
        }
    });
    // Kill once some batches are out, long before any snapshot.
    let started = Instant::now();
    while got.lock().unwrap().delivered.len() < 5 {
        assert!(started.elapsed() < Duration::from_secs(60), "no output");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill();
    let second = Listening::start(env!("CARGO_BIN_EXE_clawwatch"), &args, false);
    let retried = sender.join().unwrap();
    second.stop();
    assert!(retried > 0, "the kill found no request in flight");
    let delivered = got.lock().unwrap().delivered.join("");
    let out: Vec<Value> = delivered
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let flows: Vec<&Value> = out
        .iter()
        .filter(|v| v["clawwatch"]["stream"] == "flow")
        .collect();
    let seen: BTreeSet<u64> = flows
        .iter()
        .filter_map(|v| v["src_port"].as_u64())
        .collect();
    assert_eq!(
        seen.len(),
        6000,
        "every flow out at least once ({retried} retries)"
    );
    for v in &flows {
        assert_eq!(v["clawwatch"]["verdict"], "allow", "{v}");
        assert_eq!(v["clawwatch"]["agent"]["id"], "0x8a3f", "{v}");
    }
    eprintln!(
        "kill -9 mid-stream: 6000 flows, {} lines out, {retried} requests resent, 0 lost, 0 alerts",
        out.len()
    );
}
