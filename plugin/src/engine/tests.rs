//! Engine tests over NDJSON, as a pipeline feeds it.

use super::*;
use crate::time::Timestamp;
use serde_json::Value;

const POLICY: &str = r#"
[monitor]
agent_subnets = ["10.20.0.0/16"]
corp_resolvers = ["10.0.0.53"]

[agent_profile."data_collector_v1"]
expected_lifetime_minutes = 120
allowed_outbound = [
{ protocol = "TCP", port = 443, destination = "api.internal.example.net" },
{ protocol = "UDP", port = 53, destination = "ANY" },
]
"#;

/// Every output line, emitted incident/audit records included.
fn run_all(engine: &mut Engine, input: &str) -> Vec<Value> {
    let mut out = Vec::new();
    engine.process_ndjson(input.as_bytes(), &mut out);
    let text = String::from_utf8(out).unwrap();
    text.lines()
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
fn run(engine: &mut Engine, input: &str) -> Vec<Value> {
    run_all(engine, input)
        .into_iter()
        .filter(|v| !is_emitted(v))
        .collect()
}

const SPAWN: &str = r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","agent_type":"data_collector_v1","deployment":"staging","ip":"10.20.0.15"}"#;
const DNS: &str = r#"{"type":"dns","ts":"2026-11-24T14:30:05Z","client_ip":"10.20.0.15","resolver_ip":"10.0.0.53","qname":"api.internal.example.net","qtype":"A","answers":[{"data":"93.184.216.34","ttl":300}]}"#;

fn flow(ts: &str, src: &str, dst: &str, port: u16, proto: &str) -> String {
    format!(
        r#"{{"type":"flow","ts":"{ts}","src_ip":"{src}","src_port":50123,"dst_ip":"{dst}","dst_port":{port},"proto":"{proto}","bytes":900,"packets":4}}"#
    )
}

fn rules(v: &Value) -> Vec<String> {
    v["clawwatch"]["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| f["rule"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn fqdn_rule_allows_a_flow_to_an_address_the_agent_resolved() {
    let mut e = Engine::new(POLICY).unwrap();
    let input = [
        SPAWN,
        DNS,
        &flow(
            "2026-11-24T14:31:00Z",
            "10.20.0.15",
            "93.184.216.34",
            443,
            "TCP",
        ),
    ]
    .join("\n");
    let out = run(&mut e, &input);
    assert_eq!(out[2]["clawwatch"]["verdict"], "allow");
    assert_eq!(out[2]["clawwatch"]["agent"]["id"], "0x8a3f");
    assert_eq!(out[2]["clawwatch"]["direction"], "outbound");
    assert_eq!(out[2]["clawwatch"]["ts"], "2026-11-24T14:31:00Z");
    assert_eq!(out[2]["bytes"], 900, "the original record is kept");
}

#[test]
fn forbidden_destination_alerts_once_then_counts() {
    let mut e = Engine::new(POLICY).unwrap();
    let f = flow(
        "2026-11-24T14:31:00Z",
        "10.20.0.15",
        "203.0.113.9",
        8443,
        "TCP",
    );
    let out = run(&mut e, &[SPAWN, &f, &f].join("\n"));
    assert_eq!(out[1]["clawwatch"]["verdict"], "alert");
    let finding = &out[1]["clawwatch"]["findings"][0];
    assert_eq!(finding["rule"], "egress.not_allowed");
    assert_eq!(finding["severity"], "high");
    assert_eq!(
        finding["incident"],
        "0x8a3f/egress.not_allowed/203.0.113.9:8443"
    );
    assert_eq!(finding["new"], true);
    assert_eq!(out[2]["clawwatch"]["findings"][0]["new"], false);
    assert_eq!(out[2]["clawwatch"]["findings"][0]["count"], 2);
}

#[test]
fn unknown_agent_and_foreign_resolver() {
    let mut e = Engine::new(POLICY).unwrap();
    let out = run(
        &mut e,
        &[
            SPAWN,
            &flow(
                "2026-11-24T14:31:00Z",
                "10.20.7.7",
                "198.51.100.2",
                443,
                "TCP",
            ),
            &flow("2026-11-24T14:31:00Z", "10.20.0.15", "8.8.8.8", 53, "UDP"),
        ]
        .join("\n"),
    );
    assert_eq!(rules(&out[1]), ["egress.unknown_agent"]);
    assert_eq!(out[1]["clawwatch"]["verdict"], "alert");
    assert_eq!(
        rules(&out[2]),
        ["dns.foreign_resolver"],
        "UDP 53 to ANY is allowed, but not to a foreign resolver"
    );
    // Near miss: outside agent subnets is just unattributed.
    let out = run(
        &mut e,
        &flow(
            "2026-11-24T14:31:00Z",
            "192.0.2.1",
            "198.51.100.2",
            443,
            "TCP",
        ),
    );
    assert_eq!(out[0]["clawwatch"]["verdict"], "unattributed");
    assert!(rules(&out[0]).is_empty());
}

#[test]
fn terminate_releases_the_address_but_late_flows_still_belong() {
    let mut e = Engine::new(POLICY).unwrap();
    let terminate = r#"{"type":"agent.terminate","ts":"2026-11-24T15:00:00Z","agent_id":"0x8a3f","reason":"completed"}"#;
    let late = flow(
        "2026-11-24T14:59:00Z",
        "10.20.0.15",
        "203.0.113.9",
        443,
        "TCP",
    );
    let after = flow(
        "2026-11-24T15:01:00Z",
        "10.20.0.15",
        "203.0.113.9",
        443,
        "TCP",
    );
    let out = run(&mut e, &[SPAWN, terminate, &late, &after].join("\n"));
    assert_eq!(out[1]["clawwatch"]["agent"]["id"], "0x8a3f");
    assert_eq!(
        out[2]["clawwatch"]["agent"]["id"], "0x8a3f",
        "started before terminate"
    );
    assert!(
        out[3]["clawwatch"].get("agent").is_none(),
        "started after terminate"
    );
    assert_eq!(rules(&out[3]), ["egress.unknown_agent"]);
}

#[test]
fn inbound_and_return_traffic_is_attributed_not_judged() {
    let mut e = Engine::new(POLICY).unwrap();
    let inbound = r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"198.51.100.9","src_port":40000,"dst_ip":"10.20.0.15","dst_port":8080,"proto":"TCP"}"#;
    let reply = r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.0.15","src_port":8080,"dst_ip":"198.51.100.9","dst_port":40000,"proto":"TCP"}"#;
    let out = run(&mut e, &[SPAWN, inbound, reply].join("\n"));
    assert_eq!(out[1]["clawwatch"]["direction"], "inbound");
    assert_eq!(out[1]["clawwatch"]["verdict"], "allow");
    assert_eq!(out[2]["clawwatch"]["direction"], "return");
    assert_eq!(out[2]["clawwatch"]["verdict"], "allow");
}

#[test]
fn one_line_out_per_line_in_whatever_the_input() {
    let mut e = Engine::new(POLICY).unwrap();
    let mut input: Vec<u8> = Vec::new();
    for line in [
        &b"not json"[..],
        b"",
        b"  ",
        b"[1,2,3]",
        b"{\"type\":\"flow\"}",
        b"{\"message\":\"hi\"}",
        &[0xff, 0x00, 0x7b],
        b"{\"a\":1}\r",
        SPAWN.as_bytes(),
    ] {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    input.extend_from_slice(b"{\"last\":\"no newline\"}");
    let mut out = Vec::new();
    e.process_ndjson(&input, &mut out);
    let lines: Vec<Value> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert!(
        lines.iter().all(|l| !is_emitted(l)),
        "garbage opens no incident"
    );
    assert_eq!(lines.len(), 10);
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 10);
    let verdicts: Vec<&str> = lines
        .iter()
        .map(|v| v["clawwatch"]["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        [
            "error",
            "error",
            "error",
            "error",
            "error",
            "not_applicable",
            "error",
            "not_applicable",
            "allow",
            "not_applicable"
        ]
    );
    assert_eq!(lines[0]["raw"], "not json");
    assert!(
        lines[4]["clawwatch"]["error"]
            .as_str()
            .unwrap()
            .contains("field `ts` is missing")
    );
    assert_eq!(lines[6]["raw_base64"], "/wB7");
    assert_eq!(lines[9]["last"], "no newline");
    assert_eq!(e.stats().records, 10);
    assert_eq!(e.stats().errors, 6);
}

#[test]
fn oversized_records_pass_through_unparsed() {
    let policy = format!("{POLICY}\n[monitor]\nmax_record_bytes = 64\n").replace(
        "[monitor]\nagent_subnets",
        "[monitor]\nmax_record_bytes = 64\nagent_subnets",
    );
    let policy = policy
        .rsplit_once("\n[monitor]\nmax_record_bytes = 64\n")
        .unwrap()
        .0
        .to_string();
    let mut e = Engine::new(&policy).unwrap();
    let big = format!(r#"{{"message":"{}"}}"#, "x".repeat(100));
    let out = run(&mut e, &big);
    assert_eq!(out[0]["raw"], big);
    assert!(
        out[0]["clawwatch"]["error"]
            .as_str()
            .unwrap()
            .contains("over max_record_bytes (64)")
    );
}

#[test]
fn spawn_of_an_unknown_profile_is_noted_and_its_traffic_alerts() {
    let mut e = Engine::new(POLICY).unwrap();
    let spawn = SPAWN.replace("data_collector_v1", "ghost_v2");
    let out = run(
        &mut e,
        &[
            spawn.as_str(),
            DNS,
            &flow(
                "2026-11-24T14:31:00Z",
                "10.20.0.15",
                "93.184.216.34",
                443,
                "TCP",
            ),
        ]
        .join("\n"),
    );
    assert!(
        out[0]["clawwatch"]["note"]
            .as_str()
            .unwrap()
            .contains("not in the policy")
    );
    assert_eq!(rules(&out[2]), ["egress.not_allowed"]);
}

#[test]
fn replays_are_byte_identical() {
    let input = [
        SPAWN,
        DNS,
        &flow(
            "2026-11-24T14:31:00Z",
            "10.20.0.15",
            "203.0.113.9",
            8443,
            "TCP",
        ),
        "garbage",
    ]
    .join("\n");
    let once = |input: &str| {
        let mut e = Engine::new(POLICY).unwrap();
        let mut out = Vec::new();
        e.process_ndjson(input.as_bytes(), &mut out);
        out
    };
    assert_eq!(once(&input), once(&input));
}

const DAY_POLICY: &str = r#"
[monitor]
agent_subnets = ["10.20.0.0/16"]
corp_resolvers = ["10.0.0.53"]
lateness_minutes = 5
incident_quiet_minutes = 30

[approvals]
allow = [{ protocol = "TCP", port = 443, destination = "pypi.org" }]

[agent_profile."data_collector_v1"]
expected_lifetime_minutes = 120
allowed_time_variance_minutes = 15
baseline_connections_per_hour = 12
volume_anomaly_threshold_multiplier = 5.0
max_requests_per_minute = 30
heartbeat_interval_minutes = 15
allowed_outbound = [
{ protocol = "TCP", port = 443, destination = "api.internal.example.net" },
{ protocol = "TCP", port = 443, destination = "api.weather.example" },
{ protocol = "UDP", port = 53, destination = "10.0.0.53" },
]
"#;

fn at(minutes: f64) -> String {
    crate::time::Timestamp(1_795_530_600_000_000_000 + (minutes * 60e9) as i64).to_rfc3339()
}

fn flow_at(minutes: f64, dst: &str, port: u16) -> String {
    flow(&at(minutes), "10.20.0.15", dst, port, "TCP")
}

fn dns_at(minutes: f64, name: &str, ip: &str) -> String {
    format!(
        r#"{{"type":"dns","ts":"{}","client_ip":"10.20.0.15","resolver_ip":"10.0.0.53","qname":"{name}","qtype":"A","answers":[{{"data":"{ip}","ttl":86400}}]}}"#,
        at(minutes)
    )
}

fn emitted<'v>(all: &'v [Value], rule: &str) -> Vec<&'v Value> {
    all.iter()
        .filter(|v| is_emitted(v) && v["clawwatch"]["incident"]["rule"] == rule)
        .collect()
}

