//! A simulated day of a healthy fleet must raise no alert; the same day with
//! one incident of each kind injected must raise each exactly once.
//!
//! The day is generated here, deterministically: 48 collectors in waves (with
//! a declared plan and an hourly scheduled call), 12 researchers (half of them
//! living all day), 24 builders installing packages through the approvals
//! allow-list; CDN and S3-style host names; jittered timing; flow records
//! arriving up to five minutes late and out of order; addresses reused by
//! later waves; honest heartbeats. Policy: testdata/fleet/policy.toml.

use clawwatch_plugin::Engine;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const T0: i64 = 1_795_478_400; // 2026-11-24T00:00:00Z
const MIN: i64 = 60;
/// Nothing happens after this: agents still alive then are simply alive.
const DAY_END: i64 = T0 + 24 * 60 * MIN;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next() % (high - low + 1) as u64) as i64
    }
}

fn rfc3339(secs: i64) -> String {
    clawwatch_plugin::time::Timestamp::from_secs(secs).to_rfc3339()
}

/// Hosts and the addresses DNS gives them.
const HOSTS: &[(&str, &str)] = &[
    ("api.internal.example.net", "93.184.216.34"),
    ("status.internal.example.net", "93.184.216.40"),
    ("api.weather.example", "203.0.113.80"),
    ("d3k8x9q2a7b1c0.cloudfront.net", "198.51.100.44"),
    ("en.wikipedia.org", "208.80.154.224"),
    ("www.cs.mit.edu", "18.25.0.1"),
    ("ocw.mit.edu", "18.25.0.2"),
    ("scholar.library.stanford.edu", "171.64.0.9"),
    ("pypi.org", "151.101.0.223"),
    ("files.pythonhosted.org", "151.101.64.223"),
    ("registry.internal.example.net", "10.40.0.10"),
    ("artifacts-7f3a9c1e.s3.amazonaws.com", "52.216.0.10"),
    ("data-xy78z4.example.com", "192.0.2.77"),
];

fn ip_of(host: &str) -> &'static str {
    HOSTS
        .iter()
        .find(|(h, _)| *h == host)
        .map(|(_, ip)| *ip)
        .unwrap_or_else(|| panic!("{host}"))
}

/// Records with the moment they reach clawwatch; sorted by it at the end.
struct Day {
    rng: Rng,
    records: Vec<(i64, usize, String)>,
}

struct Agent {
    id: String,
    ip: String,
    kind: &'static str,
    deployment: &'static str,
    spawn: i64,
    end: i64,
    /// Terminate at `end` (otherwise the agent is still alive at the end of the day).
    terminates: bool,
    heartbeat_every: i64,
    /// Destinations (host, port) contacted, by event time, for honest heartbeats.
    contacted: Vec<(i64, String, u16)>,
    /// Windows whose heartbeat leaves out a destination (an injected lie).
    hides_in_window: Option<i64>,
    /// Heartbeats stop after this (an injected silence).
    heartbeats_until: Option<i64>,
}

impl Day {
    fn push(&mut self, arrival: i64, line: String) {
        let seq = self.records.len();
        self.records.push((arrival, seq, line));
    }

