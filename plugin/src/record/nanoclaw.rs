//! NanoClaw's container lifecycle (DESIGN §2.1).
//!
//! v2 writes text, ANSI-coloured, with only a local time of day
//! (`src/log.ts`; the messages are `src/container-runner.ts`'s):
//! `[14:44:32.447] INFO Spawning container sessionId="…" agentGroup="Main" containerName="nanoclaw-v2-main-1795530600000"`
//! `[14:49:02.101] INFO Container exited sessionId="…" code=0 containerName="…"`
//! `[14:49:01.990] INFO Killing container sessionId="…" reason="idle" containerName="…"`
//! `[14:44:32.460] ERROR Container spawn error sessionId="…" err={ type: "Error", … }`
//! Values are `JSON.stringify`'d. The date comes from the shipper's record
//! time, else from `[inputs.nanoclaw] day`; a line with neither is an error.
//!
//! Each session's container is an agent, `nanoclaw/<sessionId>` (the exit
//! lines name only the session); its address comes from `[inputs.nanoclaw]
//! group_addresses`, by agent group name or by the folder in the container's
//! name. Raw pino JSON (v1 without its pretty transport: `group`, `msg`
//! "Spawning container agent" … "Container completed") still reads, with
//! the group as the agent, as v1 ran one container per group.

use super::fields::{Fields, Key};
use super::reader::Time;
use super::{Event, NanoClawSettings, Reader, Recognized, Spawn, Stream, Terminate};
use crate::time::{NANOS_PER_SEC, Timestamp};
use std::collections::BTreeMap;

const DAY_NANOS: i64 = 86_400 * NANOS_PER_SEC;

/// One v2 text line, its colour codes removed.
#[derive(Debug, PartialEq)]
pub struct TextLine {
    /// Nanoseconds since local midnight.
    pub time_of_day: i64,
    pub level: String,
    pub msg: String,
    pub data: BTreeMap<String, serde_json::Value>,
}

/// Removes ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\x1b') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Parses `[HH:MM:SS.mmm] LEVEL message key=value …`, or `None` when the line is not that shape.
pub fn parse_text_line(line: &str) -> Option<TextLine> {
    let line = strip_ansi(line.trim());
    let rest = line.strip_prefix('[')?;
    let (clock, rest) = rest.split_once("] ")?;
    let b = clock.as_bytes();
    if b.len() != 12 || b[2] != b':' || b[5] != b':' || b[8] != b'.' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| clock.get(r)?.parse::<i64>().ok();
    let (h, m, s, ms) = (num(0..2)?, num(3..5)?, num(6..8)?, num(9..12)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let time_of_day = ((h * 60 + m) * 60 + s) * NANOS_PER_SEC + ms * 1_000_000;
    let (level, rest) = rest.split_once(' ')?;
    if !matches!(level, "DEBUG" | "INFO" | "WARN" | "ERROR" | "FATAL") {
        return None;
    }
    // The message ends where the first ` key=` begins.
    let data_start = key_starts(rest).next().unwrap_or(rest.len());
    let msg = rest[..data_start].trim().to_string();
    let mut data = BTreeMap::new();
    let mut pos = data_start;
    while pos < rest.len() {
        let Some((key, value_text)) = rest[pos..].trim_start().split_once('=') else {
            break;
        };
        let mut values =
            serde_json::Deserializer::from_str(value_text).into_iter::<serde_json::Value>();
        match values.next() {
            Some(Ok(value)) => {
                data.insert(key.to_string(), value);
                let consumed = values.byte_offset();
                pos = rest.len() - value_text.len() + consumed;
            }
            // `err` is printed as JavaScript, not JSON: keep the rest as text.
            _ => {
                data.insert(
                    key.to_string(),
                    serde_json::Value::String(value_text.to_string()),
                );
                break;
            }
        }
    }
    Some(TextLine {
        time_of_day,
        level: level.to_string(),
        msg,
        data,
    })
}

/// Where each ` key=` of a line's data begins (the offset of the space).
fn key_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.match_indices(' ').map(|(i, _)| i).filter(move |&i| {
        let word = &text[i + 1..];
        let key_len = word
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        key_len > 0 && word.as_bytes().get(key_len) == Some(&b'=')
    })
}

/// The instant of a local time of day, on the local day of the shipper's
/// record time (a line just before midnight may be shipped just after it),
/// else on the configured day.
fn instant(
    time_of_day: i64,
    record_time: Option<Timestamp>,
    settings: &NanoClawSettings,
) -> Option<Timestamp> {
    let offset = settings.utc_offset_secs * NANOS_PER_SEC;
    if let Some(shipped) = record_time {
        let local = shipped.0 + offset;
        let midnight = local - local.rem_euclid(DAY_NANOS);
        let mut t = midnight + time_of_day - offset;
        if t > shipped.0 + DAY_NANOS / 2 {
            t -= DAY_NANOS;
        }
        return Some(Timestamp(t));
    }
    settings
        .day
        .map(|day| Timestamp(day.0 + time_of_day - offset))
}

