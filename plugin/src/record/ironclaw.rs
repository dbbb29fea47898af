//! IronClaw egress-proxy audit lines (tracing JSON, fields flattened or under `fields`):
//! `{"timestamp":"2026-11-24T14:31:00.123456Z","level":"INFO","target":"ironclaw::proxy","job_id":"job-42","audit.host":"pypi.org","audit.port":443,"audit.method":"CONNECT","audit.sni":"pypi.org","audit.action":"allow"}`
//! `{"timestamp":"2026-11-24T14:32:00Z","level":"WARN","fields":{"message":"egress denied","job_id":"job-42","audit.host":"paste.example","audit.method":"CONNECT","audit.sni":"paste.example","audit.action":"deny","rejected_by":"allowlist"}}`
//!
//! Each line is a connection the agent (`job_id`, or `agent_id`) asked for by
//! name, judged against its profile and plan by name, whatever the proxy did.
//! When the TLS SNI differs from the requested host, both must be allowed.

use super::dns::normalize_name;
use super::fields::{Fields, Key, Value};
use super::{Event, ProxiedCall, Reader, Recognized, Stream};

fn member<'f>(fields: &'f Fields, key: Key) -> Option<&'f Value<'f>> {
    fields.get(key).or_else(|| {
        fields
            .get(Key::TracingFields)
            .and_then(|f| f.get(key.name()))
    })
}

pub fn is_audit_line(fields: &Fields) -> bool {
    member(fields, Key::AuditHost).is_some()
}

pub fn audit(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Proxy,
        format: "ironclaw audit",
    };
    let text = |key: Key| {
        member(fields, key)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let decode = || {
        let ts = match r.timestamp(Key::Timestamp)? {
            Some(t) => t,
            None => r.required(Key::Ts, Reader::timestamp)?,
        };
        let agent_id = text(Key::JobId)
            .or_else(|| text(Key::AgentId))
            .ok_or_else(|| {
                r.error(
                    Key::JobId,
                    "is missing (the agent the call belongs to: `job_id` or `agent_id`)",
                )
            })?;
        let host = text(Key::AuditHost)
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| r.error(Key::AuditHost, "must be a host name"))?;
        let mut hosts = vec![normalize_name(&host)];
        if let Some(sni) = text(Key::AuditSni)
            .map(|s| normalize_name(&s))
            .filter(|s| !s.is_empty() && !hosts.contains(s))
        {
            hosts.push(sni);
        }
        let port = match member(fields, Key::AuditPort) {
            None | Some(Value::Null) => 443,
            Some(v) => v
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| {
                    r.error(
                        Key::AuditPort,
                        format!("is not a port number 0-65535: {}", v.preview()),
                    )
                })?,
        };
        Ok(ProxiedCall {
            ts,
            agent_id,
            hosts,
            port,
            method: text(Key::AuditMethod),
            action: text(Key::AuditAction),
            rejected_by: text(Key::RejectedBy),
        })
    };
    Recognized::from_decoded(decode(), Event::Proxied)
}

#[cfg(test)]
mod tests {
    use super::super::recognize;
    use super::*;

    fn run(line: &str) -> Recognized {
        recognize(&Fields::parse(line.as_bytes()).unwrap())
    }

    #[test]
    fn flattened_and_nested_audit_lines_decode() {
        let Recognized::Event(Event::Proxied(p)) = run(
            r#"{"timestamp":"2026-11-24T14:31:00.123456Z","level":"INFO","job_id":"job-42","audit.host":"PyPI.org","audit.port":443,"audit.method":"CONNECT","audit.sni":"pypi.org","audit.action":"allow"}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            (p.agent_id.as_str(), p.hosts.clone(), p.port),
            ("job-42", vec!["pypi.org".to_string()], 443)
        );
        let Recognized::Event(Event::Proxied(p)) = run(
            r#"{"timestamp":"2026-11-24T14:32:00Z","level":"WARN","fields":{"message":"egress denied","job_id":"job-42","audit.host":"cdn.example","audit.sni":"evil.example","audit.action":"deny","rejected_by":"allowlist"}}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            p.hosts,
            ["cdn.example", "evil.example"],
            "a different SNI is judged too"
        );
        assert_eq!(p.rejected_by.as_deref(), Some("allowlist"));
    }

    #[test]
    fn a_line_without_its_agent_is_named() {
        match run(r#"{"timestamp":"2026-11-24T14:31:00Z","audit.host":"pypi.org"}"#) {
            Recognized::Invalid(e) => assert_eq!(e.field, "job_id"),
            other => panic!("{other:?}"),
        }
    }
}
