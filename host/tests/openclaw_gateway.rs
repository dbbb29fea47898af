//! A real OpenClaw gateway, followed live: `openclaw@2026.9.6` from npm under
//! Node 24, bound to loopback with token auth, its model a stub on loopback
//! (`testdata/openclaw/stub_model.py`) that answers with a `web_fetch` tool
//! call. `clawwatch run --openclaw-gateway` follows it from before the first
//! turn to after the second, while flow and DNS records arrive over TCP.
//!
//! Needs Node 24 and the openclaw package: `.ci/run` installs them and sets
//! `CLAWWATCH_NODE` and `CLAWWATCH_OPENCLAW_DIR`. Without them the test says
//! SKIPPED and passes, except under CI, where it fails.

mod common;

use common::free_port;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "clawwatch-test-token-5f1c";

struct Tools {
    node: PathBuf,
    openclaw: PathBuf,
}

fn tools() -> Option<Tools> {
    let node = PathBuf::from(std::env::var_os("CLAWWATCH_NODE")?);
    let dir = PathBuf::from(std::env::var_os("CLAWWATCH_OPENCLAW_DIR")?);
    let openclaw = dir.join("node_modules/openclaw/openclaw.mjs");
    (node.exists() && openclaw.exists()).then_some(Tools { node, openclaw })
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A child process killed when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines a child writes, collected as they come.
fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    eprintln!("openclaw_gateway: waiting for {what}");
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn now_rfc3339() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    clawwatch_plugin::time::Timestamp(nanos).to_rfc3339()
}

struct Gateway {
    _model: Guard,
    _gateway: Guard,
    port: u16,
    env: Vec<(String, PathBuf)>,
    log: Arc<Mutex<Vec<String>>>,
}

fn start_gateway(tools: &Tools, dir: &Path) -> Gateway {
    let port_file = dir.join("model.port");
    let model = Command::new("python3")
        .arg(repo().join("testdata/openclaw/stub_model.py"))
        .arg(&port_file)
        .env("TOOL", "web_fetch")
        .env(
            "TOOL_URL",
            "https://api.weather.example/v1/forecast?city=berlin",
        )
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs the stub model");
    let model = Guard(model);
    wait_for("the stub model", Duration::from_secs(20), || {
        std::fs::read_to_string(&port_file).is_ok_and(|p| !p.is_empty())
    });
    let model_port = std::fs::read_to_string(&port_file).unwrap();
    let state = dir.join("state");
    std::fs::create_dir_all(dir.join("home")).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let port = free_port();
    let config = serde_json::json!({
        "gateway": {"mode": "local", "bind": "loopback", "port": port,
                    "auth": {"mode": "token", "token": TOKEN}},
        "agents": {"defaults": {"model": {"primary": "stub/stub-model"}}},
        "models": {"mode": "merge", "providers": {"stub": {
            "baseUrl": format!("http://127.0.0.1:{model_port}/v1"), "apiKey": "stub",
            "api": "openai-completions",
            "models": [{"id": "stub-model", "name": "Stub", "reasoning": false, "input": ["text"],
                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                        "contextWindow": 128000, "maxTokens": 4096}]}}}
    });
    std::fs::write(state.join("openclaw.json"), config.to_string()).unwrap();
    let env = vec![
        ("OPENCLAW_STATE_DIR".to_string(), state.clone()),
        (
            "OPENCLAW_CONFIG_PATH".to_string(),
            state.join("openclaw.json"),
        ),
        ("HOME".to_string(), dir.join("home")),
    ];
    let mut gateway = Command::new(&tools.node);
    gateway
        .arg(&tools.openclaw)
        .args(["gateway", "run", "--bind", "loopback", "--auth", "token"])
        .args(["--port", &port.to_string(), "--token", TOKEN])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut gateway = gateway.spawn().expect("node runs the openclaw gateway");
    let log = collect(gateway.stdout.take().unwrap());
    let gateway = Guard(gateway);
    wait_for("the gateway to be ready", Duration::from_secs(120), || {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("[gateway] ready"))
    });
    Gateway {
        _model: model,
        _gateway: gateway,
        port,
        env,
        log,
    }
}

/// One agent turn through the gateway, as an operator would start it.
fn agent_turn(tools: &Tools, gateway: &Gateway, session: &str) {
    let out = Command::new(&tools.node)
        .arg(&tools.openclaw)
        .args(["agent", "--agent", "main", "--json"])
        .args(["--session-key", &format!("agent:main:{session}")])
        .args(["--message", "What is the weather in Berlin?"])
        .envs(gateway.env.iter().map(|(k, v)| (k, v)))
        .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
        .env(
            "OPENCLAW_GATEWAY_URL",
            format!("ws://127.0.0.1:{}", gateway.port),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openclaw agent failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gateway.log.lock().unwrap().join("\n")
    );
}

