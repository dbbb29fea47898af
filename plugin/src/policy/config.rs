//! The policy file's shapes, exactly as an operator writes them.
//!
//! Every table denies unknown keys so a typo (`expected_lifetime_minute`) is a
//! load error with its line, not a silently ignored setting.

use super::Profile;
use crate::net::destination::{ListenPort, Rule};
use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The whole policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Fleet-wide settings: agent subnets, corporate resolvers, timing and caps.
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// Known-good destinations for unplanned calls (audited, not alerted).
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// How to read inputs that leave something implicit.
    #[serde(default)]
    pub inputs: InputsConfig,
    /// One table per agent type (or profile name).
    #[serde(default)]
    pub agent_profile: BTreeMap<String, ProfileConfig>,
}

/// `[inputs]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsConfig {
    /// The zone of nfdump's zone-less local times, as an offset: "+01:00", "-05:00" ("+00:00" by default).
    #[serde(default, deserialize_with = "utc_offset")]
    pub nfdump_utc_offset: i64,
    /// `[inputs.openclaw]`: how OpenClaw's agents and gateway map onto agents.
    #[serde(default)]
    pub openclaw: OpenClawInput,
    /// `[inputs.nanoclaw]`: how NanoClaw's session containers map onto agents.
    #[serde(default)]
    pub nanoclaw: NanoClawInput,
}

/// `[inputs.openclaw]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenClawInput {
    /// The agent type (profile) of OpenClaw agents not in `agent_types` (default "openclaw").
    pub agent_type: Option<String>,
    /// The agent type of each OpenClaw agent, by its `agentId` (`main = "assistant"`).
    #[serde(default)]
    pub agent_types: BTreeMap<String, String>,
    /// Sandbox address(es) of a session, by `sessionKey`: flows from them are that agent's alone.
    #[serde(default)]
    pub session_addresses: BTreeMap<String, Addresses>,
    /// The gateway host's address(es), which all its unsandboxed agents share.
    pub gateway_addresses: Option<Addresses>,
    /// The agent id the gateway itself is known by (default "openclaw-gateway").
    pub gateway_id: Option<String>,
    /// The profile the gateway's own calls and scheduled turns are judged by (default "openclaw_gateway").
    pub gateway_profile: Option<String>,
}

/// `[inputs.nanoclaw]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NanoClawInput {
    /// The agent type (profile) of NanoClaw containers (default "nanoclaw").
    pub agent_type: Option<String>,
    /// Address(es) of each agent group's containers, by group name or folder.
    #[serde(default)]
    pub group_addresses: BTreeMap<String, Addresses>,
    /// The day of text lines that carry only a time of day ("2026-12-02"), when the shipper gives no record time.
    #[serde(default, deserialize_with = "day")]
    pub day: Option<crate::time::Timestamp>,
    /// NanoClaw prints the host's local time: its offset, "+01:00" ("+00:00" by default).
    #[serde(default, deserialize_with = "utc_offset")]
    pub utc_offset: i64,
}

/// One address or a list of them.
#[derive(Debug, Clone)]
pub struct Addresses(pub Vec<IpAddr>);

impl<'de> Deserialize<'de> for Addresses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let texts = match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        texts
            .iter()
            .map(|t| {
                t.trim()
                    .parse::<IpAddr>()
                    .map(|ip| ip.to_canonical())
                    .map_err(|_| de::Error::custom(format!("invalid IP address `{t}`")))
            })
            .collect::<Result<_, _>>()
            .map(Addresses)
    }
}

fn day<'de, D: Deserializer<'de>>(d: D) -> Result<Option<crate::time::Timestamp>, D::Error> {
    let s = String::deserialize(d)?;
    let valid = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    valid
        .then(|| crate::time::Timestamp::parse_rfc3339(&format!("{s}T00:00:00Z")))
        .flatten()
        .map(Some)
        .ok_or_else(|| {
            de::Error::custom(format!("expected a day like \"2026-12-02\", found {s:?}"))
        })
}