/// The agent group's address: by its name, or by the folder in the
/// container's name (`nanoclaw-v2-<folder>-<ms>`).
fn group_addresses(
    settings: &NanoClawSettings,
    group: Option<&str>,
    container: Option<&str>,
) -> Option<Vec<std::net::IpAddr>> {
    let folder = container.and_then(|c| {
        let rest = c
            .strip_prefix("nanoclaw-v2-")
            .or_else(|| c.strip_prefix("nanoclaw-"))?;
        rest.rsplit_once('-').map(|(folder, _)| folder)
    });
    [group, folder]
        .into_iter()
        .flatten()
        .find_map(|key| settings.framework.addresses.get(key).cloned())
}

/// A container's start: its agent, typed by `[inputs.nanoclaw] agent_type`.
fn container_spawn(
    ts: Timestamp,
    agent_id: String,
    ips: Vec<std::net::IpAddr>,
    container: Option<String>,
    settings: &NanoClawSettings,
) -> Spawn {
    Spawn {
        ts,
        agent_id,
        agent_type: (settings.framework.agent_type.clone()).unwrap_or_else(|| "nanoclaw".into()),
        deployment: None,
        profile: None,
        ips,
        task_id: container,
        expected_lifetime_minutes: None,
    }
}

/// A v2 text line, with the shipper's record time when it gave one.
pub fn text_line(
    line: &TextLine,
    record_time: Option<Timestamp>,
    settings: &NanoClawSettings,
) -> Recognized {
    let text = |k: &str| {
        line.data
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let error = |problem: String| {
        Recognized::Invalid(super::DecodeError {
            stream: Stream::Control,
            format: "nanoclaw text",
            field: "sessionId",
            problem,
        })
    };
    let lifecycle = matches!(
        line.msg.as_str(),
        "Spawning container" | "Container exited" | "Killing container" | "Container spawn error"
    );
    if !lifecycle {
        return Recognized::Unknown(format!(
            "NanoClaw log line \"{}\": nothing to judge",
            line.msg
        ));
    }
    let Some(session) = text("sessionId") else {
        return error(format!("is missing from \"{}\"", line.msg));
    };
    let Some(ts) = instant(line.time_of_day, record_time, settings) else {
        return Recognized::Invalid(super::DecodeError {
            stream: Stream::Control,
            format: "nanoclaw text",
            field: "time",
            problem: "is only a time of day, and neither the shipper's record time nor [inputs.nanoclaw] day gives the date".into(),
        });
    };
    let agent_id = format!("nanoclaw/{session}");
    let container = text("containerName");
    let reason = match line.msg.as_str() {
        "Spawning container" => {
            let group = text("agentGroup");
            let Some(ips) = group_addresses(settings, group.as_deref(), container.as_deref())
            else {
                return Recognized::Unknown(format!(
                    "NanoClaw container for agent group {} started, but its address is unknown: add it to [inputs.nanoclaw] group_addresses",
                    group.as_deref().unwrap_or("(unnamed)")
                ));
            };
            return Recognized::Event(Event::Spawn(Box::new(container_spawn(
                ts, agent_id, ips, container, settings,
            ))));
        }
        "Container exited" => format!(
            "exited with code {}",
            line.data.get("code").map_or("?".into(), |c| c.to_string())
        ),
        "Killing container" => format!(
            "killed: {}",
            text("reason").unwrap_or_else(|| "no reason given".into())
        ),
        _ => "spawn error".to_string(),
    };
    Recognized::Event(Event::Terminate(Terminate {
        ts,
        agent_id,
        reason: Some(reason),
    }))
}

pub fn is_container_line(fields: &Fields) -> bool {
    fields
        .str(Key::Msg)
        .is_some_and(|m| m.starts_with("Spawning container") || is_end(m))
}

fn is_end(msg: &str) -> bool {
    msg.starts_with("Container completed")
        || msg.starts_with("Container exited")
        || msg.starts_with("Container timed out")
        || msg.starts_with("Container spawn error")
}

/// A raw pino JSON line (v1 without pino-pretty).
pub fn container(fields: &Fields, settings: &NanoClawSettings) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Control,
        format: "nanoclaw",
    };
    let decode = || -> Result<Recognized, super::DecodeError> {
        let ts = r.required(Key::Time, Reader::read::<Time>)?;
        let group = r.required(Key::Group, Reader::string)?;
        let agent_id = format!("nanoclaw/{group}");
        let msg = fields.str(Key::Msg).unwrap_or_default();
        if is_end(msg) {
            return Ok(Recognized::Event(Event::Terminate(Terminate {
                ts,
                agent_id,
                reason: Some(msg.to_string()),
            })));
        }
        let container = r.string(Key::ContainerName)?;
        let Some(ips) = group_addresses(settings, Some(&group), container.as_deref()) else {
            return Ok(Recognized::Unknown(format!(
                "NanoClaw container for group {group} started, but its address is unknown: add it to [inputs.nanoclaw] group_addresses"
            )));
        };
        Ok(Recognized::Event(Event::Spawn(Box::new(container_spawn(
            ts, agent_id, ips, container, settings,
        )))))
    };
    decode().unwrap_or_else(Recognized::Invalid)
}

#[cfg(test)]
mod tests;
