//! Which agent held which address, and when.
//!
//! Addresses are reused within minutes while flow records arrive late, so an
//! address keeps a short history of bindings and a flow is attributed by its
//! own start time, not by whoever holds the address when the record arrives.

use crate::bounded::BoundedMap;
use crate::name::{Interner, Name};
use crate::net::Addr;
use crate::policy::{Policy, Profile};
use crate::record::{PolicyChange, Spawn, Terminate};
use crate::text::write_str;
use crate::time::{OptionalTimestamp, Timestamp};
use smallvec::SmallVec;
use std::cell::OnceCell;
use std::fmt;
use std::net::IpAddr;
use std::rc::Rc;

/// Bindings kept per address; older ones are forgotten first.
const BINDINGS_PER_ADDRESS: usize = 8;

/// Flow exporters' and the control plane's clocks differ a little: a flow may
/// start this long before the spawn that gave its source address.
const SPAWN_SKEW_NANOS: i64 = 2 * crate::time::NANOS_PER_SEC;

/// An agent as the registry knows it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(from = "SavedAgent")]
pub struct Agent {
    /// Its names, shared with its records' notes and its incidents (one
    /// allocation however many hold them); a new one when its profile changes.
    pub info: Rc<AgentInfo>,
    pub task_id: Option<Name>,
    /// Mostly one: held inline, with no allocation of its own.
    pub ips: SmallVec<[IpAddr; 1]>,
    pub spawned: Timestamp,
    /// Lifetime announced by the spawn record, which wins over the profile's.
    pub lifetime_minutes: Option<u64>,
    /// Extensions granted by `agent.policy`.
    pub extended_minutes: u64,
    pub terminated: OptionalTimestamp,
}

/// [`Agent`] as a save holds it: its names inline, as they were before the
/// agent shared them (saves keep their layout).
#[derive(serde::Deserialize)]
struct SavedAgent {
    id: Name,
    agent_type: Name,
    deployment: Option<Name>,
    profile: Name,
    task_id: Option<String>,
    #[serde(with = "crate::net::addr::list")]
    ips: Vec<IpAddr>,
    spawned: Timestamp,
    lifetime_minutes: Option<u64>,
    extended_minutes: u64,
    terminated: Option<Timestamp>,
}

/// Writes `SavedAgent`'s fields in its order, borrowing them.
impl serde::Serialize for Agent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Addrs<'a>(&'a [IpAddr]);
        impl serde::Serialize for Addrs<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::net::addr::list::serialize(self.0, s)
            }
        }
        let info = &*self.info;
        let mut saved = s.serialize_struct("SavedAgent", 10)?;
        saved.serialize_field("id", &info.id)?;
        saved.serialize_field("agent_type", &info.agent_type)?;
        saved.serialize_field("deployment", &info.deployment)?;
        saved.serialize_field("profile", &info.profile)?;
        saved.serialize_field("task_id", &self.task_id.as_deref())?;
        saved.serialize_field("ips", &Addrs(&self.ips))?;
        saved.serialize_field("spawned", &self.spawned)?;
        saved.serialize_field("lifetime_minutes", &self.lifetime_minutes)?;
        saved.serialize_field("extended_minutes", &self.extended_minutes)?;
        saved.serialize_field("terminated", &self.terminated)?;
        saved.end()
    }
}

impl From<SavedAgent> for Agent {
    fn from(a: SavedAgent) -> Agent {
        Agent {
            info: Rc::new(AgentInfo::new(a.id, a.agent_type, a.deployment, a.profile)),
            task_id: a.task_id.map(Name::from),
            ips: a.ips.into_iter().collect(),
            spawned: a.spawned,
            lifetime_minutes: a.lifetime_minutes,
            extended_minutes: a.extended_minutes,
            terminated: a.terminated.into(),
        }
    }
}

impl Agent {
    pub fn is_live_at(&self, t: Timestamp) -> bool {
        self.terminated.get().is_none_or(|end| t < end)
    }
}