#[test]
fn a_new_incident_is_emitted_once_and_closes_after_the_quiet_period() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let mut input = vec![SPAWN.to_string()];
    for m in 0..5 {
        input.push(flow_at(1.0 + m as f64, "203.0.113.9", 8443));
    }
    // Time passes (a DNS query far later): the incident has been quiet for 30 minutes.
    input.push(dns_at(50.0, "api.internal.example.net", "93.184.216.34"));
    let all = run_all(&mut e, &input.join("\n"));
    let records = emitted(&all, "egress.not_allowed");
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["clawwatch"]["incident"]["status"], "open");
    assert_eq!(records[0]["clawwatch"]["verdict"], "alert");
    assert_eq!(records[1]["clawwatch"]["incident"]["status"], "closed");
    assert_eq!(records[1]["clawwatch"]["incident"]["count"], 5);
    assert_eq!(e.stats().incidents_closed, 1);
}

#[test]
fn approvals_turn_unplanned_calls_into_one_audit_record_and_expired_grants_do_not() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let grant = format!(
        r#"{{"type":"approval.grant","ts":"{}","agent_id":"0x8a3f","dest":"files.pythonhosted.org","port":443,"expires":"{}","approver":"oncall@example.com","reason":"install requests"}}"#,
        at(1.0),
        at(10.0)
    );
    let input = [
        SPAWN.to_string(),
        dns_at(0.5, "pypi.org", "151.101.0.223"),
        flow_at(1.0, "151.101.0.223", 443),
        flow_at(1.1, "151.101.0.223", 443),
        grant,
        dns_at(2.0, "files.pythonhosted.org", "151.101.64.223"),
        flow_at(2.1, "151.101.64.223", 443),
        flow_at(11.0, "151.101.64.223", 443),
    ];
    let all = run_all(&mut e, &input.join("\n"));
    let lines: Vec<&Value> = all.iter().filter(|v| !is_emitted(v)).collect();
    assert_eq!(lines[2]["clawwatch"]["verdict"], "approved");
    assert_eq!(rules(lines[2]), ["approval.granted"]);
    assert_eq!(lines[3]["clawwatch"]["verdict"], "approved");
    assert_eq!(lines[6]["clawwatch"]["verdict"], "approved");
    assert!(
        lines[6]["clawwatch"]["findings"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("oncall@example.com")
    );
    assert_eq!(
        lines[7]["clawwatch"]["verdict"], "alert",
        "the grant expired at minute 10"
    );
    assert_eq!(rules(lines[7]), ["egress.not_allowed"]);
    let audits: Vec<&Value> = all
        .iter()
        .filter(|v| v["clawwatch"]["stream"] == "audit")
        .collect();
    assert_eq!(
        audits.len(),
        2,
        "one audit record per approved destination, not per call"
    );
    assert_eq!(audits[0]["clawwatch"]["verdict"], "approved");
}

