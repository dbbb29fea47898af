//! NanoClaw's container log lines (pino JSON), one agent container per group:
//! `{"level":30,"time":1795530600000,"pid":41,"hostname":"nc","group":"main","containerName":"nanoclaw-main-1795530600000","mountCount":3,"isMain":true,"msg":"Spawning container agent"}`
//! `{"level":30,"time":1795530900000,"pid":41,"hostname":"nc","group":"main","duration":300000,"msg":"Container completed (streaming mode)"}`
//!
//! The agent is the group's container: agent id `nanoclaw/<group>`, spawned by
//! "Spawning container…", terminated by "Container completed/exited/timed out…".
//! Its address comes from the policy's `[inputs.nanoclaw] group_addresses`; its
//! type from `[inputs.nanoclaw] agent_type`, else `nanoclaw`.

use super::fields::{Fields, Key};
use super::{Event, FrameworkSettings, Reader, Recognized, Spawn, Stream, Terminate};

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

pub fn container(fields: &Fields, settings: &FrameworkSettings) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Control,
        format: "nanoclaw",
    };
    let decode = || -> Result<Recognized, super::DecodeError> {
        let ts = r.required(Key::Time, Reader::timestamp)?;
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
        let Some(ips) = settings.addresses.get(&group).cloned() else {
            return Ok(Recognized::Unknown(format!(
                "NanoClaw container for group {group} started, but its address is unknown: add it to [inputs.nanoclaw] group_addresses"
            )));
        };
        let agent_type = settings
            .agent_type
            .clone()
            .unwrap_or_else(|| "nanoclaw".into());
        Ok(Recognized::Event(Event::Spawn(Spawn {
            ts,
            agent_id,
            agent_type,
            deployment: None,
            profile: None,
            ips,
            task_id: r.string(Key::ContainerName)?,
            expected_lifetime_minutes: None,
        })))
    };
    decode().unwrap_or_else(Recognized::Invalid)
}

#[cfg(test)]
mod tests {
    use super::super::{InputSettings, recognize_with};
    use super::*;

    fn run(line: &str) -> Recognized {
        let mut s = InputSettings::default();
        s.nanoclaw
            .addresses
            .insert("main".into(), vec!["10.20.5.2".parse().unwrap()]);
        recognize_with(&Fields::parse(line.as_bytes()).unwrap(), &s, None)
    }

    #[test]
    fn container_lines_spawn_and_terminate_the_group_agent() {
        let Recognized::Event(Event::Spawn(s)) = run(
            r#"{"level":30,"time":1795530600000,"pid":41,"hostname":"nc","group":"main","containerName":"nanoclaw-main-1","mountCount":3,"isMain":true,"msg":"Spawning container agent"}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            (
                s.agent_id.as_str(),
                s.agent_type.as_str(),
                s.task_id.as_deref()
            ),
            ("nanoclaw/main", "nanoclaw", Some("nanoclaw-main-1"))
        );
        for end in [
            "Container completed (streaming mode)",
            "Container exited with error",
            "Container timed out with no output",
        ] {
            let line =
                format!(r#"{{"level":30,"time":1795530900000,"group":"main","msg":"{end}"}}"#);
            assert!(
                matches!(run(&line), Recognized::Event(Event::Terminate(_))),
                "{end}"
            );
        }
        match run(
            r#"{"level":30,"time":1795530600000,"group":"other","msg":"Spawning container agent"}"#,
        ) {
            Recognized::Unknown(why) => assert!(why.contains("group_addresses"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(
                r#"{"level":30,"time":1795530600000,"group":"main","msg":"Container mount configuration"}"#
            ),
            Recognized::Unknown(_)
        ));
    }
}
