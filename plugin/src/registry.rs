//! Which agent held which address, and when.
//!
//! Addresses are reused within minutes while flow records arrive late, so an
//! address keeps a short history of bindings and a flow is attributed by its
//! own start time, not by whoever holds the address when the record arrives.

use crate::bounded::BoundedMap;
use crate::name::Name;
use crate::net::Addr;
use crate::record::{PolicyChange, Spawn, Terminate};
use crate::time::Timestamp;
use smallvec::SmallVec;
use std::net::IpAddr;

/// Bindings kept per address; older ones are forgotten first.
const BINDINGS_PER_ADDRESS: usize = 8;

/// Flow exporters' and the control plane's clocks differ a little: a flow may
/// start this long before the spawn that gave its source address.
const SPAWN_SKEW_NANOS: i64 = 2 * crate::time::NANOS_PER_SEC;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Agent {
    pub id: Name,
    pub agent_type: Name,
    pub deployment: Option<Name>,
    /// The profile the agent is judged by (defaults to its type; `agent.policy` may change it).
    pub profile: Name,
    pub task_id: Option<String>,
    #[serde(with = "crate::net::addr::list")]
    pub ips: Vec<IpAddr>,
    pub spawned: Timestamp,
    /// Lifetime announced by the spawn record, which wins over the profile's.
    pub lifetime_minutes: Option<u64>,
    /// Extensions granted by `agent.policy`.
    pub extended_minutes: u64,
    pub terminated: Option<Timestamp>,
}

impl Agent {
    pub fn is_live_at(&self, t: Timestamp) -> bool {
        self.terminated.is_none_or(|end| t < end)
    }
}

/// The agent a record is attributed to, as the output writes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentInfo {
    pub id: Name,
    pub agent_type: Name,
    pub deployment: Option<Name>,
    pub profile: Name,
}