/// The agent a record is attributed to, as the output writes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentInfo {
    pub id: Name,
    pub agent_type: Name,
    pub deployment: Option<Name>,
    /// The profile the agent is judged by (defaults to its type; `agent.policy` may change it).
    pub profile: Name,
    /// The note JSON, made on first use (never saved).
    #[serde(skip)]
    written: Written,
}

impl AgentInfo {
    pub fn new(id: Name, agent_type: Name, deployment: Option<Name>, profile: Name) -> AgentInfo {
        AgentInfo {
            id,
            agent_type,
            deployment,
            profile,
            written: Written::default(),
        }
    }

    /// Its profile as its deployment resolves it in `policy`.
    pub fn profile_in<'p>(&self, policy: &'p Policy) -> Option<&'p Profile> {
        policy.profile(&self.profile, self.deployment.as_deref())
    }

    /// `{"id":…,"type":…,"deployment":…,"profile":…}`, as the note's `agent`:
    /// written on first use and copied after.
    pub fn note_json(&self) -> &[u8] {
        self.written.0.get_or_init(|| {
            let mut json = Vec::with_capacity(96);
            let deployment = self.deployment.as_deref();
            write_agent_json(
                &mut json,
                &self.id,
                &self.agent_type,
                deployment,
                &self.profile,
            );
            json.into()
        })
    }
}

fn write_agent_json(
    out: &mut Vec<u8>,
    id: &str,
    agent_type: &str,
    deployment: Option<&str>,
    profile: &str,
) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":");
    write_str(out, agent_type);
    if let Some(d) = deployment {
        out.extend_from_slice(b",\"deployment\":");
        write_str(out, d);
    }
    out.extend_from_slice(b",\"profile\":");
    write_str(out, profile);
    out.push(b'}');
}

/// An agent's note JSON, written once and copied into every note naming the
/// agent: escaping its four names on each record was 4% of the engine's
/// instructions. A cache of the other fields, so it compares
/// equal whatever it holds; an agent whose profile changes gets a new
/// [`AgentInfo`], and with it a new one.
#[derive(Clone, Default)]
struct Written(OnceCell<Box<[u8]>>);

impl PartialEq for Written {
    fn eq(&self, _: &Written) -> bool {
        true
    }
}

impl fmt::Debug for Written {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Written"
        } else {
            "NotWritten"
        })
    }
}

/// Agent types, deployments and profiles, each text held once however many
/// agents name it (a fleet has a few of each).
const MAX_KIND_NAMES: usize = 1024;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Binding {
    agent_id: Name,
    from: Timestamp,
    until: OptionalTimestamp,
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
    /// Not saved: a restore shares names by itself (see [`crate::name`]).
    #[serde(skip, default = "kind_names")]
    kinds: Interner,
}

fn kind_names() -> Interner {
    Interner::new(MAX_KIND_NAMES)
}

crate::changes::apply_changes_by_field!(Registry {
    agents,
    bindings,
    kinds
});

impl Registry {
    pub fn new(max_agents: usize) -> Registry {
        Registry {
            agents: BoundedMap::new(max_agents),
            // Each agent holds one address or a few; reused addresses share an entry.
            bindings: BoundedMap::new(max_agents.saturating_mul(2)),
            kinds: kind_names(),
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
                .filter(|b| b.until.get().is_none_or(|u| u > s.ts) && b.from <= s.ts)
            {
                b.until = OptionalTimestamp::from(s.ts);
            }
            history.push(Binding {
                agent_id: id.clone(),
                from: s.ts,
                until: OptionalTimestamp::NONE,
            });
            history.sort_by_key(|b| b.from);
            if history.len() > BINDINGS_PER_ADDRESS {
                history.remove(0);
            }
        }
        let info = AgentInfo::new(
            id.clone(),
            self.kinds.get(&s.agent_type),
            s.deployment.as_deref().map(|d| self.kinds.get(d)),
            self.kinds
                .get(s.profile.as_deref().unwrap_or(&s.agent_type)),
        );
        let agent = Agent {
            info: Rc::new(info),
            task_id: s.task_id.as_deref().map(Name::from),
            ips: s.ips.iter().copied().collect(),
            spawned: s.ts,
            lifetime_minutes: s.expected_lifetime_minutes,
            extended_minutes: 0,
            terminated: OptionalTimestamp::NONE,
        };
        self.agents.insert(id, agent);
    }

