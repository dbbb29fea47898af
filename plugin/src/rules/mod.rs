//! Detection rules (DESIGN §4). One rule per file, each with its stable id,
//! description, default severity, tags, its check, and its tests.

pub mod activity;
pub mod approval_granted;
pub mod dns_foreign_resolver;
pub mod dns_high_entropy;
pub mod dns_tunneling;
pub mod egress_not_allowed;
pub mod egress_unknown_agent;
pub mod heartbeat_mismatch;
pub mod heartbeat_missing;
mod letter_bigrams;
pub mod lifetime_exceeded;
pub mod plan_undeclared;
pub mod rate_runaway;
pub mod schedule_deviation;
pub mod telemetry_chain_broken;
pub mod volume_anomaly;

pub use crate::net::{endpoint, push_endpoint, registered_domain};
use crate::policy::{Monitor, Profile};
use crate::record::{DnsQuery, Flow};
use crate::registry::Agent;
pub(crate) use crate::text::ip_text;
use crate::time::Timestamp;
use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

/// Saved as its rank (one byte), where serde would write the variant's
/// name with every incident and finding; text in human-readable formats.
impl serde::Serialize for Severity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(self.as_str())
        } else {
            s.serialize_u8(*self as u8)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Severity, D::Error> {
        use serde::de::Error;
        const ALL: [Severity; 4] = [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
        ];
        if d.is_human_readable() {
            let text = <std::borrow::Cow<str>>::deserialize(d)?;
            return (ALL.into_iter().find(|s| s.as_str() == text)).ok_or_else(|| {
                D::Error::unknown_variant(&text, &["info", "low", "medium", "high"])
            });
        }
        let rank = u8::deserialize(d)?;
        (ALL.get(usize::from(rank)).copied())
            .ok_or_else(|| D::Error::custom(format!("severity rank {rank}, expected 0 to 3")))
    }
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
pub const ALL: &[&RuleInfo] = &[
    &egress_not_allowed::RULE,
    &egress_unknown_agent::RULE,
    &dns_foreign_resolver::RULE,
    &dns_high_entropy::RULE,
    &dns_tunneling::RULE,
    &volume_anomaly::RULE,
    &rate_runaway::RULE,
    &lifetime_exceeded::RULE,
    &schedule_deviation::RULE,
    &plan_undeclared::RULE,
    &heartbeat_mismatch::RULE,
    &heartbeat_missing::RULE,
    &approval_granted::RULE,
    &telemetry_chain_broken::RULE,
];

/// One record as an independent detector sees it: what happened, who did it,
/// and the policy that applies. Built once per record by the engine.
pub struct Seen<'a> {
    pub subject: Subject<'a>,
    /// The agent's profile (`None` for an address nobody holds, or a type
    /// the policy does not know).
    pub profile: Option<&'a Profile>,
    pub monitor: &'a Monitor,
    pub event: Observed<'a>,
}

/// The record a detector is shown.
#[derive(Clone, Copy)]
pub enum Observed<'a> {
    /// A flow and the names the agent had resolved for its destination.
    Flow {
        flow: &'a Flow,
        names: &'a [&'a str],
    },
    Dns(&'a DnsQuery),
    /// A call an egress proxy logged, by the name asked for.
    ProxyCall {
        ts: Timestamp,
        host: &'a str,
        port: u16,
    },
}

impl Observed<'_> {
    pub fn ts(&self) -> Timestamp {
        match self {
            Observed::Flow { flow, .. } => flow.ts,
            Observed::Dns(query) => query.ts,
            Observed::ProxyCall { ts, .. } => *ts,
        }
    }

    /// What was done, for summaries: `connected to api.example.net:443/tcp`.
    pub fn describe(&self) -> String {
        match self {
            Observed::Flow { flow, names } => {
                let mut text = String::from("connected to ");
                match names.first() {
                    Some(name) => push_endpoint(&mut text, name, flow.dst_port),
                    None => push_endpoint(&mut text, &ip_text(flow.dst), flow.dst_port),
                }
                text.push('/');
                flow.proto.push_name(&mut text);
                text
            }
            Observed::Dns(query) => format!("resolved {}", query.qname),
            Observed::ProxyCall { host, port, .. } => {
                format!("asked its proxy for {host}:{port}")
            }
        }
    }
}