#[test]
fn plans_flag_undeclared_calls_and_off_schedule_ones() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let plan = format!(
        r#"{{"type":"agent.plan","ts":"{}","agent_id":"0x8a3f","actions":[{{"id":"a1","dest":"api.weather.example","port":443,"proto":"tcp","not_before":"{}","not_after":"{}","every_minutes":60}}]}}"#,
        at(0.0),
        at(0.0),
        at(300.0)
    );
    let input = [
        SPAWN.to_string(),
        plan,
        dns_at(0.2, "api.weather.example", "203.0.113.80"),
        dns_at(0.2, "api.internal.example.net", "93.184.216.34"),
        flow_at(0.5, "203.0.113.80", 443),
        flow_at(1.0, "93.184.216.34", 443),
        flow_at(30.0, "203.0.113.80", 443),
        flow(&at(31.0), "10.20.0.15", "10.0.0.53", 53, "UDP"),
        dns_at(45.0, "api.internal.example.net", "93.184.216.34"),
    ];
    let out = run(&mut e, &input.join("\n"));
    assert_eq!(out[4]["clawwatch"]["verdict"], "allow", "on schedule");
    assert_eq!(
        rules(&out[5]),
        ["plan.undeclared"],
        "allowed by policy but not in the plan"
    );
    assert!(
        rules(&out[6]).is_empty(),
        "an off-schedule call is judged once its minute is complete"
    );
    assert_eq!(
        out[7]["clawwatch"]["verdict"], "allow",
        "DNS to the corporate resolver is never an action"
    );
    let all = run_all(&mut Engine::new(DAY_POLICY).unwrap(), &input.join("\n"));
    let late = emitted(&all, "schedule.deviation");
    assert_eq!(late.len(), 1, "half an hour off the hourly slot: {late:?}");
    assert_eq!(late[0]["clawwatch"]["incident"]["first_seen"], at(30.0));
}

