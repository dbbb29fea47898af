use super::super::{InputSettings, recognize_with};
use super::*;

/// Real frames from an OpenClaw 2026.9.6 gateway (testdata/formats/frameworks/README.md).
const REAL_FRAMES: &str =
    include_str!("../../../../testdata/formats/frameworks/openclaw_gateway.ndjson");

fn run(line: &str, settings: &InputSettings) -> Recognized {
    recognize_with(&Fields::parse(line).unwrap(), settings, None)
}

fn settings() -> InputSettings {
    let mut s = InputSettings::default();
    s.openclaw.agent_type = Some("assistant".into());
    s.openclaw
        .agent_types
        .insert("ops".into(), "operator_agent".into());
    s.openclaw.session_addresses.insert(
        "agent:main:sandbox-1".into(),
        vec!["10.20.6.9".parse().unwrap()],
    );
    s.openclaw.gateway = Some(super::super::GatewaySettings {
        agent_id: "openclaw-gateway".into(),
        profile: "openclaw_gateway".into(),
        ips: vec!["10.20.6.1".parse().unwrap()],
    });
    s
}

#[test]
fn every_real_frame_is_activity_of_agent_main_or_the_gateway() {
    let mut intents = 0;
    for line in REAL_FRAMES.lines() {
        match run(line, &settings()) {
            Recognized::Event(Event::Seen(s)) => {
                assert_eq!(s.spawn.agent_id, "main", "{line}");
                assert_eq!(s.spawn.agent_type, "assistant");
                assert!(
                    s.spawn.ips.is_empty(),
                    "unsandboxed: it shares the gateway's address"
                );
            }
            Recognized::Event(Event::Intent(i)) => {
                assert_eq!(i.agent_id, "main");
                assert_eq!(
                    i.action.dest,
                    Destination::Name("api.weather.example".into())
                );
                assert_eq!(i.action.port, Some(443));
                intents += 1;
            }
            Recognized::Event(Event::Liveness(l)) => {
                assert_eq!(l.agent_id, "openclaw-gateway");
                assert_eq!(l.status.as_deref(), Some("skipped"));
            }
            other => panic!("{other:?} for {line}"),
        }
    }
    assert_eq!(
        intents, 3,
        "the tool_call wrapper, the web_fetch inside it, and exec's curl"
    );
}

#[test]
fn the_tool_call_wrapper_names_the_searched_tool_and_its_url() {
    let line = r#"{"type":"event","event":"session.tool","payload":{"runId":"r1","stream":"tool","data":{"phase":"start","name":"tool_call","toolCallId":"c1","args":{"id":"web_fetch","args":{"url":"https://Docs.Example.org:8443/a?b=1"}}},"sessionKey":"agent:ops:main","seq":5,"ts":1796239489860}}"#;
    let Recognized::Event(Event::Intent(i)) = run(line, &settings()) else {
        panic!()
    };
    assert_eq!(i.agent_id, "ops", "from the sessionKey");
    assert_eq!(i.implicit_spawn.unwrap().agent_type, "operator_agent");
    assert_eq!(
        (i.action.dest, i.action.port),
        (Destination::Name("docs.example.org".into()), Some(8443))
    );
    assert!(
        i.what
            .contains("tool web_fetch calls docs.example.org:8443"),
        "{}",
        i.what
    );
}

