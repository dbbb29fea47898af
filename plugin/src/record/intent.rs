//! What agents say about themselves: heartbeats (their own account of their
//! traffic), declared plans (what they intend to reach) and approval grants
//! (just-in-time authorisations). DESIGN §2.4–2.6.

use super::fields::{Fields, Key};
use super::reader::{Count, Port, Protocol, Time};
use super::{
    Event, Grant, Heartbeat, Item, Plan, PlannedAction, Reader, Recognized, ReportedConnection,
    Stream,
};
use crate::net::Destination;

/// Bounds on one record's lists, so a single record cannot grow state without limit.
pub const MAX_REPORTED_CONNECTIONS: usize = 1024;
pub const MAX_PLANNED_ACTIONS: usize = 64;
/// The longest period a plan's periodic action may declare: a leap year.
pub const MAX_EVERY_MINUTES: u64 = 366 * 24 * 60;

/// `{"type":"agent.heartbeat","ts","agent_id","window_start","window_end","connections":[{"dest","port","proto","count","bytes_out"}]}`
pub fn heartbeat(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Heartbeat,
        format: "agent.heartbeat",
    };
    let decode = || {
        let window_start = r.required(Key::WindowStart, Reader::read::<Time>)?;
        let window_end = r.required(Key::WindowEnd, Reader::read::<Time>)?;
        if window_end < window_start {
            return Err(r.error(Key::WindowEnd, "is before window_start"));
        }
        let connections = r.items(Key::Connections, MAX_REPORTED_CONNECTIONS, |item: &Item| {
            let dest = item
                .string("dest")?
                .ok_or_else(|| item.error("dest", "is missing"))?;
            Ok(ReportedConnection {
                dest: super::dns::normalize_name(&dest),
                port: item.read::<Port>("port")?,
                proto: item.read::<Protocol>("proto")?,
                count: item.read::<Count>("count")?.unwrap_or(1),
                bytes_out: item.read::<Count>("bytes_out")?.unwrap_or(0),
            })
        })?;
        Ok(Heartbeat {
            ts: r.required(Key::Ts, Reader::read::<Time>)?,
            agent_id: r.required(Key::AgentId, Reader::string)?,
            window_start,
            window_end,
            connections,
        })
    };
    Recognized::from_decoded(decode(), Event::Heartbeat)
}

/// `{"type":"agent.plan","ts","agent_id","actions":[{"id","dest","port","proto","not_before","not_after","every_minutes"}]}`
pub fn plan(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Control,
        format: "agent.plan",
    };
    let decode = || {
        if !fields.has(Key::Actions) {
            return Err(r.error(Key::Actions, "is missing"));
        }
        let actions = r.items(Key::Actions, MAX_PLANNED_ACTIONS, |item: &Item| {
            let dest = item
                .string("dest")?
                .ok_or_else(|| item.error("dest", "is missing"))?;
            let action = PlannedAction {
                id: item.string("id")?,
                dest: Destination::parse(&dest).map_err(|why| item.error("dest", why))?,
                port: item.read::<Port>("port")?,
                proto: item.read::<Protocol>("proto")?,
                not_before: item.read::<Time>("not_before")?.into(),
                not_after: item.read::<Time>("not_after")?.into(),
                every_minutes: item.read::<Count>("every_minutes")?,
            };
            if let (Some(nb), Some(na)) = (action.not_before.get(), action.not_after.get()) {
                if na < nb {
                    return Err(item.error("not_after", "is before not_before"));
                }
            }
            if action.every_minutes == Some(0) {
                return Err(item.error("every_minutes", "must be at least 1"));
            }
            // A period is compared in nanoseconds: one of 2^53 minutes wrapped to 0.
            if action.every_minutes.is_some_and(|m| m > MAX_EVERY_MINUTES) {
                let why = format!("must be at most {MAX_EVERY_MINUTES} (a year)");
                return Err(item.error("every_minutes", &why));
            }
            Ok(action)
        })?;
        Ok(Plan {
            ts: r.required(Key::Ts, Reader::read::<Time>)?,
            agent_id: r.required(Key::AgentId, Reader::string)?,
            actions,
        })
    };
    Recognized::from_decoded(decode(), Event::Plan)
}

/// `{"type":"approval.grant","ts","agent_id","dest","port","protocol","expires","approver","reason"}`
pub fn grant(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Control,
        format: "approval.grant",
    };
    let decode = || {
        let proto = match r.read::<Protocol>(Key::ProtoName)? {
            Some(p) => Some(p),
            None => r.read::<Protocol>(Key::Proto)?,
        };
        Ok(Grant {
            ts: r.required(Key::Ts, Reader::read::<Time>)?,
            agent_id: r.required(Key::AgentId, Reader::string)?,
            dest: r.required(Key::Dest, Reader::destination)?,
            port: r.read::<Port>(Key::Port)?,
            proto,
            expires: r.read::<Time>(Key::Expires)?,
            approver: r.string(Key::Approver)?,
            reason: r.string(Key::Reason)?,
        })
    };
    Recognized::from_decoded(decode(), Event::Grant)
}