#[test]
fn a_retry_loop_to_a_scheduled_destination_is_a_runaway_not_a_deviation() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let plan = format!(
        r#"{{"type":"agent.plan","ts":"{}","agent_id":"0x8a3f","actions":[{{"id":"a1","dest":"api.weather.example","port":443,"proto":"tcp","not_before":"{}","every_minutes":60}}]}}"#,
        at(0.0),
        at(0.0)
    );
    let mut input = vec![
        SPAWN.to_string(),
        plan,
        dns_at(0.2, "api.weather.example", "203.0.113.80"),
    ];
    for i in 0..300 {
        input.push(flow_at(30.0 + i as f64 / 100.0, "203.0.113.80", 443));
    }
    input.push(dns_at(50.0, "api.weather.example", "203.0.113.80"));
    let all = run_all(&mut e, &input.join("\n"));
    assert_eq!(emitted(&all, "rate.runaway").len(), 1);
    assert!(emitted(&all, "schedule.deviation").is_empty());
}

#[test]
fn heartbeats_are_compared_with_the_flows_of_their_window_once_late_flows_are_in() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let hb = |start: f64, end: f64, dests: &[&str]| {
        let conns: Vec<String> = dests
            .iter()
            .map(|d| format!(r#"{{"dest":"{d}","port":443,"proto":"tcp","count":1}}"#))
            .collect();
        format!(
            r#"{{"type":"agent.heartbeat","ts":"{}","agent_id":"0x8a3f","window_start":"{}","window_end":"{}","connections":[{}]}}"#,
            at(end),
            at(start),
            at(end),
            conns.join(",")
        )
    };
    let input = [
        SPAWN.to_string(),
        dns_at(0.5, "api.internal.example.net", "93.184.216.34"),
        flow_at(2.0, "93.184.216.34", 443),
        hb(0.0, 15.0, &["api.internal.example.net"]),
        flow_at(20.0, "93.184.216.34", 443),
        hb(15.0, 30.0, &["api.internal.example.net", "status.example"]),
        // A late record of a flow inside the second window, hidden by the heartbeat.
        flow_at(28.0, "203.0.113.66", 443),
        flow_at(36.0, "93.184.216.34", 443),
    ];
    let all = run_all(&mut e, &input.join("\n"));
    let mismatches = emitted(&all, "heartbeat.mismatch");
    let ids: Vec<&str> = mismatches
        .iter()
        .map(|v| v["clawwatch"]["incident"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "0x8a3f/heartbeat.mismatch/hidden:203.0.113.66:443",
            "0x8a3f/heartbeat.mismatch/invented:status.example:443"
        ],
        "{all:#?}"
    );
    assert_eq!(mismatches[0]["clawwatch"]["incident"]["severity"], "high");
    assert_eq!(mismatches[1]["clawwatch"]["incident"]["severity"], "medium");
}

#[test]
fn silence_is_noticed_when_event_time_passes_the_deadlines() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let hb = format!(
        r#"{{"type":"agent.heartbeat","ts":"{}","agent_id":"0x8a3f","window_start":"{}","window_end":"{}","connections":[]}}"#,
        at(15.0),
        at(0.0),
        at(15.0)
    );
    run_all(&mut e, &[SPAWN, &hb].join("\n"));
    // The host advances time while input is idle: no more heartbeats, and the
    // agent outlives its 120 + 15 minutes.
    let mut out = Vec::new();
    e.advance_to(Timestamp::parse_rfc3339(&at(44.0)).unwrap(), &mut out);
    assert!(
        out.is_empty(),
        "heartbeat due at 45 plus 5 minutes lateness"
    );
    e.advance_to(Timestamp::parse_rfc3339(&at(51.0)).unwrap(), &mut out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains("\"rule\":\"heartbeat.missing\""), "{text}");
    out.clear();
    e.advance_to(Timestamp::parse_rfc3339(&at(141.0)).unwrap(), &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"rule\":\"lifetime.exceeded\""), "{text}");
    assert!(text.contains("is still alive"), "{text}");
}

