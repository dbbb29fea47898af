//! OpenClaw gateway `agent` events (its agent event stream, one JSON object a line):
//! `{"runId":"run-7f3a","seq":1,"stream":"lifecycle","ts":1795530600000,"sessionKey":"agent:main:main","data":{"phase":"start"}}`
//! `{"runId":"run-7f3a","seq":4,"stream":"tool","ts":1795530660000,"sessionKey":"agent:main:main","data":{"phase":"start","name":"web_fetch","toolCallId":"call-1","args":{"url":"https://api.weather.example/v1/forecast"}}}`
//!
//! A run is an agent: lifecycle `start` spawns it (agent id = `runId`),
//! `end`/`error` terminates it. Its address comes from `data.ip`, else from the
//! policy's `[inputs.openclaw] session_addresses` by `sessionKey`; its type from
//! `data.agentType`, else `[inputs.openclaw] agent_type`, else `openclaw`.
//! A `tool` start of `web_fetch`, `browser` or `exec` whose arguments name a URL
//! or host is a declared intent: it joins the agent's declared plan, if it has one.
//!
//! OpenClaw `heartbeat` events report liveness, not traffic:
//! `{"ts":1795530900000,"runId":"run-7f3a","status":"ok","durationMs":1234,"reason":"interval"}`
//! They re-arm `heartbeat.missing` for the agent they name (`runId`, `agentId`
//! or `sessionKey`) and never count as a (silent) traffic report.

use super::fields::{Fields, Key, Value};
use super::{
    Event, FrameworkSettings, Intent, Liveness, PlannedAction, Proto, Reader, Recognized, Spawn,
    Stream, Terminate, parse_ip,
};
use crate::policy::Destination;
use crate::time::NANOS_PER_SEC;

/// Tools whose calls reach the network.
const NETWORK_TOOLS: &[&str] = &["web_fetch", "browser", "exec"];
/// How long after a tool call its connection may start.
const INTENT_WINDOW_SECS: i64 = 600;

pub fn agent_event(fields: &Fields, settings: &FrameworkSettings) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Control,
        format: "openclaw agent event",
    };
    let data = |name: &str| fields.get(Key::Data).and_then(|d| d.get(name));
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let stream = fields.str(Key::Stream).unwrap_or_default().to_string();
    let phase = text(data("phase")).unwrap_or_default();
    let decode = || -> Result<Recognized, super::DecodeError> {
        let ts = r.required(Key::Ts, Reader::timestamp)?;
        let run_id = r.required(Key::RunId, Reader::string)?;
        let session = r.string(Key::SessionKey)?;
        Ok(match (stream.as_str(), phase.as_str()) {
            ("lifecycle", "start") => {
                let ips = match data("ip").and_then(parse_ip) {
                    Some(ip) => vec![ip],
                    None => session
                        .as_ref()
                        .and_then(|s| settings.addresses.get(s))
                        .cloned()
                        .unwrap_or_default(),
                };
                if ips.is_empty() {
                    return Ok(Recognized::Unknown(format!(
                        "OpenClaw run {run_id} started, but no address is known for session {}: add it to [inputs.openclaw] session_addresses",
                        session.as_deref().unwrap_or("(none)")
                    )));
                }
                let agent_type = text(data("agentType"))
                    .or_else(|| settings.agent_type.clone())
                    .unwrap_or_else(|| "openclaw".into());
                Recognized::Event(Event::Spawn(Spawn {
                    ts,
                    agent_id: run_id,
                    agent_type,
                    deployment: None,
                    profile: None,
                    ips,
                    task_id: session,
                    expected_lifetime_minutes: None,
                }))
            }
            ("lifecycle", "end" | "error") => Recognized::Event(Event::Terminate(Terminate {
                ts,
                agent_id: run_id,
                reason: Some(phase.clone()),
            })),
            ("tool", "start") => {
                let name = text(data("name")).unwrap_or_default();
                if !NETWORK_TOOLS.contains(&name.as_str()) {
                    return Ok(Recognized::Unknown(format!(
                        "OpenClaw tool {name}: no network destination to declare"
                    )));
                }
                let args = data("args");
                let target = ["url", "targetUrl", "href", "host", "command", "cmd"]
                    .iter()
                    .filter_map(|k| args.and_then(|a| a.get(k)).and_then(Value::as_str))
                    .find_map(host_and_port);
                let Some((host, port)) = target else {
                    return Ok(Recognized::Unknown(format!(
                        "OpenClaw tool {name} call names no URL or host"
                    )));
                };
                let dest = Destination::parse(&host).map_err(|why| {
                    r.error(
                        Key::Data,
                        format!("has a tool destination that is not a host: {why}"),
                    )
                })?;
                let action = PlannedAction {
                    id: text(data("toolCallId")),
                    dest,
                    port: Some(port),
                    proto: Some(Proto::Tcp),
                    not_before: Some(ts),
                    not_after: Some(crate::time::Timestamp(
                        ts.0 + INTENT_WINDOW_SECS * NANOS_PER_SEC,
                    )),
                    every_minutes: None,
                };
                Recognized::Event(Event::Intent(Intent {
                    ts,
                    agent_id: run_id,
                    action,
                }))
            }
            (stream, phase) => {
                Recognized::Unknown(format!("OpenClaw {stream} event {phase}: nothing to judge"))
            }
        })
    };
    decode().unwrap_or_else(Recognized::Invalid)
}

