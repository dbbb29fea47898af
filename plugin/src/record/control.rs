//! Canonical control-plane records (DESIGN §2.1): `agent.spawn`,
//! `agent.terminate`, `agent.policy`.

use super::fields::{Fields, Key, Value};
use super::reader::{Count, Ip, Time};
use super::{Event, PolicyChange, Reader, Recognized, Spawn, Stream, Terminate, parse_ip};

fn reader<'r, 'a>(fields: &'r Fields<'a>, format: &'static str) -> Reader<'r, 'a> {
    Reader {
        fields,
        stream: Stream::Control,
        format,
    }
}

/// Upper bound on addresses one agent may hold, so a bad record cannot make
/// the registry grow without limit.
const MAX_IPS_PER_AGENT: usize = 16;

pub fn spawn(fields: &Fields) -> Recognized {
    let r = reader(fields, "agent.spawn");
    let decode = || {
        let ts = r.required(Key::Ts, Reader::read::<Time>)?;
        let agent_id = r.required(Key::AgentId, Reader::string)?;
        let agent_type = r.required(Key::AgentType, Reader::string)?;
        let mut ips = Vec::new();
        if let Some(ip) = r.read::<Ip>(Key::Ip)? {
            ips.push(ip);
        }
        match fields.get(Key::Ips) {
            None | Some(Value::Null) => {}
            Some(Value::List(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let ip = parse_ip(item).ok_or_else(|| {
                        r.error(
                            Key::Ips,
                            format!("item {i} is not an IP address: {}", item.preview()),
                        )
                    })?;
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
            }
            Some(other) => {
                return Err(r.error(
                    Key::Ips,
                    format!(
                        "must be an array of IP addresses, found {}",
                        other.type_name()
                    ),
                ));
            }
        }
        if ips.is_empty() {
            return Err(r.error(Key::Ip, "is missing (give `ip` or `ips`)"));
        }
        if ips.len() > MAX_IPS_PER_AGENT {
            return Err(r.error(
                Key::Ips,
                format!(
                    "holds {} addresses, more than the {MAX_IPS_PER_AGENT} an agent may hold",
                    ips.len()
                ),
            ));
        }
        Ok(Spawn {
            ts,
            agent_id,
            agent_type,
            deployment: r.string(Key::Deployment)?,
            profile: r.string(Key::Profile)?,
            ips,
            task_id: r.string(Key::TaskId)?,
            expected_lifetime_minutes: r.read::<Count>(Key::ExpectedLifetimeMinutes)?,
        })
    };
    Recognized::from_decoded(decode(), |s| Event::Spawn(Box::new(s)))
}

pub fn terminate(fields: &Fields) -> Recognized {
    let r = reader(fields, "agent.terminate");
    let decode = || {
        Ok(Terminate {
            ts: r.required(Key::Ts, Reader::read::<Time>)?,
            agent_id: r.required(Key::AgentId, Reader::string)?,
            reason: r.string(Key::Reason)?,
        })
    };
    Recognized::from_decoded(decode(), Event::Terminate)
}

pub fn policy_change(fields: &Fields) -> Recognized {
    let r = reader(fields, "agent.policy");
    let decode = || {
        let change = PolicyChange {
            ts: r.required(Key::Ts, Reader::read::<Time>)?,
            agent_id: r.required(Key::AgentId, Reader::string)?,
            profile: r.string(Key::Profile)?,
            extend_minutes: r.read::<Count>(Key::ExtendMinutes)?,
        };
        if change.profile.is_none() && change.extend_minutes.is_none() {
            return Err(r.error(
                Key::Profile,
                "is missing (an agent.policy record needs `profile` or `extend_minutes`)",
            ));
        }
        Ok(change)
    };
    Recognized::from_decoded(decode(), Event::PolicyChange)
}

#[cfg(test)]
mod tests {
    use super::super::{Event, Recognized, recognize};
    use super::*;

    fn run(line: &str) -> Recognized {
        recognize(&Fields::parse(line).unwrap())
    }

    #[test]
    fn spawn_with_one_or_many_addresses() {
        let Recognized::Event(Event::Spawn(s)) = run(
            r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","agent_type":"data_collector_v1","deployment":"staging","ip":"10.20.0.15","task_id":"t-991","expected_lifetime_minutes":120}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            s.ips,
            vec!["10.20.0.15".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(s.expected_lifetime_minutes, Some(120));
        assert_eq!(s.deployment.as_deref(), Some("staging"));
        let Recognized::Event(Event::Spawn(s)) = run(
            r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":7,"agent_type":"x","ips":["10.20.0.1","fd00::1","10.20.0.1"]}"#,
        ) else {
            panic!()
        };
        assert_eq!(s.agent_id, "7");
        assert_eq!(s.ips.len(), 2);
    }

    #[test]
    fn spawn_errors_name_the_field() {
        let cases = [
            (
                r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"a","agent_type":"x"}"#,
                "field `ip` is missing",
            ),
            (
                r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"a","agent_type":"x","ip":"10.20.0.300"}"#,
                "field `ip` is not an IP address: \"10.20.0.300\"",
            ),
            (
                r#"{"type":"agent.spawn","ts":"noon","agent_id":"a","agent_type":"x","ip":"10.0.0.1"}"#,
                "field `ts` is not an RFC 3339 time",
            ),
            (
                r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":{},"agent_type":"x","ip":"10.0.0.1"}"#,
                "field `agent_id` must be a string, found an object",
            ),
            (
                r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"a","agent_type":"x","ips":"10.0.0.1"}"#,
                "field `ips` must be an array",
            ),
            (
                r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"a","agent_type":"x","ip":"10.0.0.1","expected_lifetime_minutes":-5}"#,
                "field `expected_lifetime_minutes` is not a non-negative integer",
            ),
        ];
        for (line, expected) in cases {
            match run(line) {
                Recognized::Invalid(e) => {
                    assert!(e.to_string().contains(expected), "{e} / {expected}")
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn terminate_and_policy_change() {
        assert!(matches!(
            run(
                r#"{"type":"agent.terminate","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","reason":"completed"}"#
            ),
            Recognized::Event(Event::Terminate(_))
        ));
        let Recognized::Event(Event::PolicyChange(c)) = run(
            r#"{"type":"agent.policy","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","extend_minutes":60}"#,
        ) else {
            panic!()
        };
        assert_eq!(c.extend_minutes, Some(60));
        assert!(matches!(
            run(r#"{"type":"agent.policy","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f"}"#),
            Recognized::Invalid(_)
        ));
    }
}