/// One record in, one out (Fluent Bit's filter): findings that come due
/// between records have no record of their own, so the next record carries them.
#[test]
fn due_findings_ride_on_the_next_record_when_no_record_can_be_added() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let one_in_one_out = |e: &mut Engine, line: &str| -> Value {
        let mut out = Vec::new();
        e.process_record(line.as_bytes(), &mut out);
        e.discard_emitted();
        serde_json::from_slice(&out).unwrap()
    };
    one_in_one_out(&mut e, SPAWN);
    let before = one_in_one_out(
        &mut e,
        &dns_at(10.0, "api.internal.example.net", "93.184.216.34"),
    );
    assert!(before["clawwatch"].get("due").is_none(), "{before}");
    // A record from another subnet moves event time past the heartbeat deadline
    // (two 15-minute intervals, + 5 minutes of lateness); the finding is on the record after it.
    let late = flow(&at(52.0), "10.9.0.1", "10.9.0.2", 80, "TCP");
    let passing = one_in_one_out(&mut e, &late);
    assert!(passing["clawwatch"].get("due").is_none(), "{passing}");
    let carrier = one_in_one_out(&mut e, &late);
    let due = carrier["clawwatch"]["due"].as_array().expect("carried");
    assert_eq!(due.len(), 1, "{carrier}");
    assert_eq!(due[0]["rule"], "heartbeat.missing");
    assert_eq!(due[0]["agent"], "0x8a3f");
    assert_eq!(due[0]["new"], true);
    assert_eq!(due[0]["ts"], at(30.0), "due two intervals after the spawn");
    assert_eq!(
        carrier["clawwatch"]["verdict"], "unattributed",
        "its own verdict is kept"
    );
    let next = one_in_one_out(&mut e, &late);
    assert!(
        next["clawwatch"].get("due").is_none(),
        "carried once: {next}"
    );
}

/// A burst of due findings is spread over the following records, none lost.
#[test]
fn a_burst_of_due_findings_is_spread_over_the_next_records() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let agents = MAX_DUE_PER_RECORD * 2 + 3;
    let mut input: Vec<String> = (0..agents)
        .map(|i| {
            format!(
                r#"{{"type":"agent.spawn","ts":"{}","agent_id":"a-{i}","agent_type":"data_collector_v1","ip":"10.20.1.{}"}}"#,
                at(0.0),
                i + 1
            )
        })
        .collect();
    let late = flow(&at(60.0), "10.9.0.1", "10.9.0.2", 80, "TCP");
    input.extend(std::iter::repeat_n(late, 5));
    let lines = run(&mut e, &input.join("\n"));
    let carried: Vec<usize> = lines
        .iter()
        .map(|l| l["clawwatch"]["due"].as_array().map_or(0, Vec::len))
        .collect();
    assert!(
        carried.iter().all(|n| *n <= MAX_DUE_PER_RECORD),
        "{carried:?}"
    );
    assert_eq!(carried.iter().sum::<usize>(), agents, "{carried:?}");
}

#[test]
fn a_terminated_agent_is_neither_missing_nor_overdue() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let terminate = format!(
        r#"{{"type":"agent.terminate","ts":"{}","agent_id":"0x8a3f"}}"#,
        at(10.0)
    );
    run_all(&mut e, &[SPAWN, &terminate].join("\n"));
    let mut out = Vec::new();
    e.advance_to(Timestamp::parse_rfc3339(&at(1000.0)).unwrap(), &mut out);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

#[test]
fn a_retry_loop_is_one_rate_incident_not_also_a_volume_incident() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let mut input = vec![
        SPAWN.to_string(),
        dns_at(0.1, "api.internal.example.net", "93.184.216.34"),
    ];
    for i in 0..200 {
        input.push(flow_at(1.0 + i as f64 * 0.01, "93.184.216.34", 443));
    }
    let all = run_all(&mut e, &input.join("\n"));
    assert_eq!(emitted(&all, "rate.runaway").len(), 1);
    assert!(
        emitted(&all, "volume.anomaly").is_empty(),
        "the loop is the volume"
    );
    assert!(emitted(&all, "egress.not_allowed").is_empty());
}

#[test]
fn a_volume_spike_spread_over_minutes_is_a_volume_incident() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let mut input = vec![
        SPAWN.to_string(),
        dns_at(0.1, "api.internal.example.net", "93.184.216.34"),
    ];
    // Well over 12/h × 5, never more than the rate limit in a minute.
    for i in 0..100 {
        input.push(flow_at(1.0 + i as f64 * 0.5, "93.184.216.34", 443));
    }
    input.push(flow_at(120.0, "93.184.216.34", 443));
    let all = run_all(&mut e, &input.join("\n"));
    let opened: Vec<_> = emitted(&all, "volume.anomaly")
        .into_iter()
        .filter(|v| v["clawwatch"]["incident"]["status"] == "open")
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert!(emitted(&all, "rate.runaway").is_empty());
}

