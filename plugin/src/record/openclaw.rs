//! OpenClaw's gateway, as its WebSocket events show it (DESIGN §2.1).
//!
//! An OpenClaw agent is its `agentId` (also inside `sessionKey`
//! `agent:<agentId>:<session>`): a lasting identity. A `runId` is one turn
//! of a few seconds, so runs, tools and approvals are *activity* of that
//! agent: the first one spawns it when no spawn record did ([`Seen`]).
//! A tool call naming a URL or host (`web_fetch`, `browser`, `exec`,
//! `process`, …, also inside the `tool_call` wrapper) is an [`Intent`]: it
//! says which of the agents sharing the gateway's address makes the
//! connection that follows. Heartbeat events are the gateway's scheduled
//! turns, carry no agent, and are liveness of the gateway's own agent.
//! An allowed `exec.approval.resolved` with a URL in its command is a
//! [`Grant`] by the operator who resolved it.
//!
//! Frames arrive as the gateway sends them (`{"type":"event","event":…,
//! "payload":{…}}`, live or saved one a line) or as bare agent payloads.

use super::fields::{Fields, Key, Value};
use super::reader::Time;
use super::{
    Event, Grant, Intent, Liveness, OpenClawSettings, PlannedAction, Proto, Reader, Recognized,
    Seen, Spawn, Stream,
};
use crate::net::Destination;
use crate::time::{NANOS_PER_SEC, Timestamp};

/// How long after a tool call its connection may start.
const INTENT_WINDOW_SECS: i64 = 600;
/// A connection may be logged a little before the tool event that caused it
/// (the two come from different clocks).
const INTENT_LEAD_SECS: i64 = 5;
/// How long an `allow-once` exec approval stays usable.
const ALLOW_ONCE_SECS: i64 = 600;
/// Tool arguments that name where a call goes.
const URL_ARGS: &[&str] = &["url", "targetUrl", "href", "uri", "host", "hostname"];
/// Tool arguments that hold a shell command (URLs inside it count).
const COMMAND_ARGS: &[&str] = &["command", "cmd"];

/// A gateway WebSocket frame: events are decoded, anything else is named.
pub fn frame(fields: &Fields, settings: &OpenClawSettings) -> Recognized {
    let event = fields.str(Key::Event).unwrap_or_default();
    let Some(payload) = fields.get(Key::Payload).and_then(Fields::from_value) else {
        return Recognized::Invalid(super::DecodeError {
            stream: Stream::Control,
            format: "openclaw frame",
            field: Key::Payload.name(),
            problem: "is missing or not an object".into(),
        });
    };
    match event {
        "agent" | "session.tool" => agent_event(&payload, settings),
        "heartbeat" => heartbeat(&payload, settings),
        "exec.approval.requested" => approval_requested(&payload, settings),
        "exec.approval.resolved" => approval_resolved(&payload, settings),
        other => Recognized::Unknown(format!("OpenClaw gateway event {other}: nothing to judge")),
    }
}

/// Whether a record is a gateway frame (`type` `event` with an `event` name).
pub fn is_frame(fields: &Fields) -> bool {
    fields.str(Key::Type) == Some("event") && fields.has(Key::Event)
}

/// The agent a payload belongs to: `agentId`, else the one its `sessionKey` names.
fn agent_of(r: &Reader) -> Result<Option<String>, super::DecodeError> {
    if let Some(id) = r.string(Key::AgentIdCamel)? {
        return Ok(Some(id));
    }
    Ok(r.string(Key::SessionKey)?
        .as_deref()
        .and_then(agent_in_session_key))
}

/// `agent:<agentId>:<rest>` → `agentId`.
pub(crate) fn agent_in_session_key(key: &str) -> Option<String> {
    let mut parts = key.splitn(3, ':');
    match (parts.next(), parts.next()) {
        (Some("agent"), Some(id)) if !id.is_empty() => Some(id.to_string()),
        _ => None,
    }
}

/// The spawn that makes a lasting OpenClaw agent known by its first activity.
pub(crate) fn implicit_spawn(
    ts: Timestamp,
    agent_id: &str,
    session: Option<&str>,
    settings: &OpenClawSettings,
) -> Spawn {
    Spawn {
        ts,
        agent_id: agent_id.to_string(),
        agent_type: settings.agent_type_of(agent_id),
        deployment: None,
        profile: None,
        // A sandboxed session has an address of its own; otherwise the
        // agent shares the gateway's and is found by its intents.
        ips: session
            .and_then(|s| settings.session_addresses.get(s))
            .cloned()
            .unwrap_or_default(),
        task_id: None,
        expected_lifetime_minutes: None,
    }
}

