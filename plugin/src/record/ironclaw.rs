//! IronClaw's egress, as its two logs record it (DESIGN §2.1).
//!
//! - iron-proxy, the egress sidecar, writes one Go `slog` JSON line per
//!   request (often behind `docker logs --timestamps`' prefix, which the text
//!   reader strips): `{"time":…,"level":"WARN","msg":"request","audit":{"host",
//!   "method","path","remote_addr","sni","mode","action":"allow"|"reject"|…},
//!   "rejected_by":"allowlist"}`. The agent is the container at `remote_addr`.
//! - IronClaw's host keeps `AuditEnvelope` JSONL: `{timestamp,agent_id,
//!   action:{kind:"network",target:"GET:host:443"},decision:{kind,reason}}`.
//!
//! Each is a call asked for by name, judged against the agent's profile and
//! plan by name whatever the proxy decided; a TLS SNI that differs from the
//! requested host is judged too.

use super::dns::normalize_name;
use super::fields::{Fields, Key, Value};
use super::reader::Time;
use super::{CallingAgent, Event, ProxiedCall, Reader, Recognized, Stream};
use std::net::{IpAddr, SocketAddr};

/// An iron-proxy audit line: `msg` `request` with an `audit` object naming a host.
pub fn is_proxy_line(fields: &Fields) -> bool {
    fields.str(Key::Msg) == Some("request")
        && fields
            .get(Key::Audit)
            .is_some_and(|a| a.get("host").is_some())
}

/// An IronClaw `AuditEnvelope`: an `action` and a `decision` object.
pub fn is_envelope(fields: &Fields) -> bool {
    matches!(fields.get(Key::Action), Some(Value::Map(_)))
        && matches!(fields.get(Key::Decision), Some(Value::Map(_)))
}

/// `host` or `host:port` (iron-proxy logs the request's Host header as sent).
fn split_host(text: &str) -> (String, Option<u16>) {
    if let Ok(sock) = text.parse::<SocketAddr>() {
        return (sock.ip().to_string(), Some(sock.port()));
    }
    match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_string(), Some(port)),
            Err(_) => (text.to_string(), None),
        },
        _ => (text.trim_matches(['[', ']']).to_string(), None),
    }
}

/// The client's address in `remote_addr` (`10.16.0.5:43210`, `[fd00::5]:43210`).
fn client_address(text: &str) -> Option<IpAddr> {
    text.parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()
        .map(|ip| ip.to_canonical())
}

pub fn proxy_line(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Proxy,
        format: "iron-proxy audit",
    };
    let audit = |name: &str| {
        fields
            .get(Key::Audit)
            .and_then(|a| a.get(name))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let decode = || {
        let ts = r.required(Key::Time, Reader::read::<Time>)?;
        let host = audit("host")
            .ok_or_else(|| r.error(Key::Audit, "has no `host` naming where the call went"))?;
        let remote = audit("remote_addr").ok_or_else(|| {
            r.error(
                Key::Audit,
                "has no `remote_addr`: the agent container's address is how the call is attributed",
            )
        })?;
        let client = client_address(remote).ok_or_else(|| {
            r.error(
                Key::Audit,
                format!("has `remote_addr` {remote:?}, not an address:port"),
            )
        })?;
        let (name, port) = split_host(host);
        let sni = audit("sni").map(normalize_name);
        let port = port.unwrap_or(match (sni.as_deref(), audit("method")) {
            // A TLS handshake or a CONNECT tunnel: HTTPS; plain HTTP otherwise.
            (Some(_), _) | (None, Some("CONNECT")) => 443,
            _ => 80,
        });
        let mut hosts = vec![normalize_name(&name)];
        if let Some(sni) = sni.filter(|s| !hosts.contains(s)) {
            hosts.push(sni);
        }
        Ok(ProxiedCall {
            ts,
            agent: CallingAgent::Address(client),
            hosts,
            port,
            method: audit("method").map(str::to_string),
            action: audit("action").map(str::to_string),
            rejected_by: r.string(Key::RejectedBy)?,
        })
    };
    Recognized::from_decoded(decode(), Event::Proxied)
}