#[test]
fn activity_after_the_lifetime_is_flagged_on_the_record() {
    let mut e = Engine::new(DAY_POLICY).unwrap();
    let input = [
        SPAWN.to_string(),
        dns_at(0.1, "api.internal.example.net", "93.184.216.34"),
        flow_at(134.0, "93.184.216.34", 443),
        flow_at(136.0, "93.184.216.34", 443),
    ];
    let out = run(&mut e, &input.join("\n"));
    assert!(rules(&out[2]).is_empty(), "within lifetime + variance");
    assert_eq!(rules(&out[3]), ["lifetime.exceeded"]);
}

#[test]
fn an_answer_exported_before_its_call_does_not_excuse_the_call() {
    let mut e = Engine::new(POLICY).unwrap();
    // nfacctd printed the resolver's reply before the agent's query.
    let reply = r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"8.8.8.8","src_port":53,"dst_ip":"10.20.0.15","dst_port":40002,"proto":"UDP"}"#;
    let query = r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.0.15","src_port":40002,"dst_ip":"8.8.8.8","dst_port":53,"proto":"UDP"}"#;
    let out = run(&mut e, &[SPAWN, reply, query].join("\n"));
    assert_eq!(out[1]["clawwatch"]["direction"], "return");
    assert_eq!(out[2]["clawwatch"]["direction"], "outbound");
    assert_eq!(rules(&out[2]), ["dns.foreign_resolver"]);
}

#[test]
fn a_gateway_that_stops_its_scheduled_turns_is_missing_and_one_that_skips_them_is_not() {
    let policy = format!(
        "{DAY_POLICY}\n[inputs.openclaw]\ngateway_addresses = [\"10.20.6.1\"]\n\n[agent_profile.openclaw_gateway]\nheartbeat_interval_minutes = 10\n"
    );
    let mut e = Engine::new(&policy).unwrap();
    // Heartbeat frames as the gateway sends them: no agent, `skipped` when
    // the turn had no delivery route (seen from a real gateway).
    let beat = |m: f64, status: &str| {
        format!(
            r#"{{"type":"event","event":"heartbeat","payload":{{"ts":{},"status":"{status}","reason":"no-route","durationMs":3}},"seq":7}}"#,
            1_795_530_600_000i64 + (m * 60_000.0) as i64
        )
    };
    let input: Vec<String> = [10.0, 20.0, 30.0, 40.0]
        .iter()
        .map(|&m| beat(m, if m == 20.0 { "skipped" } else { "ok-empty" }))
        .collect();
    let all = run_all(&mut e, &input.join("\n"));
    assert_eq!(all[0]["clawwatch"]["agent"]["id"], "openclaw-gateway");
    assert_eq!(all[0]["clawwatch"]["verdict"], "allow");
    assert!(
        all[0]["clawwatch"]["note"].is_null(),
        "ok-empty is a healthy turn"
    );
    assert!(emitted(&all, "heartbeat.missing").is_empty());
    let failed = run_all(&mut e, &beat(41.0, "failed"));
    assert!(
        failed[0]["clawwatch"]["note"]
            .as_str()
            .unwrap()
            .contains("status failed"),
        "{:?}",
        failed[0]
    );
    let mut out = Vec::new();
    e.advance_to(Timestamp::parse_rfc3339(&at(64.0)).unwrap(), &mut out);
    assert!(
        out.is_empty(),
        "overdue at minute 61, judged once lateness (5) has passed"
    );
    e.advance_to(Timestamp::parse_rfc3339(&at(70.0)).unwrap(), &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("\"rule\":\"heartbeat.missing\"") && text.contains("openclaw-gateway"),
        "silent since minute 41: the gateway stopped its scheduled turns: {text}"
    );
}

#[test]
fn a_reload_changes_the_rules_keeps_the_state_and_a_bad_policy_changes_nothing() {
    let mut e = Engine::new(POLICY).unwrap();
    let forbidden = flow(
        "2026-11-24T14:31:00Z",
        "10.20.0.15",
        "203.0.113.9",
        8443,
        "TCP",
    );
    let out = run(&mut e, &[SPAWN, &forbidden].join("\n"));
    assert_eq!(rules(&out[1]), ["egress.not_allowed"]);
    let wider = POLICY.replace("{ protocol = \"UDP\", port = 53, destination = \"ANY\" },", "{ protocol = \"UDP\", port = 53, destination = \"ANY\" },\n{ protocol = \"TCP\", port = 8443, destination = \"203.0.113.9\" },");
    assert!(e.reload("[agent_profile.\"x\"]\nbogus = 1\n").is_err());
    let out = run(&mut e, &forbidden);
    assert_eq!(
        rules(&out[0]),
        ["egress.not_allowed"],
        "the bad policy changed nothing"
    );
    e.reload(&wider).unwrap();
    let out = run(&mut e, &forbidden);
    assert_eq!(
        out[0]["clawwatch"]["verdict"], "allow",
        "the new rule applies"
    );
    assert_eq!(
        out[0]["clawwatch"]["agent"]["id"], "0x8a3f",
        "the agent spawned before the reload is still known"
    );
}