/// A rule that needs only the record in front of it ([`Seen`]): no memory of
/// earlier records, no deadline. Adding one is its file and a line in
/// [`RECORD_DETECTORS`]; rules that learn (rates, baselines, heartbeats) keep
/// their state in the engine and are called where that state lives.
pub trait Detector: Sync {
    fn rule(&self) -> &'static RuleInfo;
    fn inspect(&self, seen: &Seen) -> Option<Finding>;
}

/// The independent detectors, in the order their findings are reported.
pub const RECORD_DETECTORS: &[&dyn Detector] = &[
    &egress_unknown_agent::UnknownAgent,
    &dns_foreign_resolver::ForeignResolver,
    &lifetime_exceeded::PastLifetime,
];

/// Runs every independent detector on one record.
pub fn inspect(seen: &Seen, findings: &mut Vec<Finding>) {
    findings.extend(RECORD_DETECTORS.iter().filter_map(|d| d.inspect(seen)));
}

/// The rule with this id.
pub fn by_id(id: &str) -> Option<&'static RuleInfo> {
    ALL.iter().copied().find(|r| r.id == id)
}

/// Saved state names a rule by its id, which stays stable across versions.
pub mod rule_by_id {
    use super::RuleInfo;
    use serde::{Deserialize, Deserializer, Serializer};

    /// A name ([`crate::name`]): within a save, a rule's id after its first mention is a number.
    pub fn serialize<S: Serializer>(rule: &&'static RuleInfo, s: S) -> Result<S::Ok, S::Error> {
        crate::name::serialize_str(rule.id, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'static RuleInfo, D::Error> {
        let id = crate::name::Name::deserialize(d)?;
        super::by_id(&id).ok_or_else(|| serde::de::Error::custom(format!("unknown rule id `{id}`")))
    }
}

/// Who did it: a known agent, or an address nobody holds.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Agent(&'a Agent),
    Address(IpAddr),
    /// A log no agent owns (a telemetry stream without its gateway declared).
    Log(&'a str),
}

impl Subject<'_> {
    /// The incident key's first part.
    pub fn key(&self) -> String {
        let mut key = String::new();
        self.push_key(&mut key);
        key
    }

    /// Appends [`Subject::key`].
    pub fn push_key(&self, out: &mut String) {
        match self {
            Subject::Agent(a) => out.push_str(&a.info.id),
            Subject::Address(ip) => crate::text::push_ip(out, *ip),
            Subject::Log(name) => out.push_str(name),
        }
    }

    /// Appends how summaries name the subject (its `Display`).
    pub fn push_to(&self, out: &mut String) {
        match self {
            Subject::Agent(a) => {
                out.push_str(&a.info.profile);
                out.push(' ');
                out.push_str(&a.info.id);
            }
            Subject::Address(ip) => {
                out.push_str("unknown host ");
                crate::text::push_ip(out, *ip);
            }
            Subject::Log(name) => {
                out.push_str("log ");
                out.push_str(name);
            }
        }
    }
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut text = String::new();
        self.push_to(&mut text);
        f.write_str(&text)
    }
}

/// One rule firing on one record (or at one moment of event time).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    #[serde(with = "rule_by_id")]
    pub rule: &'static RuleInfo,
    /// This instance's severity (a rule may grade its findings).
    pub severity: Severity,
    /// False for audit findings (approvals) and for profiles in learning mode:
    /// recorded, but the record's verdict is not `alert`.
    pub alerting: bool,
    /// Incident key: `subject/rule[/target]`.
    #[serde(with = "crate::name::text")]
    pub incident: String,
    #[serde(with = "crate::name::words")]
    pub summary: String,
}

