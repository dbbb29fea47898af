//! Detection rules (DESIGN §4). One rule per file, each with its stable id,
//! description, default severity, tags, its check, and its tests.

pub mod dns_foreign_resolver;
pub mod egress_not_allowed;
pub mod egress_unknown_agent;

use crate::registry::Agent;
use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// A rule's identity, as a SIEM and an operator see it.
#[derive(Debug)]
pub struct RuleInfo {
    /// Stable id, e.g. `egress.not_allowed`.
    pub id: &'static str,
    /// One sentence: when the rule fires.
    pub description: &'static str,
    pub severity: Severity,
    pub tags: &'static [&'static str],
}

/// Every rule this engine implements.
pub const ALL: &[&RuleInfo] = &[&egress_not_allowed::RULE, &egress_unknown_agent::RULE, &dns_foreign_resolver::RULE];

/// Who did it: a known agent, or an address nobody holds.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Agent(&'a Agent),
    Address(IpAddr),
}

impl Subject<'_> {
    /// The incident key's first part.
    pub fn key(&self) -> String {
        match self {
            Subject::Agent(a) => a.id.to_string(),
            Subject::Address(ip) => ip.to_string(),
        }
    }
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Subject::Agent(a) => write!(f, "{} {}", a.profile, a.id),
            Subject::Address(ip) => write!(f, "unknown host {ip}"),
        }
    }
}

/// One rule firing on one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: &'static RuleInfo,
    /// Incident key: `subject/rule[/target]`.
    pub incident: String,
    pub summary: String,
}

impl PartialEq for RuleInfo {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Finding {
    pub fn new(rule: &'static RuleInfo, subject: &Subject, target: Option<&str>, summary: String) -> Finding {
        let incident = match target {
            Some(t) => format!("{}/{}/{}", subject.key(), rule.id, t),
            None => format!("{}/{}", subject.key(), rule.id),
        };
        Finding { rule, incident, summary }
    }
}

/// `host:port` with IPv6 bracketed, for incident keys and summaries.
pub fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::policy::Policy;
    use crate::record::{Flow, Proto};
    use crate::registry::Agent;
    use crate::time::Timestamp;
    use std::rc::Rc;

    pub const POLICY: &str = r#"
[monitor]
agent_subnets = ["10.20.0.0/16"]
corp_resolvers = ["10.0.0.53"]

[agent_profile."data_collector_v1"]
allowed_outbound = [
{ protocol = "TCP", port = 443, destination = "api.internal.example.net" },
{ protocol = "UDP", port = 53, destination = "ANY" },
{ protocol = "TCP", port = "8000-8100", destination = "10.30.0.0/24" },
]
"#;

    pub fn policy() -> Policy {
        Policy::from_toml(POLICY).unwrap()
    }

    pub fn agent(profile: &str) -> Agent {
        Agent {
            id: Rc::from("0x8a3f"),
            agent_type: Rc::from(profile),
            deployment: None,
            profile: Rc::from(profile),
            task_id: None,
            ips: vec!["10.20.0.15".parse().unwrap()],
            spawned: Timestamp::from_secs(1_795_530_600),
            lifetime_minutes: None,
            extended_minutes: 0,
            terminated: None,
        }
    }

    pub fn flow(src: &str, dst: &str, port: u16, proto: Proto) -> Flow {
        Flow {
            ts: Timestamp::from_secs(1_795_530_660),
            end: None,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 50_000,
            dst_port: port,
            proto,
            bytes: 100,
            packets: 1,
        }
    }
}
