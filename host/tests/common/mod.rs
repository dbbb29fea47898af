//! What the tests that run the binary and real tools share: running
//! `clawwatch`, where Fluent Bit is, and the rule that a test needing a real
//! tool may skip only outside CI.
#![allow(dead_code)] // each test crate uses its part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fluent Bit 5.1.1 and WAMR's `wamrc` from `../shared/tools/fluent-bit`, or
/// `None` (the caller says SKIPPED) where that directory is absent. Under CI
/// (`CI` set) a missing tool fails the test instead.
pub fn fluent_bit_tools() -> Option<(PathBuf, PathBuf)> {
    let dir = repo().join("../shared/tools/fluent-bit");
    let (fluent_bit, wamrc) = (dir.join("fluent-bit"), dir.join("wamrc"));
    if fluent_bit.is_file() && wamrc.is_file() {
        return Some((fluent_bit, wamrc));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide Fluent Bit and wamrc at {}",
        dir.display()
    );
    eprintln!(
        "SKIPPED: no Fluent Bit and wamrc at {} (see its README)",
        dir.display()
    );
    None
}

/// The Kafka-protocol broker `tansu` from `../shared/tools/tansu`, or `None`
/// (the caller says SKIPPED) where it is absent; under CI its absence fails.
pub fn tansu() -> Option<PathBuf> {
    let tansu = repo().join("../shared/tools/tansu/tansu");
    if tansu.is_file() {
        return Some(tansu);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide tansu at {}",
        tansu.display()
    );
    eprintln!("SKIPPED: no Kafka broker (tansu) at {}", tansu.display());
    None
}

/// `program` (the binary, or a shell around it) to run in the repository,
/// with the compiled component cached for every test.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command.current_dir(repo()).env(
        "CLAWWATCH_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
    );
    command
}

/// Runs the `clawwatch` binary in the repository, however it ends.
pub fn clawwatch_output<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    command(env!("CARGO_BIN_EXE_clawwatch"))
        .args(args)
        .output()
        .unwrap()
}

/// [`clawwatch_output`], asserting the run succeeds.
pub fn clawwatch<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> Output {
    let out = clawwatch_output(args);
    assert!(
        out.status.success(),
        "clawwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A `clawwatch run` serving listeners: the addresses it said it listens on
/// (`listening on`, `metrics on`), its stdout, the rest of its stderr drained.
pub struct Listening {
    pub child: Child,
    pub addr: String,
    pub metrics: Option<String>,
    pub stdout: BufReader<std::process::ChildStdout>,
    said: mpsc::Receiver<String>,
}

impl Listening {
    /// Runs `program ARGS` (the binary, or `sh -c` around it) until it listens.
    pub fn start(program: &str, args: &[&str], wants_metrics: bool) -> Listening {
        let mut child = command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let (mut addr, mut metrics) = (None, None);
        while addr.is_none() || (wants_metrics && metrics.is_none()) {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "exited before listening"
            );
            if let Some(a) = line.trim().strip_prefix("clawwatch: listening on ") {
                addr = a.split_whitespace().next().map(str::to_string);
            }
            if let Some(m) = line.trim().strip_prefix("clawwatch: metrics on http://") {
                metrics = Some(m.trim_end_matches("/metrics").to_string());
            }
        }
        let (said_tx, said) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            let _ = said_tx.send(text);
        });
        Listening {
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            addr: addr.unwrap(),
            metrics,
            said,
        }
    }

    /// Ctrl-C; the run must end cleanly. Returns what it said on stderr.
    /// The metrics page, as text.
    pub fn metrics_text(&self) -> String {
        let metrics = self
            .metrics
            .as_deref()
            .expect("started with --metrics-listen");
        http(metrics, "GET", "/metrics", &[], b"")
            .expect("metrics")
            .1
    }

    /// `kill -9`: no shutdown, no last snapshot.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }

    pub fn stop(mut self) -> String {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(self.child.wait().unwrap().success());
        self.said
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default()
    }
}

/// A run a failed test left behind is killed, not leaked.
impl Drop for Listening {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The most memory a process has held resident so far (its high-water
/// mark, from /proc on Linux).
pub fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// One HTTP/1.1 request on its own connection: the status and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// `name` under the test target's scratch directory, emptied of what an
/// earlier run left there.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port free a moment ago, for a process that must be restarted on the same one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Records of one agent whose normal is many calls to one API, for tests
/// that push thousands of records through and must see no alert.
pub mod bulk_exporter {
    /// Its policy: no volume baseline, so only a wrong destination alerts.
    pub const POLICY: &str = r#"
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

    pub const SPAWN: &str = r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","agent_type":"data_collector_v1","deployment":"staging","ip":"10.20.0.15"}"#;
    pub const DNS: &str = r#"{"type":"dns","ts":"2026-11-24T14:30:05Z","client_ip":"10.20.0.15","resolver_ip":"10.0.0.53","qname":"api.internal.example.net","qtype":"A","answers":[{"data":"93.184.216.34","ttl":3600}]}"#;

    /// An allowed flow, numbered by its source port, two a second from 14:31
    /// on (well below the runaway rate).
    pub fn flow(n: usize) -> String {
        let secs = 14 * 3600 + 31 * 60 + n / 2;
        format!(
            r#"{{"type":"flow","ts":"2026-11-24T{:02}:{:02}:{:02}Z","src_ip":"10.20.0.15","src_port":{},"dst_ip":"93.184.216.34","dst_port":443,"proto":"TCP","bytes":900}}"#,
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            10000 + n
        )
    }

    /// [`POLICY`] in `policy.toml` of a fresh scratch directory `name`.
    pub fn policy_in(name: &str) -> std::path::PathBuf {
        let path = super::fresh_dir(name).join("policy.toml");
        std::fs::write(&path, POLICY).unwrap();
        path
    }
}