#[cfg(test)]
mod tests {
    use super::super::{Event, Proto, Recognized, recognize};
    use super::*;

    fn run(line: &str) -> Recognized {
        recognize(&Fields::parse(line).unwrap())
    }

    #[test]
    fn heartbeat_decodes_its_connections() {
        let Recognized::Event(Event::Heartbeat(h)) = run(
            r#"{"type":"agent.heartbeat","ts":"2026-11-24T15:00:00Z","agent_id":"0x8a3f","window_start":"2026-11-24T14:45:00Z","window_end":"2026-11-24T15:00:00Z","connections":[{"dest":"API.internal.example.net","port":443,"proto":"tcp","count":3,"bytes_out":5120}]}"#,
        ) else {
            panic!()
        };
        assert_eq!(h.connections.len(), 1);
        assert_eq!(h.connections[0].dest, "api.internal.example.net");
        assert_eq!(h.connections[0].proto, Some(Proto::Tcp));
        assert_eq!(h.connections[0].count, 3);
    }

    #[test]
    fn plan_and_grant_decode() {
        let Recognized::Event(Event::Plan(p)) = run(
            r#"{"type":"agent.plan","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","actions":[{"id":"a1","dest":"api.weather.example","port":443,"proto":"tcp","not_before":"2026-11-24T14:30:00Z","not_after":"2026-11-24T18:30:00Z","every_minutes":60}]}"#,
        ) else {
            panic!()
        };
        assert_eq!(p.actions[0].every_minutes, Some(60));
        // A yearly action is the longest period a plan may declare.
        let yearly = r#"{"type":"agent.plan","ts":"2026-11-24T14:30:00Z","agent_id":"a","actions":[{"dest":"x.example","not_before":"2026-11-24T14:30:00Z","every_minutes":527040}]}"#;
        assert!(matches!(run(yearly), Recognized::Event(Event::Plan(_))));
        assert_eq!(
            p.actions[0].dest,
            Destination::Name("api.weather.example".into())
        );
        let Recognized::Event(Event::Grant(g)) = run(
            r#"{"type":"approval.grant","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","dest":"pypi.org","port":443,"expires":"2026-11-24T15:30:00Z","approver":"oncall@example.com","reason":"install requests"}"#,
        ) else {
            panic!()
        };
        assert_eq!(g.approver.as_deref(), Some("oncall@example.com"));
        assert_eq!(g.port, Some(443));
    }

    #[test]
    fn nested_errors_name_the_item_and_field() {
        for (line, expected) in [
            (
                r#"{"type":"agent.plan","ts":"2026-11-24T14:30:00Z","agent_id":"a","actions":[{"dest":"x.example","port":443},{"dest":"y.example","port":"https"}]}"#,
                "field `actions` item 1: `port` is not a port number",
            ),
            (
                r#"{"type":"agent.plan","ts":"2026-11-24T14:30:00Z","agent_id":"a","actions":[{"port":443}]}"#,
                "item 0: `dest` is missing",
            ),
            (
                r#"{"type":"agent.plan","ts":"2026-11-24T14:30:00Z","agent_id":"a","actions":[{"dest":"a..b"}]}"#,
                "item 0: `dest` invalid destination",
            ),
            (
                r#"{"type":"agent.plan","ts":"2026-11-24T14:30:00Z","agent_id":"a","actions":[5]}"#,
                "item 0 must be an object",
            ),
            (
                r#"{"type":"agent.plan","ts":"2026-11-24T14:30:00Z","agent_id":"a","actions":[{"dest":"x.example","every_minutes":9007199254740992}]}"#,
                "item 0: `every_minutes` must be at most 527040 (a year)",
            ),
            (
                r#"{"type":"agent.plan","ts":"2026-11-24T14:30:00Z","agent_id":"a"}"#,
                "field `actions` is missing",
            ),
            (
                r#"{"type":"agent.heartbeat","ts":"2026-11-24T15:00:00Z","agent_id":"a","window_start":"2026-11-24T15:00:00Z","window_end":"2026-11-24T14:00:00Z"}"#,
                "field `window_end` is before window_start",
            ),
            (
                r#"{"type":"approval.grant","ts":"2026-11-24T15:00:00Z","agent_id":"a"}"#,
                "field `dest` is missing",
            ),
        ] {
            match run(line) {
                Recognized::Invalid(e) => {
                    assert!(e.to_string().contains(expected), "{e} / {expected}")
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }
}