/// An OpenClaw `heartbeat` event: liveness of the agent it names.
pub fn heartbeat(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Heartbeat,
        format: "openclaw heartbeat",
    };
    let decode = || -> Result<Recognized, super::DecodeError> {
        let ts = r.required(Key::Ts, Reader::timestamp)?;
        let agent_id = match (
            r.string(Key::RunId)?,
            r.string(Key::AgentIdCamel)?,
            r.string(Key::SessionKey)?,
        ) {
            (Some(id), _, _) | (None, Some(id), _) | (None, None, Some(id)) => id,
            _ => {
                return Ok(Recognized::Unknown(
                    "OpenClaw heartbeat names no agent (`runId`, `agentId` or `sessionKey`)".into(),
                ));
            }
        };
        Ok(Recognized::Event(Event::Liveness(Liveness {
            ts,
            agent_id,
            status: r.string(Key::Status)?,
            reason: r.string(Key::Reason)?,
        })))
    };
    decode().unwrap_or_else(Recognized::Invalid)
}

/// The host and port of the first URL in `text` (or `text` itself as a bare host).
pub(crate) fn host_and_port(text: &str) -> Option<(String, u16)> {
    let text = text.trim();
    let (rest, default_port) = match (text.find("https://"), text.find("http://")) {
        (Some(i), _) => (&text[i + 8..], 443),
        (None, Some(i)) => (&text[i + 7..], 80),
        (None, None) if !text.contains(char::is_whitespace) && text.contains('.') => (text, 443),
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#', ' ', '"', '\'']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (
            h.to_string(),
            after
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port),
        )
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default_port),
        }
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::super::{InputSettings, recognize_with};
    use super::*;

    fn run(line: &str, settings: &InputSettings) -> Recognized {
        recognize_with(&Fields::parse(line.as_bytes()).unwrap(), settings, None)
    }

    fn settings() -> InputSettings {
        let mut s = InputSettings::default();
        s.openclaw
            .addresses
            .insert("agent:main:main".into(), vec!["10.20.6.2".parse().unwrap()]);
        s.openclaw.agent_type = Some("assistant".into());
        s
    }

    #[test]
    fn lifecycle_start_and_end_spawn_and_terminate_the_run() {
        let Recognized::Event(Event::Spawn(s)) = run(
            r#"{"runId":"run-7f3a","seq":1,"stream":"lifecycle","ts":1795530600000,"sessionKey":"agent:main:main","data":{"phase":"start"}}"#,
            &settings(),
        ) else {
            panic!()
        };
        assert_eq!(
            (
                s.agent_id.as_str(),
                s.agent_type.as_str(),
                s.ips[0].to_string().as_str()
            ),
            ("run-7f3a", "assistant", "10.20.6.2")
        );
        assert_eq!(s.ts.to_rfc3339(), "2026-11-24T14:30:00Z");
        assert!(matches!(
            run(
                r#"{"runId":"run-7f3a","seq":9,"stream":"lifecycle","ts":1795530900000,"data":{"phase":"end"}}"#,
                &settings()
            ),
            Recognized::Event(Event::Terminate(_))
        ));
        match run(
            r#"{"runId":"run-1","seq":1,"stream":"lifecycle","ts":1795530600000,"sessionKey":"agent:other","data":{"phase":"start"}}"#,
            &settings(),
        ) {
            Recognized::Unknown(why) => {
                assert!(why.contains("[inputs.openclaw] session_addresses"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn network_tool_calls_declare_intent() {
        let Recognized::Event(Event::Intent(i)) = run(
            r#"{"runId":"run-7f3a","seq":4,"stream":"tool","ts":1795530660000,"data":{"phase":"start","name":"web_fetch","toolCallId":"call-1","args":{"url":"https://api.weather.example/v1/forecast?q=1"}}}"#,
            &settings(),
        ) else {
            panic!()
        };
        assert_eq!(
            i.action.dest,
            Destination::Name("api.weather.example".into())
        );
        assert_eq!(i.action.port, Some(443));
        let Recognized::Event(Event::Intent(i)) = run(
            r#"{"runId":"r","seq":5,"stream":"tool","ts":1795530660000,"data":{"phase":"start","name":"exec","args":{"command":"curl -s http://10.30.0.7:8080/status"}}}"#,
            &settings(),
        ) else {
            panic!()
        };
        assert_eq!(
            (i.action.dest.clone(), i.action.port),
            (Destination::Ip("10.30.0.7".parse().unwrap()), Some(8080))
        );
        assert!(matches!(
            run(
                r#"{"runId":"r","seq":6,"stream":"tool","ts":1795530660000,"data":{"phase":"start","name":"read_file","args":{"path":"/etc/hosts"}}}"#,
                &settings()
            ),
            Recognized::Unknown(_)
        ));
        assert!(matches!(
            run(
                r#"{"runId":"r","seq":7,"stream":"assistant","ts":1795530660000,"data":{"text":"hi"}}"#,
                &settings()
            ),
            Recognized::Unknown(_)
        ));
    }

    #[test]
    fn heartbeats_are_liveness_of_the_agent_they_name() {
        let Recognized::Event(Event::Liveness(l)) = run(
            r#"{"ts":1795530900000,"runId":"run-7f3a","status":"error","durationMs":1234,"reason":"timeout"}"#,
            &settings(),
        ) else {
            panic!()
        };
        assert_eq!(
            (
                l.agent_id.as_str(),
                l.status.as_deref(),
                l.reason.as_deref()
            ),
            ("run-7f3a", Some("error"), Some("timeout"))
        );
        assert!(matches!(
            run(
                r#"{"ts":1795530900000,"status":"ok","durationMs":12}"#,
                &settings()
            ),
            Recognized::Unknown(_)
        ));
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
    }
}