    fn spawn(&mut self, a: &Agent) {
        self.push(a.spawn, format!(r#"{{"type":"agent.spawn","ts":"{}","agent_id":"{}","agent_type":"{}","deployment":"{}","ip":"{}","task_id":"t-{}"}}"#, rfc3339(a.spawn), a.id, a.kind, a.deployment, a.ip, a.id));
    }

    fn resolve(&mut self, a: &Agent, t: i64, host: &str, resolver: &str) {
        let line = format!(
            r#"{{"type":"dns","ts":"{}","client_ip":"{}","resolver_ip":"{resolver}","qname":"{host}","qtype":"A","rcode":"NOERROR","answers":[{{"data":"{}","ttl":3600}}]}}"#,
            rfc3339(t),
            a.ip,
            ip_of(host)
        );
        let delay = self.rng.between(0, 2);
        self.push(t + delay, line);
    }

    /// One outbound connection, in canonical or goflow2 shape, arriving late.
    fn connect(&mut self, a: &mut Agent, t: i64, host: &str) {
        a.contacted.push((t, host.to_string(), 443));
        self.flow(t, &a.ip.clone(), ip_of(host), 443, "TCP");
    }

    fn flow(&mut self, t: i64, src: &str, dst: &str, port: u16, proto: &str) {
        let sport = self.rng.between(32768, 60999);
        let bytes = self.rng.between(400, 90_000);
        let line = if self.rng.next() % 2 == 0 {
            format!(
                r#"{{"type":"flow","ts":"{}","src_ip":"{src}","src_port":{sport},"dst_ip":"{dst}","dst_port":{port},"proto":"{proto}","bytes":{bytes},"packets":{}}}"#,
                rfc3339(t),
                bytes / 1200 + 1
            )
        } else {
            format!(
                r#"{{"type":"IPFIX","time_received_ns":{},"time_flow_start_ns":{},"time_flow_end_ns":{},"sampler_address":"10.0.0.1","src_addr":"{src}","dst_addr":"{dst}","src_port":{sport},"dst_port":{port},"proto":"{proto}","bytes":{bytes},"packets":{}}}"#,
                (t + 60) * 1_000_000_000,
                t * 1_000_000_000,
                (t + 2) * 1_000_000_000,
                bytes / 1200 + 1
            )
        };
        let delay = self.rng.between(0, 5 * MIN);
        self.push(t + delay, line);
    }

    /// Heartbeats every interval, reporting what was really contacted, for as
    /// long as the agent lives (to the end of the day if it never terminates).
    fn heartbeats(&mut self, a: &Agent) {
        let last = a
            .heartbeats_until
            .unwrap_or(if a.terminates { a.end } else { DAY_END });
        let mut start = a.spawn;
        while start + a.heartbeat_every <= last {
            let end = start + a.heartbeat_every;
            let mut dests: BTreeSet<(&str, u16)> = a
                .contacted
                .iter()
                .filter(|(t, _, _)| *t >= start && *t < end)
                .map(|(_, h, p)| (h.as_str(), *p))
                .collect();
            if a.hides_in_window == Some(start) {
                dests.remove(&("registry.internal.example.net", 443));
            }
            let conns: Vec<String> = dests
                .iter()
                .map(|(d, p)| format!(r#"{{"dest":"{d}","port":{p},"proto":"tcp","count":1}}"#))
                .collect();
            self.push(end, format!(r#"{{"type":"agent.heartbeat","ts":"{}","agent_id":"{}","window_start":"{}","window_end":"{}","connections":[{}]}}"#, rfc3339(end), a.id, rfc3339(start), rfc3339(end), conns.join(",")));
            start = end;
        }
    }

    fn terminate(&mut self, a: &Agent) {
        if a.terminates {
            self.push(a.end, format!(r#"{{"type":"agent.terminate","ts":"{}","agent_id":"{}","reason":"completed"}}"#, rfc3339(a.end), a.id));
        }
    }
}

/// Which incidents to inject into the day.
#[derive(Default)]
struct Inject {
    all: bool,
}

fn agent(
    id: String,
    ip: String,
    kind: &'static str,
    deployment: &'static str,
    spawn: i64,
    end: i64,
    heartbeat_every: i64,
) -> Agent {
    Agent {
        id,
        ip,
        kind,
        deployment,
        spawn,
        end,
        terminates: true,
        heartbeat_every,
        contacted: Vec::new(),
        hides_in_window: None,
        heartbeats_until: None,
    }
}

fn simulate(inject: Inject) -> Vec<u8> {
    let mut day = Day {
        rng: Rng(0x5eed_cafe_f00d_1234),
        records: Vec::new(),
    };
    let on = inject.all;

    // Collectors: two per half hour, 90–110 minutes each; addresses reused every four waves.
    for wave in 0..24 {
        for k in 0..2 {
            let n = wave * 2 + k;
            let spawn = T0 + wave * 30 * MIN + k * 7 * MIN;
            let mut a = agent(
                format!("c-{n:02}"),
                format!("10.20.1.{}", 10 + n % 8),
                "collector",
                "staging",
                spawn,
                spawn + day.rng.between(90, 110) * MIN,
                15 * MIN,
            );
            let lives_too_long = on && n == 5;
            if lives_too_long {
                a.end = spawn + 180 * MIN;
                a.terminates = false;
                a.ip = "10.20.2.5".into();
            }
            day.spawn(&a);
            day.push(spawn + 5, format!(
                r#"{{"type":"agent.plan","ts":"{}","agent_id":"{}","actions":[{{"id":"api","dest":"api.internal.example.net","port":443,"proto":"tcp"}},{{"id":"cdn","dest":"*.cloudfront.net","port":443}},{{"id":"weather","dest":"api.weather.example","port":443,"proto":"tcp","not_before":"{}","not_after":"{}","every_minutes":60}}]}}"#,
                rfc3339(spawn + 5), a.id, rfc3339(spawn + 10 * MIN), rfc3339(spawn + 24 * 60 * MIN)
            ));
            let mut t = spawn + MIN;
            while t < a.end - 2 * MIN {
                if (t - spawn) % (30 * MIN) < 6 * MIN {
                    for host in [
                        "api.internal.example.net",
                        "api.weather.example",
                        "d3k8x9q2a7b1c0.cloudfront.net",
                    ] {
                        day.resolve(&a, t, host, "10.0.0.53");
                    }
                    let ip = a.ip.clone();
                    day.flow(t, &ip, "10.0.0.53", 53, "UDP");
                }
                let j = day.rng.between(5, 50);
                day.connect(&mut a, t + j, "api.internal.example.net");
                if (t - spawn) % (20 * MIN) < 6 * MIN {
                    let j = day.rng.between(5, 50);
                    day.connect(&mut a, t + j, "d3k8x9q2a7b1c0.cloudfront.net");
                }
                t += day.rng.between(5, 7) * MIN;
            }
            // The hourly weather call, a few minutes off its slot at most.
            let mut slot = spawn + 10 * MIN;
            while slot < a.end - 5 * MIN {
                let j = day.rng.between(-4 * MIN, 4 * MIN);
                day.connect(&mut a, slot + j, "api.weather.example");
                slot += 60 * MIN;
            }
            if on && n == 8 {
                day.resolve(&a, spawn + 40 * MIN, "api.internal.example.net", "8.8.8.8");
            }
            if on && n == 11 {
                // 100 extra calls in an hour: over 20 × 4.
                for i in 0..100 {
                    day.connect(
                        &mut a,
                        spawn + 20 * MIN + i * 35,
                        "api.internal.example.net",
                    );
                }
            }
            if on && n == 14 {
                let off_slot = spawn + 10 * MIN + 30 * MIN; // half way between hourly slots
                day.connect(&mut a, off_slot, "api.weather.example");
            }
            if on && n == 17 {
                day.resolve(
                    &a,
                    spawn + 30 * MIN,
                    "status.internal.example.net",
                    "10.0.0.53",
                );
                day.connect(&mut a, spawn + 31 * MIN, "status.internal.example.net");
            }
            day.heartbeats(&a);
            day.terminate(&a);
        }
    }

    // Researchers: six living all day, six in four-hour shifts.
    for n in 0..12 {
        let continuous = n < 6;
        let spawn = if continuous {
            T0 + n * 3 * MIN
        } else {
            T0 + (n - 6) * 3 * 60 * MIN + 20 * MIN
        };
        let end = if continuous {
            T0 + 24 * 60 * MIN - 30 * MIN
        } else {
            spawn + 200 * MIN
        };
        let mut a = agent(
            format!("r-{n:02}"),
            format!("10.20.3.{}", 20 + n),
            "researcher",
            if continuous { "continuous" } else { "staging" },
            spawn,
            end,
            15 * MIN,
        );
        a.terminates = !continuous;
        if on && n == 2 {
            a.heartbeats_until = Some(T0 + 12 * 60 * MIN);
        }
        day.spawn(&a);
        let sites = [
            "en.wikipedia.org",
            "www.cs.mit.edu",
            "ocw.mit.edu",
            "scholar.library.stanford.edu",
            "d3k8x9q2a7b1c0.cloudfront.net",
        ];
        let mut t = spawn + MIN;
        let mut last_resolve: Option<i64> = None;
        while t < end - 2 * MIN {
            if last_resolve.is_none_or(|last| t - last > 30 * MIN) {
                for site in sites {
                    day.resolve(
                        &a,
                        t,
                        site,
                        if n % 2 == 0 { "10.0.0.53" } else { "10.0.0.54" },
                    );
                }
                last_resolve = Some(t);
                t += 10;
            }
            let site = sites[(day.rng.next() % sites.len() as u64) as usize];
            day.connect(&mut a, t, site);
            t += day.rng.between(2 * MIN, 4 * MIN);
        }
        if on && n == 0 {
            day.flow(T0 + 100 * MIN, &a.ip.clone(), "203.0.113.9", 8443, "TCP");
            a.contacted
                .push((T0 + 100 * MIN, "203.0.113.9".into(), 8443));
        }
        if on && n == 1 {
            day.resolve(&a, T0 + 200 * MIN, "data-xy78z4.example.com", "10.0.0.53");
        }
        if on && n == 3 {
            // A retry loop: 200 connections in 30 seconds.
            for i in 0..200 {
                day.connect(&mut a, T0 + 300 * MIN + i * 9 / 60, "en.wikipedia.org");
            }
        }
        day.heartbeats(&a);
        day.terminate(&a);
    }

    // Builders: one an hour, installing packages (approved) and pushing artifacts.
    for n in 0..24 {
        let spawn = T0 + n * 60 * MIN + 12 * MIN;
        let mut a = agent(
            format!("b-{n:02}"),
            format!("10.20.4.{}", 30 + n % 6),
            "builder",
            "ci",
            spawn,
            spawn + day.rng.between(40, 50) * MIN,
            10 * MIN,
        );
        if on && n == 4 {
            a.hides_in_window = Some(spawn + 10 * MIN);
        }
        day.spawn(&a);
        for host in [
            "pypi.org",
            "files.pythonhosted.org",
            "registry.internal.example.net",
            "artifacts-7f3a9c1e.s3.amazonaws.com",
        ] {
            day.resolve(&a, spawn + 30, host, "10.0.0.53");
        }
        for i in 0..3 {
            day.connect(&mut a, spawn + MIN + i * 20, "pypi.org");
        }
        for i in 0..10 {
            day.connect(&mut a, spawn + 2 * MIN + i * 15, "files.pythonhosted.org");
        }
        for i in 0..10 {
            day.connect(
                &mut a,
                spawn + 12 * MIN + i * 90,
                "registry.internal.example.net",
            );
        }
        for i in 0..5 {
            day.connect(
                &mut a,
                spawn + 30 * MIN + i * 60,
                "artifacts-7f3a9c1e.s3.amazonaws.com",
            );
        }
        if on && n == 7 {
            for i in 0..40 {
                let name = format!("chunk{i}.secret.document.text.tunnel.example.org");
                day.push(spawn + 20 * MIN + i, format!(r#"{{"type":"dns","ts":"{}","client_ip":"{}","resolver_ip":"10.0.0.53","qname":"{name}","qtype":"A","rcode":"NXDOMAIN","answers":[]}}"#, rfc3339(spawn + 20 * MIN + i), a.ip));
            }
        }
        day.heartbeats(&a);
        day.terminate(&a);
    }

    if on {
        day.flow(T0 + 600 * MIN, "10.20.250.1", "198.51.100.7", 443, "TCP");
    }

    day.records.sort();
    let mut out = Vec::new();
    for (_, _, line) in day.records {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

fn run(input: &[u8]) -> (Vec<Value>, clawwatch_plugin::Stats) {
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/fleet/policy.toml"
    ))
    .unwrap();
    let mut engine = Engine::new(&policy).unwrap();
    let mut out = Vec::new();
    engine.process_ndjson(input, &mut out);
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, engine.stats())
}

/// Alerting incidents opened, by rule: (rule → incident ids).
fn opened_alerts(lines: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut by_rule: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in lines {
        let cw = &v["clawwatch"];
        if cw["stream"] == "incident"
            && cw["incident"]["status"] == "open"
            && cw["verdict"] == "alert"
        {
            by_rule
                .entry(cw["incident"]["rule"].as_str().unwrap().to_string())
                .or_default()
                .push(cw["incident"]["id"].as_str().unwrap().to_string());
        }
    }
    by_rule
}

#[test]
fn a_healthy_day_raises_no_alert() {
    let input = simulate(Inject::default());
    let (lines, stats) = run(&input);
    let records = input.iter().filter(|b| **b == b'\n').count();
    assert!(
        records > 5_000,
        "a day of dozens of agents: {records} records"
    );
    let alerts: Vec<&Value> = lines
        .iter()
        .filter(|v| v["clawwatch"]["verdict"] == "alert")
        .collect();
    assert!(
        alerts.is_empty(),
        "{} alerts on a healthy day, first: {}",
        alerts.len(),
        alerts[0]
    );
    assert_eq!(stats.errors, 0);
    assert!(
        stats.approved > 0,
        "package installs are approved, audited calls"
    );
    assert!(lines.iter().any(|v| v["clawwatch"]["stream"] == "audit"));
    assert_eq!(
        stats.unattributed, 0,
        "every record belongs to an agent, late flows included"
    );
}

#[test]
fn each_injected_incident_is_detected_exactly_once() {
    let input = simulate(Inject { all: true });
    let (lines, _) = run(&input);
    let opened = opened_alerts(&lines);
    let expected = [
        "dns.foreign_resolver",
        "dns.high_entropy",
        "dns.tunneling",
        "egress.not_allowed",
        "egress.unknown_agent",
        "heartbeat.mismatch",
        "heartbeat.missing",
        "lifetime.exceeded",
        "plan.undeclared",
        "rate.runaway",
        "schedule.deviation",
        "volume.anomaly",
    ];
    let rules: Vec<&str> = opened.keys().map(String::as_str).collect();
    assert_eq!(rules, expected, "{opened:#?}");
    for (rule, ids) in &opened {
        assert_eq!(ids.len(), 1, "{rule} opened {ids:?}");
    }
}
