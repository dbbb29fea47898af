//! The operator's policy (DESIGN §3): what each agent type may do.
//!
//! [`config`] holds the TOML shapes exactly as written (unknown keys are
//! errors); [`Policy::from_toml`] compiles them once into the lookup
//! structures the engine uses on every record.

pub mod config;
mod error;
pub mod lint;

pub use crate::net::destination::{Destination, ListenPort, Ports, Protocol, Rule};
pub use error::PolicyError;

use crate::net::RuleSet;
use config::{PolicyConfig, ProfileOverrides};
use ipnet::IpNet;
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// Fleet-wide settings, with defaults filled in.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub agent_subnets: Vec<IpNet>,
    pub corp_resolvers: Vec<IpAddr>,
    pub dns_ttl_grace_secs: i64,
    pub incident_quiet_secs: i64,
    pub max_agents: usize,
    pub max_dns_entries: usize,
    pub max_incidents: usize,
    pub max_new_incidents_per_minute: u32,
    pub max_new_incidents_per_subnet_per_minute: u32,
    pub max_record_bytes: usize,
    pub lateness_secs: i64,
    pub max_clock_step_secs: i64,
    pub baseline_max_drift: f64,
}

impl Monitor {
    pub fn in_agent_subnet(&self, ip: IpAddr) -> bool {
        self.agent_subnets.iter().any(|net| net.contains(&ip))
    }

    pub fn is_corp_resolver(&self, ip: IpAddr) -> bool {
        self.corp_resolvers.contains(&ip)
    }
}

/// One agent type's rules, after any deployment-context override was applied.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// The deployment context whose overrides were applied, if any.
    pub context: Option<String>,
    pub expected_lifetime_minutes: Option<u64>,
    pub allowed_outbound: RuleSet,
    /// Declared service ports; `None` when the profile does not say.
    pub listen: Option<Vec<ListenPort>>,
    pub baseline_connections_per_hour: Option<u64>,
    pub volume_anomaly_threshold_multiplier: Option<f64>,
    pub allowed_time_variance_minutes: Option<u64>,
    pub baseline_bytes_per_hour: Option<u64>,
    pub adaptive_baseline: bool,
    pub learning: bool,
    pub max_requests_per_minute: u64,
    pub heartbeat_interval_minutes: Option<u64>,
}

/// A connection rate no task sanely needs to one destination, when the profile does not say.
pub const DEFAULT_MAX_REQUESTS_PER_MINUTE: u64 = 300;

impl Profile {
    /// How early or late scheduled actions may run, and the grace past the lifetime.
    pub fn variance_secs(&self) -> i64 {
        let minutes = self.allowed_time_variance_minutes.unwrap_or(0);
        // Not `saturating_mul`: in the guest its overflow test is a call to a
        // 128-bit multiply, and this runs on every flow.
        crate::time::scaled_count(minutes, 60)
    }

    /// The first `allowed_outbound` rule that admits the connection.
    pub fn allowing_rule(
        &self,
        proto: crate::net::Proto,
        port: u16,
        ip: IpAddr,
        names: &[&str],
    ) -> Option<&Rule> {
        self.allowed_outbound.first_allowing(proto, port, ip, names)
    }

    /// Whether the profile declares `port` a service port of its agents.
    pub fn serves(&self, proto: crate::net::Proto, port: u16) -> Option<bool> {
        self.listen
            .as_ref()
            .map(|ports| ports.iter().any(|l| l.serves(proto, port)))
    }
}

#[derive(Debug, Clone)]
struct ProfileEntry {
    base: Profile,
    contexts: FxHashMap<String, Profile>,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub monitor: Monitor,
    /// Destinations that unplanned calls may reach as audited authorisations.
    pub approvals: RuleSet,
    /// How to read inputs that leave something implicit.
    pub inputs: crate::record::InputSettings,
    profiles: FxHashMap<String, ProfileEntry>,
}

