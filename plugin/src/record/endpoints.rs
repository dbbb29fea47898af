//! Who talked to whom, in one shape for every input format: what an incident
//! keeps as evidence and what the SIEM field sets re-shape records from.

use super::{Event, Proto};
use std::net::IpAddr;

/// What a record says about who talked to whom, in one shape for every input
/// format. Kept with an incident as the evidence of its first finding.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Endpoints {
    pub src: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst: Option<IpAddr>,
    pub dst_port: Option<u16>,
    /// The host name asked for (proxy logs) or the DNS question.
    pub dst_name: Option<String>,
    pub proto: Option<Proto>,
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
    /// DNS: the question's name and type.
    pub dns_question: Option<String>,
    pub dns_type: Option<String>,
    /// What kind of record it was (`agent.spawn`, `flow`, `dns`, ...).
    pub action: String,
    /// Flows: the note's `outbound`, `inbound` or `return`.
    #[serde(default)]
    pub direction: Option<String>,
}

impl Endpoints {
    pub fn of(event: &Event) -> Endpoints {
        let action = |a: &str| Endpoints {
            action: a.to_string(),
            ..Endpoints::default()
        };
        match event {
            Event::Flow(f) => Endpoints {
                src: Some(f.src),
                src_port: Some(f.src_port),
                dst: Some(f.dst),
                dst_port: Some(f.dst_port),
                proto: Some(f.proto),
                bytes: Some(f.bytes),
                packets: Some(f.packets),
                ..action("flow")
            },
            Event::Dns(q) => Endpoints {
                src: Some(q.client),
                dst: q.resolver,
                dst_port: q.resolver.map(|_| 53),
                proto: q.resolver.map(|_| Proto::Udp),
                dns_question: Some(q.qname.clone()),
                dns_type: q.qtype.as_deref().map(str::to_string),
                ..action("dns")
            },
            Event::Proxied(p) => Endpoints {
                dst_name: p.hosts.first().cloned(),
                dst_port: Some(p.port),
                proto: Some(Proto::Tcp),
                ..action("proxy")
            },
            Event::Spawn(s) => Endpoints {
                src: s.ips.first().copied(),
                ..action("agent.spawn")
            },
            Event::Terminate(_) => action("agent.terminate"),
            Event::PolicyChange(_) => action("agent.policy"),
            Event::Heartbeat(_) => action("agent.heartbeat"),
            Event::Liveness(_) => action("agent.liveness"),
            Event::Plan(_) => action("agent.plan"),
            Event::Grant(_) => action("approval.grant"),
            Event::Intent(_) => action("agent.intent"),
            Event::Seen(_) => action("agent.activity"),
            Event::Telemetry(_) => action("agent.telemetry"),
        }
    }
}