fn clawwatch(dir: &Path, gateway_port: u16, token: &str, listen: Option<u16>) -> Child {
    std::fs::write(
        dir.join("policy.toml"),
        r#"
[monitor]
agent_subnets = ["127.0.0.0/8"]

[inputs.openclaw]
agent_type = "assistant"
gateway_addresses = ["127.0.0.1"]

[agent_profile.assistant]
allowed_outbound = [{ protocol = "TCP", port = 443, destination = "api.weather.example" }]

[agent_profile.openclaw_gateway]
allowed_outbound = [{ protocol = "TCP", port = 443, destination = "api.anthropic.com" }]
"#,
    )
    .unwrap();
    std::fs::write(dir.join("token"), token).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawwatch"));
    cmd.arg("run")
        .arg("--policy")
        .arg(dir.join("policy.toml"))
        .args([
            "--openclaw-gateway",
            &format!("ws://127.0.0.1:{gateway_port}"),
        ])
        .arg("--openclaw-token-file")
        .arg(dir.join("token"))
        .arg("--openclaw-device-key")
        .arg(dir.join("device.key"))
        .args(["--max-latency-ms", "50"])
        .env(
            "CLAWWATCH_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(port) = listen {
        cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
    }
    cmd.spawn().unwrap()
}

fn judged(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect()
}

#[test]
fn a_real_gateway_followed_live() {
    let Some(tools) = tools() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Node 24 and openclaw@2026.9.6 (CLAWWATCH_NODE, CLAWWATCH_OPENCLAW_DIR)"
        );
        eprintln!(
            "SKIPPED: no real OpenClaw (set CLAWWATCH_NODE to Node 24 and CLAWWATCH_OPENCLAW_DIR to a directory with `npm install openclaw@2026.9.6`; .ci/run does)"
        );
        return;
    };
    let dir = common::fresh_dir("openclaw-gateway");
    let gateway = start_gateway(&tools, &dir);

    // A wrong token is a clear error, not a retry loop.
    let mut refused = clawwatch(&dir, gateway.port, "not-the-token", None);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "a refused token must end the run"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("refused the connection") && stderr.contains("--openclaw-token-file"),
        "{stderr}"
    );

    let listen = free_port();
    let mut child = clawwatch(&dir, gateway.port, TOKEN, Some(listen));
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let child = Guard(child);
    wait_for(
        "clawwatch to follow the gateway",
        Duration::from_secs(60),
        || {
            err.lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("following OpenClaw gateway"))
        },
    );

    agent_turn(&tools, &gateway, "clawwatch-1");
    wait_for("the tool call's intent", Duration::from_secs(30), || {
        out.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("calls api.weather.example:443"))
    });
    // The fetch the tool call announced, and a call no run declared, from the gateway's address.
    let now = now_rfc3339();
    let records = [
        format!(
            r#"{{"type":"dns","ts":"{now}","client_ip":"127.0.0.1","resolver_ip":"127.0.0.53","qname":"api.weather.example","answers":[{{"data":"203.0.113.80","ttl":300}}]}}"#
        ),
        format!(
            r#"{{"type":"flow","ts":"{now}","src_ip":"127.0.0.1","src_port":51001,"dst_ip":"203.0.113.80","dst_port":443,"proto":"TCP","bytes":5100,"packets":9}}"#
        ),
        format!(
            r#"{{"type":"flow","ts":"{now}","src_ip":"127.0.0.1","src_port":51002,"dst_ip":"198.51.100.66","dst_port":443,"proto":"TCP","bytes":900,"packets":4}}"#
        ),
    ];
    let mut tcp = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    for r in &records {
        writeln!(tcp, "{r}").unwrap();
    }
    tcp.flush().unwrap();
    wait_for("the flows' verdicts", Duration::from_secs(30), || {
        out.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(r#""src_port":51002"#))
    });
    // A second turn, after a pause between turns.
    agent_turn(&tools, &gateway, "clawwatch-2");
    wait_for("the second turn", Duration::from_secs(30), || {
        out.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("calls api.weather.example:443"))
            .count()
            >= 4
    });
    drop(tcp);
    let _ = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status();
    drop(child);
    // The collector reads what the run wrote before it ended.
    std::thread::sleep(Duration::from_millis(500));

    let lines = judged(&out.lock().unwrap());
    let events: Vec<&Value> = lines
        .iter()
        .filter(|v| v["event"] == "agent" || v["event"] == "session.tool")
        .collect();
    assert!(events.len() >= 10, "{} agent events", events.len());
    for e in &events {
        assert_eq!(e["clawwatch"]["agent"]["id"], "main", "{e}");
        assert_eq!(e["clawwatch"]["verdict"], "allow", "{e}");
    }
    let by_port = |port: u64| {
        lines
            .iter()
            .find(|v| v["src_port"] == port)
            .unwrap_or_else(|| panic!("no flow from port {port}"))
    };
    let declared = by_port(51001);
    assert_eq!(declared["clawwatch"]["agent"]["id"], "main");
    assert_eq!(declared["clawwatch"]["verdict"], "allow", "{declared}");
    let undeclared = by_port(51002);
    assert_eq!(undeclared["clawwatch"]["agent"]["id"], "openclaw-gateway");
    assert_eq!(undeclared["clawwatch"]["verdict"], "alert", "{undeclared}");
    let text = out.lock().unwrap().join("\n");
    assert!(
        !text.contains("egress.unknown_agent"),
        "nothing is an unknown agent between turns"
    );
}