fn utc_offset<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s = String::deserialize(d)?;
    let b = s.as_bytes();
    let parsed = (b.len() == 6 && matches!(b[0], b'+' | b'-') && b[3] == b':')
        .then(|| Some((s[1..3].parse::<i64>().ok()?, s[4..6].parse::<i64>().ok()?)))
        .flatten()
        .filter(|(h, m)| *h <= 14 && *m < 60);
    match parsed {
        Some((h, m)) => Ok(if b[0] == b'-' {
            -(h * 3600 + m * 60)
        } else {
            h * 3600 + m * 60
        }),
        None => Err(de::Error::custom(format!(
            "invalid UTC offset `{s}`: expected e.g. \"+01:00\" or \"-05:00\""
        ))),
    }
}

/// `[monitor]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Networks agents live in: traffic from here must belong to a live agent.
    pub agent_subnets: Vec<Cidr>,
    /// The resolvers agents must use; DNS to any other is `dns.foreign_resolver`.
    pub corp_resolvers: Vec<IpAddr>,
    /// How long after its TTL a DNS answer still names an address (Cilium-style grace).
    pub dns_ttl_grace_seconds: u64,
    /// An incident with no new finding for this long closes; the next finding opens a new one.
    pub incident_quiet_minutes: u64,
    /// Cap on agents held (live and recently terminated); the least recently seen go first.
    #[serde(deserialize_with = "at_least_one")]
    pub max_agents: usize,
    /// Cap on (client, address) → name entries learnt from DNS answers.
    #[serde(deserialize_with = "at_least_one")]
    pub max_dns_entries: usize,
    /// Cap on incidents tracked at once.
    #[serde(deserialize_with = "at_least_one")]
    pub max_incidents: usize,
    /// Flood limit: new incidents of one rule for one agent (or address) in a minute;
    /// more open none and are counted in one summary record.
    #[serde(deserialize_with = "at_least_one")]
    pub max_new_incidents_per_minute: usize,
    /// Flood limit: new incidents of one rule for one /24 (IPv6: /64) of addresses
    /// no agent holds, in a minute.
    #[serde(deserialize_with = "at_least_one")]
    pub max_new_incidents_per_subnet_per_minute: usize,
    /// Records longer than this pass through unparsed, tagged as oversized.
    #[serde(deserialize_with = "at_least_one")]
    pub max_record_bytes: usize,
    /// How late a record may arrive (flow exporters' active timeouts): time-driven
    /// checks judge a moment only once event time is this far past it.
    pub lateness_minutes: u64,
    /// One record moves event time forward by at most this much, so a single
    /// record stamped far in the future cannot fire every deadline at once.
    #[serde(deserialize_with = "at_least_one")]
    pub max_clock_step_minutes: usize,
    /// Adaptive baselines stay within [seed / this, seed × this].
    #[serde(deserialize_with = "multiplier")]
    pub baseline_max_drift: Option<f64>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            agent_subnets: Vec::new(),
            corp_resolvers: Vec::new(),
            dns_ttl_grace_seconds: 300,
            incident_quiet_minutes: 60,
            max_agents: 32_768,
            max_dns_entries: 262_144,
            max_incidents: 65_536,
            max_new_incidents_per_minute: 20,
            max_new_incidents_per_subnet_per_minute: 100,
            max_record_bytes: 1 << 20,
            lateness_minutes: 10,
            max_clock_step_minutes: 60,
            baseline_max_drift: Some(2.0),
        }
    }
}

/// `[approvals]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// Destinations an unplanned call may reach as an audited authorisation.
    #[serde(default)]
    pub allow: Vec<Rule>,
}