/// An agent event payload: `{runId,seq,ts,stream,sessionKey,agentId,data}`.
pub fn agent_event(fields: &Fields, settings: &OpenClawSettings) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Control,
        format: "openclaw agent event",
    };
    let data = |name: &str| fields.get(Key::Data).and_then(|d| d.get(name));
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let decode = || -> Result<Recognized, super::DecodeError> {
        let ts = r.required(Key::Ts, Reader::read::<Time>)?;
        let Some(agent_id) = agent_of(&r)? else {
            return Err(r.error(
                Key::AgentIdCamel,
                "is missing, and no `sessionKey` of the form agent:<agentId>:… names the agent",
            ));
        };
        let run = r.string(Key::RunId)?.unwrap_or_else(|| "?".into());
        let session = r.string(Key::SessionKey)?;
        let spawn = implicit_spawn(ts, &agent_id, session.as_deref(), settings);
        let stream = fields.str(Key::Stream).unwrap_or("?");
        let phase = text(data("phase"));
        let seen = |what: String| {
            Ok(Recognized::Event(Event::seen(Seen {
                spawn: spawn.clone(),
                what,
            })))
        };
        if stream != "tool" || phase.as_deref() != Some("start") {
            let phase = phase.as_deref().unwrap_or("event");
            let what = match (stream, data("name").and_then(Value::as_str)) {
                ("tool", Some(tool)) => format!("run {run}: tool {tool} {phase}"),
                ("lifecycle", _) => format!("run {run}: {phase}"),
                (stream, _) => format!("run {run}: {stream} {phase}"),
            };
            return seen(what);
        }
        let (tool, args) = unwrap_tool_call(
            data("name").and_then(Value::as_str).unwrap_or("?"),
            data("args"),
        );
        let Some((host, port)) = destination_in_args(args) else {
            return seen(format!("run {run}: tool {tool} names no URL or host"));
        };
        let Ok(dest) = Destination::parse(&host) else {
            return seen(format!(
                "run {run}: tool {tool} names {host:?}, not a host clawwatch can judge"
            ));
        };
        Ok(Recognized::Event(Event::intent(Intent {
            ts,
            agent_id,
            action: PlannedAction {
                id: text(data("toolCallId")),
                dest,
                port: Some(port),
                proto: Some(Proto::Tcp),
                not_before: Timestamp(ts.0 - INTENT_LEAD_SECS * NANOS_PER_SEC).into(),
                not_after: Timestamp(ts.0 + INTENT_WINDOW_SECS * NANOS_PER_SEC).into(),
                every_minutes: None,
            },
            what: format!(
                "run {run}: tool {tool} calls {}",
                crate::net::endpoint(&host, port)
            ),
            implicit_spawn: Some(spawn),
        })))
    };
    decode().unwrap_or_else(Recognized::Invalid)
}

/// The tool a call really runs: the `tool_call` wrapper of searched tools
/// names it inside its arguments.
fn unwrap_tool_call<'v>(
    name: &'v str,
    args: Option<&'v Value<'v>>,
) -> (&'v str, Option<&'v Value<'v>>) {
    if name != "tool_call" {
        return (name, args);
    }
    let inner = ["id", "name", "tool", "toolName"]
        .iter()
        .find_map(|k| args.and_then(|a| a.get(k)).and_then(Value::as_str));
    let inner_args = ["args", "arguments", "input", "params"]
        .iter()
        .find_map(|k| args.and_then(|a| a.get(k)));
    match inner {
        Some(inner) => (inner, inner_args.or(args)),
        None => (name, args),
    }
}

/// The host and port a tool's arguments name: a URL or host argument, or a
/// URL inside a shell command.
pub(crate) fn destination_in_args(args: Option<&Value>) -> Option<(String, u16)> {
    let arg = |keys: &[&str]| {
        keys.iter()
            .filter_map(|k| args.and_then(|a| a.get(k)).and_then(Value::as_str))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    arg(URL_ARGS)
        .iter()
        .find_map(|t| host_and_port(t))
        .or_else(|| arg(COMMAND_ARGS).iter().find_map(|c| url_in_text(c)))
}

/// A `heartbeat` event: one scheduled turn of the gateway (`sent`,
/// `ok-empty`, `ok-token`, `skipped`, `failed`), liveness of the gateway.
pub fn heartbeat(fields: &Fields, settings: &OpenClawSettings) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Heartbeat,
        format: "openclaw heartbeat",
    };
    let decode = || -> Result<Recognized, super::DecodeError> {
        let ts = r.required(Key::Ts, Reader::read::<Time>)?;
        let Some(gateway) = &settings.gateway else {
            return Ok(Recognized::Unknown(
                "OpenClaw heartbeat: a scheduled turn of the gateway; set [inputs.openclaw] gateway_addresses to watch the gateway".into(),
            ));
        };
        Ok(Recognized::Event(Event::Liveness(Liveness {
            ts,
            agent_id: gateway.agent_id.clone(),
            status: r.string(Key::Status)?,
            reason: r.string(Key::Reason)?,
        })))
    };
    decode().unwrap_or_else(Recognized::Invalid)
}

