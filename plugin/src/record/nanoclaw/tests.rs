use super::super::{InputSettings, recognize_with};
use super::*;

/// Real lines of NanoClaw v2's logger (testdata/formats/frameworks/README.md).
const REAL_LINES: &str = include_str!("../../../../testdata/formats/frameworks/nanoclaw_v2.log");

fn settings() -> NanoClawSettings {
    let mut s = NanoClawSettings::default();
    s.framework
        .addresses
        .insert("Main".into(), vec!["10.20.5.2".parse().unwrap()]);
    s.framework
        .addresses
        .insert("research".into(), vec!["10.20.5.3".parse().unwrap()]);
    s.utc_offset_secs = 3600;
    s
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

#[test]
fn real_lines_parse_without_their_colours() {
    let lines: Vec<_> = REAL_LINES.lines().collect();
    let spawn = parse_text_line(lines[0]).expect("a v2 line");
    assert_eq!(
        (spawn.level.as_str(), spawn.msg.as_str()),
        ("INFO", "Spawning container")
    );
    assert_eq!(spawn.data["agentGroup"], "Main");
    assert_eq!(
        spawn.data["containerName"],
        "nanoclaw-v2-main-1796239200000"
    );
    assert_eq!(
        spawn.time_of_day,
        ((20 * 60 + 20) * 60) * NANOS_PER_SEC + 118_000_000
    );
    let exited = parse_text_line(lines[3]).unwrap();
    assert_eq!(exited.data["code"], 137);
    let error = parse_text_line(lines[5]).unwrap();
    assert_eq!(error.level, "ERROR");
    assert!(
        error.data["err"]
            .as_str()
            .unwrap()
            .starts_with("{ type: \"Error\""),
        "kept as text"
    );
    assert!(
        parse_text_line(lines[6]).is_none(),
        "a stack trace's continuation line"
    );
    assert!(parse_text_line("[99:00:00.000] INFO x").is_none());
    assert!(parse_text_line("{\"level\":30}").is_none());
}

#[test]
fn the_date_comes_from_the_shipper_or_the_configured_day() {
    let spawn = parse_text_line(REAL_LINES.lines().next().unwrap()).unwrap();
    let at = |record_time: Option<Timestamp>, s: &NanoClawSettings| match text_line(
        &spawn,
        record_time,
        s,
    ) {
        Recognized::Event(Event::Spawn(s)) => s.ts.to_rfc3339(),
        other => panic!("{other:?}"),
    };
    let shipped = Some(ts("2026-12-02T19:20:00.300Z"));
    assert_eq!(at(shipped, &settings()), "2026-12-02T19:20:00.118Z");
    // Logged at 23:59:59 local, shipped after local midnight: the day before.
    let late = parse_text_line(
        "[23:59:59.900] INFO Spawning container sessionId=\"s\" agentGroup=\"Main\"",
    )
    .unwrap();
    match text_line(&late, Some(ts("2026-12-02T23:00:00.200Z")), &settings()) {
        Recognized::Event(Event::Spawn(s)) => {
            assert_eq!(s.ts.to_rfc3339(), "2026-12-02T22:59:59.900Z")
        }
        other => panic!("{other:?}"),
    }
    let mut with_day = settings();
    with_day.day = Some(ts("2026-12-02T00:00:00Z"));
    assert_eq!(at(None, &with_day), "2026-12-02T19:20:00.118Z");
    match text_line(&spawn, None, &settings()) {
        Recognized::Invalid(e) => assert!(e.problem.contains("[inputs.nanoclaw] day"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sessions_spawn_and_end_and_the_address_comes_by_group_or_folder() {
    let s = settings();
    let record_time = Some(ts("2026-12-02T19:40:00.100Z"));
    let line = parse_text_line("[20:40:00.000] INFO Spawning container sessionId=\"s2\" agentGroup=\"Research Team\" containerName=\"nanoclaw-v2-research-1796239800000\"").unwrap();
    match text_line(&line, record_time, &s) {
        Recognized::Event(Event::Spawn(sp)) => {
            assert_eq!(sp.agent_id, "nanoclaw/s2");
            assert_eq!(
                sp.ips,
                ["10.20.5.3".parse::<std::net::IpAddr>().unwrap()],
                "by the folder"
            );
            assert_eq!(
                sp.task_id.as_deref(),
                Some("nanoclaw-v2-research-1796239800000")
            );
        }
        other => panic!("{other:?}"),
    }
    for (text, reason) in [
        (
            "[20:41:00.000] INFO Container exited sessionId=\"s2\" code=0 containerName=\"c\"",
            "exited with code 0",
        ),
        (
            "[20:41:00.000] INFO Killing container sessionId=\"s2\" reason=\"idle\" containerName=\"c\"",
            "killed: idle",
        ),
    ] {
        match text_line(&parse_text_line(text).unwrap(), record_time, &s) {
            Recognized::Event(Event::Terminate(t)) => {
                assert_eq!(
                    (t.agent_id.as_str(), t.reason.as_deref()),
                    ("nanoclaw/s2", Some(reason))
                )
            }
            other => panic!("{other:?}"),
        }
    }
    let unknown = parse_text_line("[20:40:00.000] INFO Spawning container sessionId=\"s3\" agentGroup=\"Ops\" containerName=\"nanoclaw-v2-ops-1\"").unwrap();
    assert!(matches!(
        text_line(&unknown, record_time, &s),
        Recognized::Unknown(_)
    ));
    let no_session = parse_text_line("[20:40:00.000] INFO Container exited code=0").unwrap();
    match text_line(&no_session, record_time, &s) {
        Recognized::Invalid(e) => assert_eq!(e.field, "sessionId"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn raw_pino_json_still_reads() {
    let mut s = InputSettings::default();
    s.nanoclaw = settings();
    s.nanoclaw
        .framework
        .addresses
        .insert("main".into(), vec!["10.20.5.2".parse().unwrap()]);
    let run = |line: &str| recognize_with(&Fields::parse(line).unwrap(), &s, None);
    let Recognized::Event(Event::Spawn(sp)) = run(
        r#"{"level":30,"time":1795530600000,"pid":41,"hostname":"nc","group":"main","containerName":"nanoclaw-main-1","mountCount":3,"isMain":true,"msg":"Spawning container agent"}"#,
    ) else {
        panic!()
    };
    assert_eq!(
        (sp.agent_id.as_str(), sp.agent_type.as_str()),
        ("nanoclaw/main", "nanoclaw")
    );
    assert!(matches!(
        run(
            r#"{"level":30,"time":1795530900000,"group":"main","msg":"Container completed (streaming mode)"}"#
        ),
        Recognized::Event(Event::Terminate(_))
    ));
}
