//! Engine tests over NDJSON, as a pipeline feeds it.

use super::*;
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

fn run(engine: &mut Engine, input: &str) -> Vec<Value> {
    let mut out = Vec::new();
    engine.process_ndjson(input.as_bytes(), &mut out);
    let text = String::from_utf8(out).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

const SPAWN: &str = r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","agent_type":"data_collector_v1","deployment":"staging","ip":"10.20.0.15"}"#;
const DNS: &str = r#"{"type":"dns","ts":"2026-11-24T14:30:05Z","client_ip":"10.20.0.15","resolver_ip":"10.0.0.53","qname":"api.internal.example.net","qtype":"A","answers":[{"data":"93.184.216.34","ttl":300}]}"#;

fn flow(ts: &str, src: &str, dst: &str, port: u16, proto: &str) -> String {
    format!(r#"{{"type":"flow","ts":"{ts}","src_ip":"{src}","src_port":50123,"dst_ip":"{dst}","dst_port":{port},"proto":"{proto}","bytes":900,"packets":4}}"#)
}

fn rules(v: &Value) -> Vec<String> {
    v["clawwatch"]["findings"].as_array().map(|f| f.iter().map(|f| f["rule"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

#[test]
fn fqdn_rule_allows_a_flow_to_an_address_the_agent_resolved() {
    let mut e = Engine::new(POLICY).unwrap();
    let input = [SPAWN, DNS, &flow("2026-11-24T14:31:00Z", "10.20.0.15", "93.184.216.34", 443, "TCP")].join("\n");
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
    let f = flow("2026-11-24T14:31:00Z", "10.20.0.15", "203.0.113.9", 8443, "TCP");
    let out = run(&mut e, &[SPAWN, &f, &f].join("\n"));
    assert_eq!(out[1]["clawwatch"]["verdict"], "alert");
    let finding = &out[1]["clawwatch"]["findings"][0];
    assert_eq!(finding["rule"], "egress.not_allowed");
    assert_eq!(finding["severity"], "high");
    assert_eq!(finding["incident"], "0x8a3f/egress.not_allowed/203.0.113.9:8443");
    assert_eq!(finding["new"], true);
    assert_eq!(out[2]["clawwatch"]["findings"][0]["new"], false);
    assert_eq!(out[2]["clawwatch"]["findings"][0]["count"], 2);
}

#[test]
fn unknown_agent_and_foreign_resolver() {
    let mut e = Engine::new(POLICY).unwrap();
    let out = run(&mut e, &[SPAWN, &flow("2026-11-24T14:31:00Z", "10.20.7.7", "198.51.100.2", 443, "TCP"), &flow("2026-11-24T14:31:00Z", "10.20.0.15", "8.8.8.8", 53, "UDP")].join("\n"));
    assert_eq!(rules(&out[1]), ["egress.unknown_agent"]);
    assert_eq!(out[1]["clawwatch"]["verdict"], "alert");
    assert_eq!(rules(&out[2]), ["dns.foreign_resolver"], "UDP 53 to ANY is allowed, but not to a foreign resolver");
    // Near miss: outside agent subnets is just unattributed.
    let out = run(&mut e, &flow("2026-11-24T14:31:00Z", "192.0.2.1", "198.51.100.2", 443, "TCP"));
    assert_eq!(out[0]["clawwatch"]["verdict"], "unattributed");
    assert!(rules(&out[0]).is_empty());
}

#[test]
fn terminate_releases_the_address_but_late_flows_still_belong() {
    let mut e = Engine::new(POLICY).unwrap();
    let terminate = r#"{"type":"agent.terminate","ts":"2026-11-24T15:00:00Z","agent_id":"0x8a3f","reason":"completed"}"#;
    let late = flow("2026-11-24T14:59:00Z", "10.20.0.15", "203.0.113.9", 443, "TCP");
    let after = flow("2026-11-24T15:01:00Z", "10.20.0.15", "203.0.113.9", 443, "TCP");
    let out = run(&mut e, &[SPAWN, terminate, &late, &after].join("\n"));
    assert_eq!(out[1]["clawwatch"]["agent"]["id"], "0x8a3f");
    assert_eq!(out[2]["clawwatch"]["agent"]["id"], "0x8a3f", "started before terminate");
    assert!(out[3]["clawwatch"].get("agent").is_none(), "started after terminate");
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
    for line in [&b"not json"[..], b"", b"  ", b"[1,2,3]", b"{\"type\":\"flow\"}", b"{\"message\":\"hi\"}", &[0xff, 0x00, 0x7b], b"{\"a\":1}\r", SPAWN.as_bytes()] {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    input.extend_from_slice(b"{\"last\":\"no newline\"}");
    let mut out = Vec::new();
    e.process_ndjson(&input, &mut out);
    let lines: Vec<Value> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 10);
    let verdicts: Vec<&str> = lines.iter().map(|v| v["clawwatch"]["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["error", "error", "error", "error", "error", "not_applicable", "error", "not_applicable", "allow", "not_applicable"]);
    assert_eq!(lines[0]["raw"], "not json");
    assert!(lines[4]["clawwatch"]["error"].as_str().unwrap().contains("field `ts` is missing"));
    assert_eq!(lines[6]["raw_base64"], "/wB7");
    assert_eq!(lines[9]["last"], "no newline");
    assert_eq!(e.stats().records, 10);
    assert_eq!(e.stats().errors, 6);
}

#[test]
fn oversized_records_pass_through_unparsed() {
    let policy = format!("{POLICY}\n[monitor]\nmax_record_bytes = 64\n").replace("[monitor]\nagent_subnets", "[monitor]\nmax_record_bytes = 64\nagent_subnets");
    let policy = policy.rsplit_once("\n[monitor]\nmax_record_bytes = 64\n").unwrap().0.to_string();
    let mut e = Engine::new(&policy).unwrap();
    let big = format!(r#"{{"message":"{}"}}"#, "x".repeat(100));
    let out = run(&mut e, &big);
    assert_eq!(out[0]["raw"], big);
    assert!(out[0]["clawwatch"]["error"].as_str().unwrap().contains("over max_record_bytes (64)"));
}

#[test]
fn spawn_of_an_unknown_profile_is_noted_and_its_traffic_alerts() {
    let mut e = Engine::new(POLICY).unwrap();
    let spawn = SPAWN.replace("data_collector_v1", "ghost_v2");
    let out = run(&mut e, &[spawn.as_str(), DNS, &flow("2026-11-24T14:31:00Z", "10.20.0.15", "93.184.216.34", 443, "TCP")].join("\n"));
    assert!(out[0]["clawwatch"]["note"].as_str().unwrap().contains("not in the policy"));
    assert_eq!(rules(&out[2]), ["egress.not_allowed"]);
}

#[test]
fn replays_are_byte_identical() {
    let input = [SPAWN, DNS, &flow("2026-11-24T14:31:00Z", "10.20.0.15", "203.0.113.9", 8443, "TCP"), "garbage"].join("\n");
    let once = |input: &str| {
        let mut e = Engine::new(POLICY).unwrap();
        let mut out = Vec::new();
        e.process_ndjson(input.as_bytes(), &mut out);
        out
    };
    assert_eq!(once(&input), once(&input));
}