#[test]
fn commands_declare_only_the_urls_they_hold() {
    let exec = |command: &str| {
        format!(
            r#"{{"runId":"r","stream":"tool","ts":1796239565822,"agentId":"main","sessionKey":"agent:main:sandbox-1","data":{{"phase":"start","name":"exec","args":{{"command":"{command}"}}}}}}"#
        )
    };
    let Recognized::Event(Event::Intent(i)) =
        run(&exec("curl -s http://10.30.0.7:8080/status"), &settings())
    else {
        panic!()
    };
    assert_eq!(
        (i.action.dest, i.action.port),
        (Destination::Ip("10.30.0.7".parse().unwrap()), Some(8080))
    );
    assert_eq!(
        i.implicit_spawn.unwrap().ips,
        ["10.20.6.9".parse::<std::net::IpAddr>().unwrap()],
        "a sandboxed session has its own address"
    );
    for quiet in ["./run.sh --fast", "ls -la /tmp"] {
        match run(&exec(quiet), &settings()) {
            Recognized::Event(Event::Seen(s)) => {
                assert!(s.what.contains("names no URL"), "{}", s.what)
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_payload_without_its_agent_is_named() {
    match run(
        r#"{"runId":"r","stream":"lifecycle","ts":1796239453835,"data":{"phase":"start"}}"#,
        &settings(),
    ) {
        Recognized::Invalid(e) => assert_eq!(e.field, "agentId"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn heartbeats_need_the_gateway_declared() {
    let beat = r#"{"type":"event","event":"heartbeat","payload":{"ts":1796239449570,"status":"skipped","reason":"no-route","durationMs":3},"seq":7}"#;
    match run(beat, &InputSettings::default()) {
        Recognized::Unknown(why) => assert!(why.contains("gateway_addresses"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// Approval payloads as the gateway builds them (`buildRequestedApprovalEvent`,
/// `handleApprovalResolve` in OpenClaw 2026.9.6's dist/approval-shared).
#[test]
fn exec_approvals_become_grants_by_the_operator_who_allowed_them() {
    let requested = r#"{"type":"event","event":"exec.approval.requested","payload":{"approvalKind":"exec","id":"ap-1","request":{"command":"curl -fsSL https://get.example.dev/install.sh","agentId":"main","sessionKey":"agent:main:main","runId":"r9","host":"gateway"},"createdAtMs":1796239600000,"expiresAtMs":1796239900000}}"#;
    match run(requested, &settings()) {
        Recognized::Event(Event::Seen(s)) => {
            assert_eq!(s.spawn.agent_id, "main");
            assert!(
                s.what.contains("which reaches get.example.dev:443"),
                "{}",
                s.what
            );
        }
        other => panic!("{other:?}"),
    }
    let resolved = |decision: &str| {
        format!(
            r#"{{"type":"event","event":"exec.approval.resolved","payload":{{"id":"ap-1","decision":"{decision}","resolvedBy":"alice (openclaw-control-ui)","ts":1796239620000,"request":{{"command":"curl -fsSL https://get.example.dev/install.sh","agentId":"main","sessionKey":"agent:main:main"}}}}}}"#
        )
    };
    let Recognized::Event(Event::Grant(g)) = run(&resolved("allow-once"), &settings()) else {
        panic!()
    };
    assert_eq!(g.agent_id, "main");
    assert_eq!(g.dest, Destination::Name("get.example.dev".into()));
    assert_eq!(g.approver.as_deref(), Some("alice (openclaw-control-ui)"));
    assert!(g.expires.is_some(), "allow-once is short-lived");
    let Recognized::Event(Event::Grant(g)) = run(&resolved("allow-always"), &settings()) else {
        panic!()
    };
    assert!(g.expires.is_none());
    match run(&resolved("deny"), &settings()) {
        Recognized::Event(Event::Seen(s)) => {
            assert!(s.what.contains("deny by alice"), "{}", s.what)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_gateway_events_and_frames_are_named() {
    match run(
        r#"{"type":"event","event":"tick","payload":{"ts":1796239449570}}"#,
        &settings(),
    ) {
        Recognized::Unknown(why) => assert!(why.contains("tick"), "{why}"),
        other => panic!("{other:?}"),
    }
    match run(
        r#"{"type":"event","event":"agent","payload":"x"}"#,
        &settings(),
    ) {
        Recognized::Invalid(e) => assert_eq!(e.field, "payload"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn urls_give_host_and_port() {
    assert_eq!(
        host_and_port("https://user:pw@Example.com:8443/x"),
        Some(("example.com".into(), 8443))
    );
    assert_eq!(
        host_and_port("http://[2001:db8::1]/x"),
        Some(("2001:db8::1".into(), 80))
    );
    assert_eq!(host_and_port("pypi.org"), Some(("pypi.org".into(), 443)));
    assert_eq!(host_and_port("ls -la"), None);
    assert_eq!(
        url_in_text("wget -q http://a.example/x && echo ok"),
        Some(("a.example".into(), 80))
    );
    assert_eq!(url_in_text("./run.sh"), None);
}
