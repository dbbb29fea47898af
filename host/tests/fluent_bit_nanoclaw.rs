//! NanoClaw v2's text log through the shipped Fluent Bit input
//! (`pipelines/fluent-bit/nanoclaw-input.conf`: tail with the `nanoclaw`
//! multiline parser, and the Lua filter that adds the read time) in the real
//! Fluent Bit of `../shared/tools/fluent-bit`, then through `clawwatch run`:
//! every line whole, stack traces joined, and dated by Fluent Bit's read time.
//! Skipped (saying so) where that directory is absent, never under CI.

mod common;

use common::repo;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn nanoclaw_text_through_real_fluent_bit() {
    let Some((fluent_bit, _)) = common::fluent_bit_tools() else {
        return;
    };
    let pipelines = repo().join("pipelines/fluent-bit").canonicalize().unwrap();
    let dir = common::fresh_dir("fluent-bit-nanoclaw");
    std::fs::write(
        dir.join("test.conf"),
        format!(
            "[SERVICE]\n    Flush 1\n    Log_Level warn\n    Parsers_File {p}/nanoclaw-parsers.conf\n\n@INCLUDE {p}/nanoclaw-input.conf\n\n[OUTPUT]\n    Name file\n    Match *\n    Path {d}\n    File out.ndjson\n    Format plain\n",
            p = pipelines.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    let log = repo()
        .join("testdata/formats/frameworks/nanoclaw_v2.log")
        .canonicalize()
        .unwrap();
    let mut child = Command::new(&fluent_bit)
        .arg("-c")
        .arg(dir.join("test.conf"))
        .env("NANOCLAW_LOG", &log)
        .current_dir(&pipelines)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = dir.join("out.ndjson");
    let started = Instant::now();
    let records = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().count() >= 6 || started.elapsed() > Duration::from_secs(30) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let lines: Vec<Value> = records
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        6,
        "7 lines, the stack trace joined to its line: {records}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        lines[5]["log"]
            .as_str()
            .unwrap()
            .contains("Container spawn error")
            && lines[5]["log"].as_str().unwrap().contains("    at file:")
    );
    let read = clawwatch_plugin::time::Timestamp::parse_rfc3339(
        lines[0]["time"].as_str().expect("the read time"),
    )
    .unwrap();

    let judged = common::clawwatch(&[
        "run".as_ref(),
        "--policy".as_ref(),
        "testdata/formats/frameworks.toml".as_ref(),
        "--input".as_ref(),
        out.as_os_str(),
    ]);
    let notes: Vec<Value> = String::from_utf8(judged.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["clawwatch"].clone())
        .filter(|c| c["stream"] != "incident")
        .collect();
    let spawn = &notes[0];
    assert_eq!(spawn["agent"]["id"], "nanoclaw/sess-1796239200-main");
    // 20:20:00.118 at +01:00, on the local day Fluent Bit read it (or the day
    // before, for a clock more than 12 hours past the read time).
    let ts = spawn["ts"].as_str().unwrap();
    assert!(ts.ends_with("T19:20:00.118Z"), "{spawn}");
    let at = clawwatch_plugin::time::Timestamp::parse_rfc3339(ts).unwrap();
    let hour = 3_600_000_000_000i64;
    assert!(
        at.0 <= read.0 + 12 * hour && at.0 > read.0 - 36 * hour,
        "{ts} against a read at {}",
        read.to_rfc3339()
    );
    assert_eq!(
        notes[1]["verdict"], "not_applicable",
        "OneCLI gateway applied"
    );
    assert!(
        notes[4]["note"]
            .as_str()
            .unwrap()
            .contains("group_addresses"),
        "the Research group has no address in the policy"
    );
    for i in [2, 3, 5] {
        assert_eq!(notes[i]["stream"], "control", "line {i}: {}", notes[i]);
        assert!(notes[i]["error"].is_null(), "line {i}: {}", notes[i]);
    }
    assert_eq!(
        notes[3]["agent"]["id"], "nanoclaw/sess-1796239200-main",
        "Container exited"
    );
}