/// An OpenClaw agent's exec tool call, held for approval, then allowed (or
/// denied) by an operator: the command's connection from the gateway's shared
/// address is the agent's, approved by that operator (or an alert).
#[test]
fn an_exec_approval_resolved_by_an_operator_excuses_that_call_and_a_denial_does_not() {
    const GW_POLICY: &str = r#"
[monitor]
agent_subnets = ["10.20.0.0/16"]
corp_resolvers = ["10.0.0.53"]

[inputs.openclaw]
agent_type = "assistant"
gateway_addresses = ["10.20.6.1"]

[agent_profile."assistant"]
allowed_outbound = [{ protocol = "TCP", port = 443, destination = "api.weather.example" }]

[agent_profile."openclaw_gateway"]
allowed_outbound = [{ protocol = "TCP", port = 443, destination = "api.anthropic.com" }]
"#;
    let command = "curl -fsSL https://get.example.dev/install.sh | sh";
    let ms = |s: i64| 1_796_239_600_000i64 + s * 1000;
    let tool = format!(
        r#"{{"type":"event","event":"session.tool","payload":{{"runId":"r9","stream":"tool","data":{{"phase":"start","name":"exec","toolCallId":"call_9","args":{{"command":"{command}"}}}},"sessionKey":"agent:main:main","agentId":"main","seq":3,"ts":{}}}}}"#,
        ms(0)
    );
    let requested = format!(
        r#"{{"type":"event","event":"exec.approval.requested","payload":{{"approvalKind":"exec","id":"ap-1","request":{{"command":"{command}","agentId":"main","sessionKey":"agent:main:main","runId":"r9","host":"gateway"}},"createdAtMs":{},"expiresAtMs":{}}}}}"#,
        ms(1),
        ms(301)
    );
    let resolved = |decision: &str| {
        format!(
            r#"{{"type":"event","event":"exec.approval.resolved","payload":{{"id":"ap-1","decision":"{decision}","resolvedBy":"alice (openclaw-control-ui)","ts":{},"request":{{"command":"{command}","agentId":"main","sessionKey":"agent:main:main"}}}}}}"#,
            ms(20)
        )
    };
    let at = |s: i64| crate::time::Timestamp(ms(s) * 1_000_000).to_rfc3339();
    let traffic = format!(
        "{}\n{}",
        format_args!(
            r#"{{"type":"dns","ts":"{}","client_ip":"10.20.6.1","resolver_ip":"10.0.0.53","qname":"get.example.dev","qtype":"A","answers":[{{"data":"198.51.100.7","ttl":60}}]}}"#,
            at(21)
        ),
        format_args!(
            r#"{{"type":"flow","ts":"{}","src_ip":"10.20.6.1","src_port":52000,"dst_ip":"198.51.100.7","dst_port":443,"proto":"TCP","bytes":4000,"packets":8}}"#,
            at(22)
        ),
    );

    let mut e = Engine::new(GW_POLICY).unwrap();
    let input = [
        tool.clone(),
        requested.clone(),
        resolved("allow-once"),
        traffic.clone(),
    ]
    .join("\n");
    let all = run_all(&mut e, &input);
    let asked = all[1]["clawwatch"]["note"].as_str().unwrap();
    assert!(
        asked.contains("exec approval ap-1 requested") && asked.contains("get.example.dev:443"),
        "{asked}"
    );
    let flow = all.iter().find(|v| v["src_port"] == 52000).unwrap();
    assert_eq!(
        flow["clawwatch"]["agent"]["id"], "main",
        "the exec tool call declared it"
    );
    assert_eq!(flow["clawwatch"]["verdict"], "approved", "{flow}");
    let audit = emitted(&all, "approval.granted");
    let summary = audit[0]["clawwatch"]["incident"]["summary"]
        .as_str()
        .unwrap();
    assert!(
        summary.contains("alice (openclaw-control-ui)") && summary.contains("install.sh"),
        "who and what command: {summary}"
    );

    let mut e = Engine::new(GW_POLICY).unwrap();
    let input = [tool, requested, resolved("deny"), traffic].join("\n");
    let all = run_all(&mut e, &input);
    let flow = all.iter().find(|v| v["src_port"] == 52000).unwrap();
    assert_eq!(flow["clawwatch"]["verdict"], "alert", "{flow}");
    assert_eq!(
        flow["clawwatch"]["findings"][0]["incident"],
        "main/egress.not_allowed/get.example.dev:443"
    );
}