impl From<&Agent> for AgentInfo {
    fn from(a: &Agent) -> Self {
        AgentInfo {
            id: a.id.clone(),
            agent_type: a.agent_type.clone(),
            deployment: a.deployment.clone(),
            profile: a.profile.clone(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Binding {
    agent_id: Name,
    from: Timestamp,
    until: Option<Timestamp>,
}

/// What an update to the registry did, for the record's output note.
#[derive(Debug, PartialEq)]
pub enum Update {
    Applied,
    /// The record names an agent clawwatch does not know (never spawned, or evicted).
    UnknownAgent,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Registry {
    agents: BoundedMap<Name, Agent>,
    /// Most addresses have had one holder: that one is held inline.
    bindings: BoundedMap<Addr, SmallVec<[Binding; 1]>>,
}

crate::changes::apply_changes_by_field!(Registry { agents, bindings });

impl Registry {
    pub fn new(max_agents: usize) -> Registry {
        Registry {
            agents: BoundedMap::new(max_agents),
            // Each agent holds one address or a few; reused addresses share an entry.
            bindings: BoundedMap::new(max_agents.saturating_mul(2)),
        }
    }

    pub fn spawn(&mut self, s: &Spawn) {
        let id: Name = Name::from(s.agent_id.as_str());
        if let Some(previous) = self.agents.peek(&id).cloned() {
            // A re-spawn under the same id: addresses it no longer holds are released.
            for ip in previous.ips.iter().filter(|ip| !s.ips.contains(ip)) {
                self.close(*ip, &id, s.ts);
            }
        }
        for ip in &s.ips {
            let history = self.bindings.get_or_insert_with(Addr(*ip), SmallVec::new);
            // Whoever held the address without a terminate loses it now.
            for b in history
                .iter_mut()
                .filter(|b| b.until.is_none_or(|u| u > s.ts) && b.from <= s.ts)
            {
                b.until = Some(s.ts);
            }
            history.push(Binding {
                agent_id: id.clone(),
                from: s.ts,
                until: None,
            });
            history.sort_by_key(|b| b.from);
            if history.len() > BINDINGS_PER_ADDRESS {
                history.remove(0);
            }
        }
        let agent = Agent {
            id: id.clone(),
            agent_type: Name::from(s.agent_type.as_str()),
            deployment: s.deployment.as_deref().map(Name::from),
            profile: Name::from(s.profile.as_deref().unwrap_or(&s.agent_type)),
            task_id: s.task_id.clone(),
            ips: s.ips.clone(),
            spawned: s.ts,
            lifetime_minutes: s.expected_lifetime_minutes,
            extended_minutes: 0,
            terminated: None,
        };
        self.agents.insert(id, agent);
    }

    pub fn terminate(&mut self, t: &Terminate) -> Update {
        let Some(agent) = self.agents.get_mut(t.agent_id.as_str()) else {
            return Update::UnknownAgent;
        };
        agent.terminated = Some(agent.terminated.map_or(t.ts, |old| old.min(t.ts)));
        let (id, ips) = (agent.id.clone(), agent.ips.clone());
        for ip in ips {
            self.close(ip, &id, t.ts);
        }
        Update::Applied
    }

    pub fn change_policy(&mut self, c: &PolicyChange) -> Update {
        let Some(agent) = self.agents.get_mut(c.agent_id.as_str()) else {
            return Update::UnknownAgent;
        };
        if let Some(profile) = &c.profile {
            agent.profile = Name::from(profile.as_str());
        }
        agent.extended_minutes = agent
            .extended_minutes
            .saturating_add(c.extend_minutes.unwrap_or(0));
        Update::Applied
    }

    fn close(&mut self, ip: IpAddr, id: &Name, at: Timestamp) {
        if let Some(history) = self.bindings.peek_mut(&Addr(ip)) {
            for b in history
                .iter_mut()
                .filter(|b| b.agent_id == *id && b.until.is_none_or(|u| u > at))
            {
                b.until = Some(at);
            }
        }
    }

    /// The agent that held `ip` at time `t`, if any.
    pub fn agent_at(&mut self, ip: IpAddr, t: Timestamp) -> Option<&Agent> {
        let Registry { agents, bindings } = self;
        let binding = bindings
            .peek(&Addr(ip))?
            .iter()
            .rev()
            .find(|b| b.from.0 - SPAWN_SKEW_NANOS <= t.0 && b.until.is_none_or(|u| t < u))?;
        agents.get(&binding.agent_id)
    }

    pub fn agent(&mut self, id: &str) -> Option<&Agent> {
        self.agents.get(id)
    }

    /// The agent, without counting this as a use (recency, saved changes).
    pub fn peek_agent(&self, id: &str) -> Option<&Agent> {
        self.agents.peek(id)
    }

    /// Meets the running policy's cap after a restore.
    pub fn recap(&mut self, max_agents: usize) {
        self.agents.recap(max_agents);
        self.bindings.recap(max_agents.saturating_mul(2));
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn evictions(&self) -> u64 {
        self.agents.evictions() + self.bindings.evictions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn spawn(id: &str, ip: &str, at: &str) -> Spawn {
        Spawn {
            ts: ts(at),
            agent_id: id.into(),
            agent_type: "t".into(),
            deployment: None,
            profile: None,
            ips: vec![ip.parse().unwrap()],
            task_id: None,
            expected_lifetime_minutes: None,
        }
    }

    fn holder(r: &mut Registry, ip: &str, at: &str) -> Option<String> {
        r.agent_at(ip.parse().unwrap(), ts(at))
            .map(|a| a.id.to_string())
    }

    #[test]
    fn late_flows_are_attributed_by_their_own_start_time() {
        let mut r = Registry::new(16);
        r.spawn(&spawn("a", "10.20.0.5", "2026-11-24T10:00:00Z"));
        r.terminate(&Terminate {
            ts: ts("2026-11-24T10:30:00Z"),
            agent_id: "a".into(),
            reason: None,
        });
        r.spawn(&spawn("b", "10.20.0.5", "2026-11-24T10:32:00Z"));
        // A flow record for 10:20 arriving after b took the address still belongs to a.
        assert_eq!(
            holder(&mut r, "10.20.0.5", "2026-11-24T10:20:00Z").as_deref(),
            Some("a")
        );
        assert_eq!(holder(&mut r, "10.20.0.5", "2026-11-24T10:31:00Z"), None);
        assert_eq!(
            holder(&mut r, "10.20.0.5", "2026-11-24T10:33:00Z").as_deref(),
            Some("b")
        );
        assert_eq!(holder(&mut r, "10.20.0.5", "2026-11-24T09:00:00Z"), None);
    }

    #[test]
    fn reuse_without_terminate_hands_the_address_over() {
        let mut r = Registry::new(16);
        r.spawn(&spawn("a", "10.20.0.5", "2026-11-24T10:00:00Z"));
        r.spawn(&spawn("b", "10.20.0.5", "2026-11-24T11:00:00Z"));
        assert_eq!(
            holder(&mut r, "10.20.0.5", "2026-11-24T10:59:00Z").as_deref(),
            Some("a")
        );
        assert_eq!(
            holder(&mut r, "10.20.0.5", "2026-11-24T11:01:00Z").as_deref(),
            Some("b")
        );
    }

    #[test]
    fn policy_changes_apply_and_unknown_agents_are_reported() {
        let mut r = Registry::new(16);
        r.spawn(&spawn("a", "10.20.0.5", "2026-11-24T10:00:00Z"));
        let change = PolicyChange {
            ts: ts("2026-11-24T10:10:00Z"),
            agent_id: "a".into(),
            profile: Some("p2".into()),
            extend_minutes: Some(30),
        };
        assert_eq!(r.change_policy(&change), Update::Applied);
        assert_eq!(&*r.agent("a").unwrap().profile, "p2");
        assert_eq!(r.agent("a").unwrap().extended_minutes, 30);
        assert_eq!(
            r.change_policy(&PolicyChange {
                agent_id: "zz".into(),
                ..change
            }),
            Update::UnknownAgent
        );
    }

    #[test]
    fn memory_is_bounded_by_the_agent_cap() {
        let mut r = Registry::new(4);
        for i in 0..100 {
            r.spawn(&spawn(
                &format!("a{i}"),
                &format!("10.20.1.{i}"),
                "2026-11-24T10:00:00Z",
            ));
        }
        assert_eq!(r.len(), 4);
        assert!(r.evictions() >= 96);
        assert_eq!(
            holder(&mut r, "10.20.1.99", "2026-11-24T10:01:00Z").as_deref(),
            Some("a99")
        );
        assert_eq!(holder(&mut r, "10.20.1.0", "2026-11-24T10:01:00Z"), None);
    }
}