    pub fn terminate(&mut self, t: &Terminate) -> Update {
        let Some(agent) = self.agents.get_mut(t.agent_id.as_str()) else {
            return Update::UnknownAgent;
        };
        agent.terminated = (agent.terminated.get())
            .map_or(t.ts, |old| old.min(t.ts))
            .into();
        let (id, ips) = (agent.info.id.clone(), agent.ips.clone());
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
            let info = &agent.info;
            agent.info = Rc::new(AgentInfo::new(
                info.id.clone(),
                info.agent_type.clone(),
                info.deployment.clone(),
                self.kinds.get(profile),
            ));
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
                .filter(|b| b.agent_id == *id && b.until.get().is_none_or(|u| u > at))
            {
                b.until = OptionalTimestamp::from(at);
            }
        }
    }

    /// The agent that held `ip` at time `t`, if any.
    pub fn agent_at(&mut self, ip: IpAddr, t: Timestamp) -> Option<&Agent> {
        let Registry {
            agents, bindings, ..
        } = self;
        let binding =
            bindings.peek(&Addr(ip))?.iter().rev().find(|b| {
                b.from.0 - SPAWN_SKEW_NANOS <= t.0 && b.until.get().is_none_or(|u| t < u)
            })?;
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
            .map(|a| a.info.id.to_string())
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
        assert_eq!(&*r.agent("a").unwrap().info.profile, "p2");
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

    #[test]
    fn an_agents_json_is_written_once_and_says_what_its_fields_say() {
        let mut r = Registry::new(16);
        let mut s = spawn(
            "a \"quoted\" \\ id\u{1}",
            "10.20.0.5",
            "2026-11-24T10:00:00Z",
        );
        s.deployment = Some("prod".into());
        r.spawn(&s);
        let id = s.agent_id.as_str();
        let info = r.agent(id).unwrap().info.clone();
        let (first, second) = (info.note_json(), r.agent(id).unwrap().info.note_json());
        let written = String::from_utf8(first.to_vec()).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"id": id, "type": "t", "deployment": "prod", "profile": "t"})
        );
        // One text copied into every note naming the agent.
        assert!(std::ptr::eq(first, second));

        // A new profile is written anew.
        r.change_policy(&PolicyChange {
            ts: ts("2026-11-24T10:05:00Z"),
            agent_id: id.into(),
            profile: Some("reviewer".into()),
            extend_minutes: None,
        });
        let changed = r.agent(id).unwrap().info.note_json();
        let parsed: serde_json::Value = serde_json::from_slice(changed).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"id": id, "type": "t", "deployment": "prod", "profile": "reviewer"})
        );
        // What held the agent's names before (an open incident) keeps them.
        assert_eq!(&*info.profile, "t");
        assert_eq!(info.note_json(), first);
    }

    #[test]
    fn agents_of_one_type_share_its_name() {
        let mut r = Registry::new(16);
        let mut a = spawn("a", "10.20.0.5", "2026-11-24T10:00:00Z");
        a.deployment = Some("prod".into());
        let mut b = spawn("b", "10.20.0.6", "2026-11-24T10:00:00Z");
        b.deployment = Some("prod".into());
        r.spawn(&a);
        r.spawn(&b);
        let text = |r: &mut Registry, id: &str| {
            let agent = r.agent(id).unwrap();
            [
                agent.info.agent_type.as_ptr(),
                agent.info.deployment.as_deref().unwrap().as_ptr(),
                agent.info.profile.as_ptr(),
            ]
        };
        assert_eq!(text(&mut r, "a"), text(&mut r, "b"));
        // The type and the profile it defaults to are one text too.
        assert_eq!(text(&mut r, "a")[0], text(&mut r, "a")[2]);
    }
}