/// The request inside an approval payload, and what it runs.
struct ApprovalRequest {
    id: String,
    agent_id: Option<String>,
    session: Option<String>,
    command: Option<String>,
}

impl ApprovalRequest {
    fn names_no_agent(&self) -> Recognized {
        Recognized::Unknown(format!("OpenClaw exec approval {} names no agent", self.id))
    }
}

fn approval_request(r: &Reader, fields: &Fields) -> Result<ApprovalRequest, super::DecodeError> {
    let id = r.required(Key::Id, Reader::string)?;
    let request = fields.get(Key::Request);
    let text = |name: &str| {
        request
            .and_then(|q| q.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    };
    let command = text("command").or_else(|| {
        let argv = request.and_then(|q| q.get("commandArgv"));
        match argv {
            Some(Value::List(items)) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        }
    });
    let session = text("sessionKey");
    let agent_id = text("agentId").or_else(|| session.as_deref().and_then(agent_in_session_key));
    Ok(ApprovalRequest {
        id,
        agent_id,
        session,
        command,
    })
}

fn describe_command(command: Option<&str>) -> String {
    match command {
        Some(c) => {
            let short: String = c.chars().take(120).collect();
            let more = if c.chars().count() > 120 { "…" } else { "" };
            format!("`{short}{more}`")
        }
        None => "a command it does not show".into(),
    }
}

/// `exec.approval.requested`: an agent asks to run a command.
fn approval_requested(fields: &Fields, settings: &OpenClawSettings) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Control,
        format: "openclaw exec approval",
    };
    let decode = || -> Result<Recognized, super::DecodeError> {
        let ts = r.required(Key::CreatedAtMs, Reader::read::<Time>)?;
        let req = approval_request(&r, fields)?;
        let Some(agent_id) = req.agent_id.clone() else {
            return Ok(req.names_no_agent());
        };
        let dest = req.command.as_deref().and_then(url_in_text);
        let what = format!(
            "exec approval {} requested for {}{}",
            req.id,
            describe_command(req.command.as_deref()),
            dest.map(|(h, p)| format!(", which reaches {}", crate::net::endpoint(&h, p)))
                .unwrap_or_default()
        );
        Ok(Recognized::Event(Event::seen(Seen {
            spawn: implicit_spawn(ts, &agent_id, req.session.as_deref(), settings),
            what,
        })))
    };
    decode().unwrap_or_else(Recognized::Invalid)
}

/// `exec.approval.resolved`: an operator allowed or denied a command; an
/// allowed one that reaches a host grants the agent that destination.
fn approval_resolved(fields: &Fields, settings: &OpenClawSettings) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Control,
        format: "openclaw exec approval",
    };
    let decode = || -> Result<Recognized, super::DecodeError> {
        let ts = r.required(Key::Ts, Reader::read::<Time>)?;
        let req = approval_request(&r, fields)?;
        let decision = r.required(Key::Decision, Reader::string)?;
        let by = r.string(Key::ResolvedBy)?;
        let Some(agent_id) = req.agent_id.clone() else {
            return Ok(req.names_no_agent());
        };
        let dest = req.command.as_deref().and_then(url_in_text);
        let allowed = decision.starts_with("allow");
        let who = by.clone().unwrap_or_else(|| "an unnamed operator".into());
        match (allowed, dest) {
            (true, Some((host, port))) if Destination::parse(&host).is_ok() => {
                Ok(Recognized::Event(Event::Grant(Grant {
                    ts,
                    agent_id,
                    dest: Destination::parse(&host).expect("checked above"),
                    port: Some(port),
                    proto: Some(Proto::Tcp),
                    expires: (decision == "allow-once")
                        .then(|| Timestamp(ts.0 + ALLOW_ONCE_SECS * NANOS_PER_SEC)),
                    approver: by,
                    reason: Some(format!(
                        "OpenClaw exec approval {} ({decision}) of {}",
                        req.id,
                        describe_command(req.command.as_deref())
                    )),
                })))
            }
            _ => Ok(Recognized::Event(Event::seen(Seen {
                spawn: implicit_spawn(ts, &agent_id, req.session.as_deref(), settings),
                what: format!(
                    "exec approval {} {decision} by {who} for {}",
                    req.id,
                    describe_command(req.command.as_deref())
                ),
            }))),
        }
    };
    decode().unwrap_or_else(Recognized::Invalid)
}

/// The host and port of the first http(s) URL in free text (a shell command).
pub(crate) fn url_in_text(text: &str) -> Option<(String, u16)> {
    let start = match (text.find("https://"), text.find("http://")) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    host_and_port(&text[start..])
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
mod tests;