/// `[agent_profile."name"]`: a profile's settings. `C` is the type of its
/// `context` table: per-deployment overrides at the top level, [`NoContext`]
/// inside a context so overrides cannot nest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, bound = "C: Deserialize<'de> + Default")]
pub struct ProfileSettings<C> {
    /// Minutes an agent of this type may live before its traffic is `lifetime.exceeded`.
    pub expected_lifetime_minutes: Option<u64>,
    /// The connections agents of this type may make; anything else is `egress.not_allowed`.
    pub allowed_outbound: Option<Vec<Rule>>,
    /// Ports agents of this type serve on: their answers from these ports are
    /// replies, judged only if no peer's connection to them turns up.
    pub listen: Option<Vec<ListenPort>>,
    /// Expected connections per hour, the seed of the volume baseline.
    pub baseline_connections_per_hour: Option<u64>,
    /// How far above baseline volume may go before `volume.anomaly`.
    #[serde(default, deserialize_with = "multiplier")]
    pub volume_anomaly_threshold_multiplier: Option<f64>,
    /// How early or late a scheduled connection may occur; also the grace past the lifetime.
    pub allowed_time_variance_minutes: Option<u64>,
    /// Expected bytes sent per hour, the seed of the byte-volume baseline.
    pub baseline_bytes_per_hour: Option<u64>,
    /// Let the baselines follow what agents of this type really do (within
    /// `baseline_max_drift` of the seed).
    pub adaptive_baseline: Option<bool>,
    /// Record volume and rate findings without alerting, while a profile is tuned.
    pub learning: Option<bool>,
    /// Connections per minute to one destination beyond which a loop is `rate.runaway`.
    #[serde(default, deserialize_with = "positive")]
    pub max_requests_per_minute: Option<u64>,
    /// How often agents of this type send heartbeats; missing two in a row is `heartbeat.missing`.
    #[serde(default, deserialize_with = "positive")]
    pub heartbeat_interval_minutes: Option<u64>,
    /// `[agent_profile."name".context."deployment"]`: settings that replace the
    /// profile's own for agents spawned with that `deployment`.
    #[serde(default)]
    pub context: C,
}

pub type ProfileConfig = ProfileSettings<BTreeMap<String, ProfileOverrides>>;
pub type ProfileOverrides = ProfileSettings<NoContext>;

/// Stands where a context would hold another `context` table: always an error.
#[derive(Debug, Default)]
pub struct NoContext;

impl<'de> Deserialize<'de> for NoContext {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(de::Error::custom(
            "a context cannot hold another `context`: write each deployment's overrides directly under the profile",
        ))
    }
}

impl<C> ProfileSettings<C> {
    pub(super) fn apply_to(self, mut profile: Profile) -> Profile {
        if let Some(v) = self.expected_lifetime_minutes {
            profile.expected_lifetime_minutes = Some(v);
        }
        if let Some(v) = self.allowed_outbound {
            profile.allowed_outbound = v.into();
        }
        if let Some(v) = self.listen {
            profile.listen = Some(v);
        }
        if let Some(v) = self.baseline_connections_per_hour {
            profile.baseline_connections_per_hour = Some(v);
        }
        if let Some(v) = self.volume_anomaly_threshold_multiplier {
            profile.volume_anomaly_threshold_multiplier = Some(v);
        }
        if let Some(v) = self.allowed_time_variance_minutes {
            profile.allowed_time_variance_minutes = Some(v);
        }
        if let Some(v) = self.baseline_bytes_per_hour {
            profile.baseline_bytes_per_hour = Some(v);
        }
        if let Some(v) = self.adaptive_baseline {
            profile.adaptive_baseline = v;
        }
        if let Some(v) = self.learning {
            profile.learning = v;
        }
        if let Some(v) = self.max_requests_per_minute {
            profile.max_requests_per_minute = v;
        }
        if let Some(v) = self.heartbeat_interval_minutes {
            profile.heartbeat_interval_minutes = Some(v);
        }
        profile
    }
}

/// A CIDR, or a single address meaning a /32 or /128.
#[derive(Debug, Clone)]
pub struct Cidr(pub IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Ok(ip) = s.trim().parse::<IpAddr>() {
            return Ok(Cidr(IpNet::from(ip.to_canonical())));
        }
        let net: IpNet = s.trim().parse().map_err(|_| {
            de::Error::custom(format!(
                "invalid CIDR `{s}`: expected e.g. \"10.20.0.0/16\""
            ))
        })?;
        Ok(Cidr(net.trunc()))
    }
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = i64::deserialize(d)?;
    usize::try_from(v)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| de::Error::custom(format!("must be at least 1, found {v}")))
}

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = i64::deserialize(d)?;
    u64::try_from(v)
        .ok()
        .filter(|v| *v >= 1)
        .map(Some)
        .ok_or_else(|| de::Error::custom(format!("must be at least 1, found {v}")))
}

fn multiplier<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v > 1.0 {
        Ok(Some(v))
    } else {
        Err(de::Error::custom(format!(
            "must be a number greater than 1 (a multiple of the baseline), found {v}"
        )))
    }
}