impl Policy {
    /// Parses and compiles a policy; the error names the line, column, table and key.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let config: PolicyConfig = toml::from_str(text).map_err(|e| {
            PolicyError::at(text, e.span().map(|s| s.start), e.message().trim_end())
        })?;
        Ok(Self::build(config))
    }

    fn build(config: PolicyConfig) -> Policy {
        let m = config.monitor;
        let monitor = Monitor {
            agent_subnets: m.agent_subnets.into_iter().map(|c| c.0).collect(),
            corp_resolvers: m
                .corp_resolvers
                .into_iter()
                .map(|ip| ip.to_canonical())
                .collect(),
            dns_ttl_grace_secs: m.dns_ttl_grace_seconds as i64,
            incident_quiet_secs: (m.incident_quiet_minutes as i64).saturating_mul(60),
            max_agents: m.max_agents,
            max_dns_entries: m.max_dns_entries,
            max_incidents: m.max_incidents,
            max_new_incidents_per_minute: m.max_new_incidents_per_minute.min(u32::MAX as usize)
                as u32,
            max_new_incidents_per_subnet_per_minute: m
                .max_new_incidents_per_subnet_per_minute
                .min(u32::MAX as usize) as u32,
            max_record_bytes: m.max_record_bytes,
            lateness_secs: (m.lateness_minutes as i64).saturating_mul(60),
            max_clock_step_secs: (m.max_clock_step_minutes as i64).saturating_mul(60),
            baseline_max_drift: m.baseline_max_drift.unwrap_or(2.0),
        };
        let profiles = config
            .agent_profile
            .into_iter()
            .map(|(name, mut p)| {
                let context = std::mem::take(&mut p.context);
                let base = p.apply_to(Profile {
                    name: name.clone(),
                    context: None,
                    expected_lifetime_minutes: None,
                    allowed_outbound: RuleSet::default(),
                    listen: None,
                    baseline_connections_per_hour: None,
                    volume_anomaly_threshold_multiplier: None,
                    allowed_time_variance_minutes: None,
                    baseline_bytes_per_hour: None,
                    adaptive_baseline: false,
                    learning: false,
                    max_requests_per_minute: DEFAULT_MAX_REQUESTS_PER_MINUTE,
                    heartbeat_interval_minutes: None,
                });
                let contexts = context
                    .into_iter()
                    .map(|(ctx, o): (String, ProfileOverrides)| {
                        let mut resolved = o.apply_to(base.clone());
                        resolved.context = Some(ctx.clone());
                        (ctx, resolved)
                    })
                    .collect();
                (name, ProfileEntry { base, contexts })
            })
            .collect();
        let addresses = |m: std::collections::BTreeMap<String, config::Addresses>| {
            m.into_iter().map(|(k, v)| (k, v.0)).collect()
        };
        let i = config.inputs;
        let oc = i.openclaw;
        let inputs = crate::record::InputSettings {
            nfdump_utc_offset_secs: i.nfdump_utc_offset,
            openclaw: crate::record::OpenClawSettings {
                agent_type: oc.agent_type,
                agent_types: oc.agent_types,
                session_addresses: addresses(oc.session_addresses),
                gateway: oc
                    .gateway_addresses
                    .map(|ips| crate::record::GatewaySettings {
                        agent_id: oc.gateway_id.unwrap_or_else(|| "openclaw-gateway".into()),
                        profile: oc
                            .gateway_profile
                            .unwrap_or_else(|| "openclaw_gateway".into()),
                        ips: ips.0,
                    }),
            },
            nanoclaw: crate::record::NanoClawSettings {
                framework: crate::record::FrameworkSettings {
                    agent_type: i.nanoclaw.agent_type,
                    addresses: addresses(i.nanoclaw.group_addresses),
                },
                day: i.nanoclaw.day,
                utc_offset_secs: i.nanoclaw.utc_offset,
            },
        };
        Policy {
            monitor,
            approvals: config.approvals.allow.into(),
            inputs,
            profiles,
        }
    }

    /// The profile for `name` as it applies in `deployment`.
    pub fn profile(&self, name: &str, deployment: Option<&str>) -> Option<&Profile> {
        let entry = self.profiles.get(name)?;
        Some(
            deployment
                .and_then(|d| entry.contexts.get(d))
                .unwrap_or(&entry.base),
        )
    }

    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// Every profile as written and as each deployment context resolves it, in name order.
    pub fn all_profiles(&self) -> Vec<&Profile> {
        let mut names: Vec<&String> = self.profiles.keys().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let entry = &self.profiles[name];
            out.push(&entry.base);
            let mut contexts: Vec<&String> = entry.contexts.keys().collect();
            contexts.sort();
            out.extend(contexts.into_iter().map(|c| &entry.contexts[c]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Proto;

    /// DESIGN §3's seed example: must load exactly as written.
    const SEED: &str = r#"
[agent_profile."data_collector_v1"]
expected_lifetime_minutes = 120
allowed_outbound = [
{ protocol = "TCP", port = 443, destination = "api.internal.example.net" },
{ protocol = "UDP", port = 53, destination = "ANY" }, # For DNS, but flagged if not to corp resolver
]
baseline_connections_per_hour = 12
volume_anomaly_threshold_multiplier = 5.0
allowed_time_variance_minutes = 15 # How early/late can scheduled connections occur?
"#;

    const BEYOND: &str = r#"
[monitor]
agent_subnets = ["10.20.0.0/16"]           # traffic from here must belong to a live agent
corp_resolvers = ["10.0.0.53", "10.0.0.54"]

[approvals]                                 # known-good destinations for unplanned calls
allow = [
{ protocol = "TCP", port = 443, destination = "pypi.org" },
]

[agent_profile."research_agent"]
allowed_outbound = [
{ protocol = "TCP", port = 443, destination = "**.edu" },          # any depth below edu
{ protocol = "TCP", port = 443, destination = "*.wikipedia.org" }, # exactly one label
{ protocol = "TCP", port = 8443, destination = "10.30.0.0/24" },   # CIDR (or a single IP)
]

[agent_profile."research_agent".context."continuous"]   # overrides for deployment "continuous"
expected_lifetime_minutes = 20160
"#;

    #[test]
    fn seed_example_loads_exactly_as_written() {
        let p = Policy::from_toml(SEED).unwrap();
        let dc = p.profile("data_collector_v1", None).unwrap();
        assert_eq!(dc.expected_lifetime_minutes, Some(120));
        assert_eq!(dc.allowed_outbound.len(), 2);
        assert_eq!(dc.baseline_connections_per_hour, Some(12));
        assert_eq!(dc.volume_anomaly_threshold_multiplier, Some(5.0));
        assert_eq!(dc.allowed_time_variance_minutes, Some(15));
        assert_eq!(dc.allowed_outbound[1].destination, Destination::Any);
    }

    #[test]
    fn design_extensions_load_and_contexts_override() {
        let p = Policy::from_toml(&format!("{SEED}{BEYOND}")).unwrap();
        assert_eq!(p.monitor.corp_resolvers.len(), 2);
        assert!(p.monitor.in_agent_subnet("10.20.5.5".parse().unwrap()));
        assert_eq!(p.approvals.len(), 1);
        let ra = p.profile("research_agent", Some("continuous")).unwrap();
        assert_eq!(ra.expected_lifetime_minutes, Some(20160));
        assert_eq!(
            ra.allowed_outbound.len(),
            3,
            "context inherits what it does not override"
        );
        assert_eq!(
            p.profile("research_agent", Some("staging"))
                .unwrap()
                .expected_lifetime_minutes,
            None
        );
        assert!(
            ra.allowing_rule(Proto::Tcp, 8443, "10.30.0.7".parse().unwrap(), &[])
                .is_some()
        );
        assert!(p.profile("nobody", None).is_none());
    }

    fn error_of(text: &str) -> PolicyError {
        Policy::from_toml(text).unwrap_err()
    }

    #[test]
    fn unknown_keys_name_line_table_and_key() {
        let e = error_of("[agent_profile.\"x\"]\nexpected_lifetime_minute = 5\n");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.table.as_deref(), Some("agent_profile.\"x\""));
        assert!(
            e.message
                .contains("unknown field `expected_lifetime_minute`"),
            "{e}"
        );
        let e = error_of("[monitor]\nagent_subnet = []\n");
        assert!(e.message.contains("agent_subnet"), "{e}");
        let e = error_of(
            "[agent_profile.\"x\"]\nallowed_outbound = [{ protocol = \"TCP\", port = 443, destination = \"a.example\", note = 1 }]\n",
        );
        assert!(e.message.contains("unknown field `note`"), "{e}");
        let e = error_of("[surprise]\n");
        assert!(e.message.contains("surprise"), "{e}");
    }

    #[test]
    fn bad_values_name_line_and_reason() {
        for (text, line, needle) in [
            (
                "[monitor]\nagent_subnets = [\"10.20.0.0/40\"]\n",
                2,
                "invalid CIDR",
            ),
            (
                "[monitor]\ncorp_resolvers = [\"resolver\"]\n",
                2,
                "invalid IP",
            ),
            (
                "[agent_profile.\"x\"]\nallowed_outbound = [\n{ protocol = \"SCTP\", port = 1, destination = \"ANY\" },\n]\n",
                3,
                "unknown protocol `SCTP`",
            ),
            (
                "[agent_profile.\"x\"]\nallowed_outbound = [\n{ protocol = \"TCP\", port = 70000, destination = \"ANY\" },\n]\n",
                3,
                "0-65535",
            ),
            (
                "[agent_profile.\"x\"]\nallowed_outbound = [\n{ protocol = \"TCP\", destination = \"ANY\" },\n]\n",
                3,
                "missing field `port`",
            ),
            (
                "[agent_profile.\"x\"]\nvolume_anomaly_threshold_multiplier = 0.5\n",
                2,
                "greater than 1",
            ),
            (
                "[agent_profile.\"x\"]\nexpected_lifetime_minutes = -3\n",
                2,
                "",
            ),
            ("[monitor]\nmax_agents = 0\n", 2, "at least 1"),
            (
                "[inputs]\nnfdump_utc_offset = \"CET\"\n",
                2,
                "invalid UTC offset `CET`",
            ),
            (
                "[inputs.openclaw]\nsession_addresses = { \"agent:main:main\" = \"10.20.6\" }\n",
                2,
                "invalid IP address `10.20.6`",
            ),
            (
                "[inputs.nanoclaw]\ngroups = {}\n",
                2,
                "unknown field `groups`",
            ),
            ("not toml at all", 1, ""),
        ] {
            let e = error_of(text);
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn empty_policy_is_valid_and_allows_nothing() {
        let p = Policy::from_toml("").unwrap();
        assert!(p.monitor.agent_subnets.is_empty());
        assert_eq!(p.profile_names().count(), 0);
    }
}