pub fn envelope(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Proxy,
        format: "ironclaw audit envelope",
    };
    let member = |key: Key, name: &str| {
        fields
            .get(key)
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let kind = member(Key::Action, "kind").unwrap_or_default();
    if kind != "network" {
        return Recognized::Unknown(format!(
            "IronClaw audit action {kind:?}: not a network call"
        ));
    }
    let decode = || {
        let ts = r.required(Key::Timestamp, Reader::read::<Time>)?;
        let agent_id = r.required(Key::AgentId, Reader::string)?;
        let target = member(Key::Action, "target")
            .ok_or_else(|| r.error(Key::Action, "has no `target` (METHOD:host:port)"))?;
        let bad_target = || {
            r.error(
                Key::Action,
                format!("has `target` {target:?}, not METHOD:host:port"),
            )
        };
        let (method, rest) = target.split_once(':').ok_or_else(bad_target)?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad_target)?;
        let port = port.parse::<u16>().map_err(|_| bad_target())?;
        let host = normalize_name(host.trim_matches(['[', ']']));
        if host.is_empty() {
            return Err(bad_target());
        }
        let decision = member(Key::Decision, "kind");
        let reason = member(Key::Decision, "reason");
        Ok(ProxiedCall {
            ts,
            agent: CallingAgent::Id(agent_id),
            hosts: vec![host],
            port,
            method: Some(method.to_string()),
            rejected_by: reason.filter(|_| decision.as_deref() == Some("deny")),
            action: decision,
        })
    };
    Recognized::from_decoded(decode(), Event::Proxied)
}

#[cfg(test)]
mod tests {
    use super::super::recognize;
    use super::*;

    fn run(line: &str) -> Recognized {
        recognize(&Fields::parse(line).unwrap())
    }

    #[test]
    fn proxy_lines_are_attributed_by_the_client_address() {
        let Recognized::Event(Event::Proxied(p)) = run(
            r#"{"time":"2026-11-24T14:31:00.123456789Z","level":"WARN","msg":"request","audit":{"host":"evil.com","method":"GET","path":"/exfil","remote_addr":"10.16.0.5:43211","sni":"evil.com","mode":"mitm","action":"reject","status_code":403,"duration_ms":0.05},"rejected_by":"allowlist"}"#,
        ) else {
            panic!()
        };
        assert_eq!(p.agent, CallingAgent::Address("10.16.0.5".parse().unwrap()));
        assert_eq!(
            (p.hosts.clone(), p.port),
            (vec!["evil.com".to_string()], 443)
        );
        assert_eq!(
            (p.action.as_deref(), p.rejected_by.as_deref()),
            (Some("reject"), Some("allowlist"))
        );
        let Recognized::Event(Event::Proxied(p)) = run(
            r#"{"time":"2026-11-24T14:31:00Z","level":"INFO","msg":"request","audit":{"host":"cdn.example:8443","method":"GET","path":"/","remote_addr":"[fd00::5]:5000","sni":"other.example","mode":"mitm","action":"allow","status_code":200,"duration_ms":1.5}}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            p.hosts,
            ["cdn.example", "other.example"],
            "a different SNI is judged too"
        );
        assert_eq!(p.port, 8443);
    }

    #[test]
    fn a_proxy_line_without_its_client_is_named() {
        match run(
            r#"{"time":"2026-11-24T14:31:00Z","msg":"request","audit":{"host":"pypi.org","action":"allow"}}"#,
        ) {
            Recognized::Invalid(e) => {
                assert_eq!(e.field, "audit");
                assert!(e.problem.contains("remote_addr"), "{}", e.problem);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn audit_envelopes_name_their_agent_and_target() {
        let Recognized::Event(Event::Proxied(p)) = run(
            r#"{"timestamp":"2026-11-24T14:32:00Z","tenant_id":"t1","user_id":"u1","agent_id":"job-42","invocation_id":"inv-9","action":{"kind":"network","target":"GET:paste.example:443"},"decision":{"kind":"deny","reason":"not in allowlist"}}"#,
        ) else {
            panic!()
        };
        assert_eq!(p.agent, CallingAgent::Id("job-42".into()));
        assert_eq!((p.hosts[0].as_str(), p.port), ("paste.example", 443));
        assert_eq!(p.rejected_by.as_deref(), Some("not in allowlist"));
        assert!(matches!(
            run(
                r#"{"timestamp":"2026-11-24T14:32:00Z","agent_id":"job-42","action":{"kind":"file","target":"/etc/passwd"},"decision":{"kind":"allow"}}"#
            ),
            Recognized::Unknown(_)
        ));
        match run(
            r#"{"timestamp":"2026-11-24T14:32:00Z","agent_id":"job-42","action":{"kind":"network","target":"paste.example"},"decision":{"kind":"allow"}}"#,
        ) {
            Recognized::Invalid(e) => assert!(e.problem.contains("METHOD:host:port"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