impl PartialEq for RuleInfo {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Finding {
    pub fn new(
        rule: &'static RuleInfo,
        subject: &Subject,
        target: Option<&str>,
        summary: String,
    ) -> Finding {
        // Built by hand: findings are made on every firing, and `format!`
        // cost more than the rest of making one.
        let mut incident = String::with_capacity(64);
        subject.push_key(&mut incident);
        incident.push('/');
        incident.push_str(rule.id);
        if let Some(t) = target {
            incident.push('/');
            incident.push_str(t);
        }
        Finding {
            rule,
            severity: rule.severity,
            alerting: rule.severity > Severity::Info,
            incident,
            summary,
        }
    }

    pub fn with_severity(mut self, severity: Severity) -> Finding {
        self.severity = severity;
        self
    }

    /// For a profile in learning mode: kept and counted, never an alert.
    pub fn learning(mut self) -> Finding {
        self.alerting = false;
        self.summary.insert_str(0, "(learning) ");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A severity is one byte in a save and its name in JSON.
    #[test]
    fn a_severity_is_saved_as_its_rank_and_read_back() {
        for severity in [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
        ] {
            let bytes = rmp_serde::to_vec(&severity).unwrap();
            assert_eq!(bytes, [severity as u8]);
            assert_eq!(rmp_serde::from_slice::<Severity>(&bytes).unwrap(), severity);
            let json = serde_json::to_string(&severity).unwrap();
            assert_eq!(json, format!("\"{}\"", severity.as_str()));
            assert_eq!(serde_json::from_str::<Severity>(&json).unwrap(), severity);
        }
        let err = rmp_serde::from_slice::<Severity>(&[4])
            .unwrap_err()
            .to_string();
        assert!(err.contains("severity rank 4"), "{err}");
    }

    #[test]
    fn every_rule_is_listed_once_and_every_detector_is_a_listed_rule() {
        let ids: std::collections::BTreeSet<&str> = ALL.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), ALL.len(), "a rule id is listed twice");
        for d in RECORD_DETECTORS {
            assert!(ids.contains(d.rule().id), "{} is not in ALL", d.rule().id);
        }
        let detectors: std::collections::BTreeSet<&str> =
            RECORD_DETECTORS.iter().map(|d| d.rule().id).collect();
        assert_eq!(detectors.len(), RECORD_DETECTORS.len());
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::name::Name;
    use crate::policy::Policy;
    use crate::record::{Flow, Proto};
    use crate::registry::{Agent, AgentInfo};
    use crate::time::{OptionalTimestamp, Timestamp};

    pub const POLICY: &str = r#"
[monitor]
agent_subnets = ["10.20.0.0/16"]
corp_resolvers = ["10.0.0.53"]

[approvals]
allow = [{ protocol = "TCP", port = 443, destination = "pypi.org" }]

[agent_profile."data_collector_v1"]
expected_lifetime_minutes = 120
allowed_time_variance_minutes = 15
baseline_connections_per_hour = 12
volume_anomaly_threshold_multiplier = 5.0
baseline_bytes_per_hour = 1000000
max_requests_per_minute = 30
heartbeat_interval_minutes = 15
allowed_outbound = [
{ protocol = "TCP", port = 443, destination = "api.internal.example.net" },
{ protocol = "UDP", port = 53, destination = "ANY" },
{ protocol = "TCP", port = "8000-8100", destination = "10.30.0.0/24" },
]
"#;

    pub fn policy() -> Policy {
        Policy::from_toml(POLICY).unwrap()
    }

    pub fn profile_of<'p>(policy: &'p Policy, name: &str) -> &'p crate::policy::Profile {
        policy
            .profile(name, None)
            .expect("profile in the test policy")
    }

    pub fn ts(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    pub fn agent(profile: &str) -> Agent {
        Agent {
            info: std::rc::Rc::new(AgentInfo::new(
                Name::from("0x8a3f"),
                Name::from(profile),
                None,
                Name::from(profile),
            )),
            task_id: None,
            ips: smallvec::smallvec!["10.20.0.15".parse().unwrap()],
            spawned: Timestamp::from_secs(1_795_530_600),
            lifetime_minutes: None,
            extended_minutes: 0,
            terminated: OptionalTimestamp::NONE,
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
            tcp_flags: None,
            src_initiated: false,
        }
    }
}