/// Any valid JSON object comes out as itself, byte for byte, with the note
/// appended: nested past the field reader's depth or holding a number
/// beyond f64 where a field is read, it is an `error` saying so, not text.
#[test]
fn valid_json_the_reader_cannot_take_stays_the_object_it_is() {
    let mut e = Engine::new(POLICY).unwrap();
    let deep = format!(
        r#"{{"type":"note","x":{}1{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let huge = r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.0.15","src_port":1,"dst_ip":"203.0.113.9","dst_port":443,"proto":"TCP","bytes":1e999}"#;
    for (record, verdict) in [(deep.as_str(), "not_applicable"), (huge, "error")] {
        let mut out = Vec::new();
        e.process_ndjson(record.as_bytes(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(&record[..record.len() - 1]),
            "the original bytes first: {}",
            &text[..200.min(text.len())]
        );
        let note_at = text.rfind(r#","clawwatch":{"#).expect("the note appended");
        let note: Value = serde_json::from_str(&text[note_at + 13..text.len() - 2]).unwrap();
        assert_eq!(note["verdict"], verdict, "{note}");
        if verdict == "error" {
            assert!(
                note["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("a JSON object whose fields clawwatch cannot read"),
                "{note}"
            );
        }
    }
}

/// An incident forgotten to make room under `max_incidents` still gets its
/// closing record, saying why: none is left open forever downstream.
#[test]
fn an_incident_evicted_under_the_cap_still_gets_its_closing_record() {
    let policy = POLICY.replace("[monitor]", "[monitor]\nmax_incidents = 2");
    let mut e = Engine::new(&policy).unwrap();
    let flows: Vec<String> = (1..=3)
        .map(|i| {
            flow(
                &format!("2026-11-24T14:3{i}:00Z"),
                "10.20.0.15",
                &format!("203.0.113.{i}"),
                8443,
                "TCP",
            )
        })
        .collect();
    let all = run_all(&mut e, &[SPAWN, &flows.join("\n")].join("\n"));
    let incidents: Vec<&Value> = all
        .iter()
        .filter(|v| v["clawwatch"]["stream"] == "incident")
        .collect();
    let closed: Vec<&Value> = incidents
        .iter()
        .copied()
        .filter(|v| v["clawwatch"]["incident"]["status"] == "closed")
        .collect();
    assert_eq!(
        incidents.len(),
        4,
        "three opened, one closed: {incidents:?}"
    );
    assert_eq!(closed.len(), 1);
    let incident = &closed[0]["clawwatch"]["incident"];
    assert_eq!(incident["closed_by"], "max_incidents");
    assert_eq!(
        incident["id"], "0x8a3f/egress.not_allowed/203.0.113.1:8443",
        "the least recently seen"
    );
    assert_eq!(e.stats().incidents_closed, 1);
}

/// A flood of new incidents (one agent calling many forbidden destinations,
/// a subnet of addresses no agent holds) opens at most the limit per minute;
/// the rest are marked on their records and counted in one summary each.
#[test]
fn a_flood_of_new_incidents_is_limited_and_summarised() {
    let policy = POLICY.replace(
        "[monitor]",
        "[monitor]\nmax_new_incidents_per_minute = 3\nmax_new_incidents_per_subnet_per_minute = 5",
    );
    let mut e = Engine::new(&policy).unwrap();
    let mut input = vec![SPAWN.to_string()];
    for i in 1..=10 {
        input.push(flow(
            &format!("2026-11-24T14:31:{i:02}Z"),
            "10.20.0.15",
            &format!("203.0.113.{i}"),
            8443,
            "TCP",
        ));
    }
    for i in 1..=40 {
        input.push(flow(
            &format!("2026-11-24T14:31:{:02}Z", 10 + i),
            &format!("10.20.5.{i}"),
            "198.51.100.7",
            443,
            "TCP",
        ));
    }
    let mut all = run_all(&mut e, &input.join("\n"));
    let mut out = Vec::new();
    e.advance_to(
        Timestamp::parse_rfc3339("2026-11-24T14:45:00Z").unwrap(),
        &mut out,
    );
    all.extend(
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()),
    );

    let records: Vec<&Value> = all.iter().filter(|v| !is_emitted(v)).collect();
    let held = |v: &&&Value| v["clawwatch"]["findings"][0]["suppressed"] == true;
    assert_eq!(records.iter().filter(held).count(), 7 + 35, "{records:?}");
    assert!(
        records
            .iter()
            .filter(|v| v["clawwatch"]["findings"].is_array())
            .all(|v| v["clawwatch"]["verdict"] == "alert"),
        "every record still says what it is"
    );
    let opened = all
        .iter()
        .filter(|v| v["clawwatch"]["incident"]["status"] == "open")
        .count();
    assert_eq!(opened, 3 + 5);
    let summaries: Vec<&Value> = all
        .iter()
        .filter(|v| v["clawwatch"]["incident"]["status"] == "suppressed")
        .map(|v| &v["clawwatch"]["incident"])
        .collect();
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    assert_eq!(summaries[0]["count"], 7);
    assert_eq!(
        summaries[0]["summary"],
        "7 further incidents of rule egress.not_allowed suppressed in the last minute for 0x8a3f (flood limit)"
    );
    assert_eq!(summaries[1]["count"], 35);
    assert!(
        summaries[1]["summary"]
            .as_str()
            .unwrap()
            .contains("egress.unknown_agent")
    );
    assert!(
        summaries[1]["summary"]
            .as_str()
            .unwrap()
            .contains("for 10.20.5.0/24")
    );
}
