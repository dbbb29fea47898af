//! Which side of a conversation a flow record is.
//!
//! NetFlow/IPFIX exporters report each direction of a connection as a record
//! of its own, both minutes late and in either order. An agent's answer from
//! its service port (`agent:8080 → checker:51234`) is not a call the agent
//! made, but judging it by its source port alone would let an agent exfiltrate
//! from port 8080 unseen. So an answer is settled by the peer's connection to
//! that port: seen first, the answer is a reply at once; not seen yet, the
//! answer passes *provisionally* and is judged as the agent's own call later,
//! as a due finding, if no such connection arrives within the lateness
//! allowance. No record is ever held back.
//!
//! What decides that a record's source opened the connection: the exporter
//! saying so (Suricata `flow` and Zeek `conn` records are whole
//! conversations), a SYN this side never acknowledged, or, when an exporter
//! reports both directions, which side's first packet came first: an answer
//! follows its request by a round trip, so an "answer" that starts strictly
//! before the peer's side spoke first and is the agent's own call (both
//! directions are stamped by one exporter's clock). Cumulative TCP flags
//! (`...AP.SF`) are the same on both sides of a completed connection and
//! decide nothing else.

use crate::bounded::BoundedMap;
use crate::changes::LoggedHeap;
use crate::name::Name;
use crate::record::Flow;
use crate::time::Timestamp;
use std::cmp::Reverse;
use std::net::IpAddr;

/// (agent address, agent port, peer address, peer port) of one connection.
pub type ConnKey = (IpAddr, u16, IpAddr, u16);

/// How long after its last record a connection can still be answered on; a
/// later flow on the same four-tuple is a new connection (peers reuse ports).
const CONVERSATION_IDLE_NANOS: i64 = 15 * 60 * crate::time::NANOS_PER_SEC;

/// Whether `agent_port` is the serving side of a conversation with `peer_port`:
/// the profile's `listen` ports when it declares them, else the lower port.
fn serving(agent_port: u16, peer_port: u16, declared: Option<bool>) -> bool {
    declared.unwrap_or(agent_port < peer_port)
}

/// A flow from an agent, seen from the agent's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromAgent {
    /// The agent's own call: judge it.
    Call,
    /// The answer to a connection a peer was seen opening to the agent.
    Reply,
    /// Answer-shaped, but it started before the peer's side: the agent's own
    /// call from its service port, judged now and keyed by the peer.
    ServiceCall,
    /// Answer-shaped, but no connection from the peer seen yet: passes now,
    /// judged as a call if none arrives within the lateness allowance.
    Provisional,
}

/// A flow to an agent, seen from the agent's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToAgent {
    /// A peer connecting to the agent's service.
    Inbound,
    /// The answer to one of the agent's own calls.
    Return,
}

/// An answer-shaped flow waiting for the peer's connection to turn up.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingReply {
    pub agent_id: Name,
    pub flow: Flow,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Conversations {
    /// Connections peers opened to agents' service ports: the first and last
    /// start of the peer's side. Peers reuse their ports, so a connection
    /// answers only while it is recent.
    inbound: BoundedMap<ConnKey, (Timestamp, Timestamp)>,
    /// Provisional answers by connection; `order` says which come due first.
    pending: BoundedMap<ConnKey, PendingReply>,
    /// May hold keys already settled: they are skipped when popped.
    order: LoggedHeap<Reverse<(Timestamp, ConnKey)>>,
    cap: usize,
}

crate::changes::apply_changes_by_field!(Conversations {
    inbound,
    pending,
    order,
    cap
});

impl Conversations {
    pub fn new(cap: usize) -> Conversations {
        Conversations {
            inbound: BoundedMap::new(cap),
            // Never evicted by the map: the cap is enforced in `hold`, which
            // judges the earliest at once rather than losing it.
            pending: BoundedMap::new(usize::MAX),
            order: LoggedHeap::new(),
            cap: cap.max(1),
        }
    }

    /// Classifies a flow to an agent; a peer's connection is remembered, and
    /// settles the provisional answer waiting for it.
    /// `declared`: whether the agent's profile lists the port as a service port.
    pub fn to_agent(&mut self, flow: &Flow, declared: Option<bool>) -> ToAgent {
        if !(flow.opened_by_source() || serving(flow.dst_port, flow.src_port, declared)) {
            return ToAgent::Return;
        }
        let key = (flow.dst, flow.dst_port, flow.src, flow.src_port);
        let (first, last) = match self.inbound.peek(&key) {
            Some(&(first, last)) if flow.ts.0 <= last.0 + CONVERSATION_IDLE_NANOS => {
                (first.min(flow.ts), last.max(flow.ts))
            }
            _ => (flow.ts, flow.ts), // a new connection on a reused port
        };
        self.inbound.insert(key, (first, last));
        // An answer that started before the peer spoke is no answer: it stays
        // waiting, to be judged as the agent's call when it comes due.
        if self.pending.peek(&key).is_some_and(|p| p.flow.ts >= first) {
            self.pending.remove(&key);
        }
        ToAgent::Inbound
    }

    /// Classifies a flow from an agent (before [`Conversations::hold`]).
    pub fn from_agent(&mut self, flow: &Flow, declared: Option<bool>) -> FromAgent {
        let key = (flow.src, flow.src_port, flow.dst, flow.dst_port);
        let recent = self.inbound.get(&key).copied().filter(|(first, last)| {
            flow.ts.0 + CONVERSATION_IDLE_NANOS >= first.0
                && flow.ts.0 <= last.0 + CONVERSATION_IDLE_NANOS
        });
        if let Some((peer_first, _)) = recent {
            if flow.ts >= peer_first {
                FromAgent::Reply
            } else {
                FromAgent::ServiceCall
            }
        } else if flow.opened_by_source() || !serving(flow.src_port, flow.dst_port, declared) {
            FromAgent::Call
        } else {
            FromAgent::Provisional
        }
    }

    /// Keeps a provisional answer until event time passes its start by the
    /// lateness allowance. Past the cap, the earliest waiting answer is
    /// returned to be judged at once: early, never lost.
    pub fn hold(&mut self, agent_id: Name, flow: &Flow) -> Option<PendingReply> {
        let key = (flow.src, flow.src_port, flow.dst, flow.dst_port);
        if self.pending.peek(&key).is_some() {
            return None; // the same answer again (an active-timeout slice)
        }
        let forced = if self.pending.len() >= self.cap {
            self.pop_earliest(None)
        } else {
            None
        };
        self.pending.insert(
            key,
            PendingReply {
                agent_id,
                flow: flow.clone(),
            },
        );
        self.order.push(Reverse((flow.ts, key)));
        forced
    }

    /// The next provisional answer no connection settled by `watermark`.
    pub fn due(&mut self, watermark: Timestamp) -> Option<PendingReply> {
        self.pop_earliest(Some(watermark))
    }

    fn pop_earliest(&mut self, by: Option<Timestamp>) -> Option<PendingReply> {
        while let Some(Reverse((at, key))) = self.order.peek().copied() {
            if by.is_some_and(|w| at > w) {
                return None;
            }
            self.order.pop();
            match self.pending.peek(&key) {
                // A later answer on the same connection re-queued it.
                Some(p) if p.flow.ts != at => continue,
                Some(_) => return self.pending.remove(&key),
                None => continue, // settled by the peer's connection
            }
        }
        None
    }

    /// Meets the running policy's cap after a restore.
    pub fn recap(&mut self, cap: usize) {
        self.inbound.recap(cap);
        self.cap = cap.max(1);
    }

    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    pub fn evictions(&self) -> u64 {
        self.inbound.evictions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Proto;

    fn flow(src: &str, sport: u16, dst: &str, dport: u16, secs: i64) -> Flow {
        Flow {
            ts: Timestamp::from_secs(1_795_530_600 + secs),
            end: None,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: sport,
            dst_port: dport,
            proto: Proto::Tcp,
            bytes: 100,
            packets: 2,
            tcp_flags: None,
            src_initiated: false,
        }
    }

    const AGENT: &str = "10.20.0.15";
    const CHECKER: &str = "10.50.0.5";

    #[test]
    fn an_answer_after_the_peers_connection_is_a_reply() {
        let mut c = Conversations::new(16);
        let request = flow(CHECKER, 51234, AGENT, 8080, 0);
        assert_eq!(c.to_agent(&request, None), ToAgent::Inbound);
        let answer = flow(AGENT, 8080, CHECKER, 51234, 0);
        assert_eq!(c.from_agent(&answer, None), FromAgent::Reply);
    }

    #[test]
    fn an_answer_before_the_peers_connection_waits_and_is_settled_by_it() {
        let mut c = Conversations::new(16);
        let answer = flow(AGENT, 8080, CHECKER, 51234, 0);
        assert_eq!(c.from_agent(&answer, None), FromAgent::Provisional);
        assert!(c.hold("a".into(), &answer).is_none());
        assert_eq!(c.waiting(), 1);
        c.to_agent(&flow(CHECKER, 51234, AGENT, 8080, 0), None);
        assert!(c.due(Timestamp::from_secs(2_000_000_000)).is_none());
        assert_eq!(c.waiting(), 0);
    }

    #[test]
    fn an_answer_no_peer_connected_for_comes_due() {
        let mut c = Conversations::new(16);
        let exfil = flow(AGENT, 8080, "198.51.100.200", 40123, 0);
        assert_eq!(c.from_agent(&exfil, None), FromAgent::Provisional);
        c.hold("a".into(), &exfil);
        assert!(
            c.due(Timestamp::from_secs(1_795_530_599)).is_none(),
            "not yet"
        );
        let due = c.due(exfil.ts).expect("comes due at its start");
        assert_eq!(due.flow, exfil);
        // The agent's connection to another port of that peer settles nothing.
        c.hold("a".into(), &flow(AGENT, 8080, CHECKER, 51234, 1));
        c.to_agent(&flow(CHECKER, 51235, AGENT, 8080, 1), None);
        assert!(c.due(Timestamp::from_secs(2_000_000_000)).is_some());
    }

    #[test]
    fn an_answer_that_started_before_the_peer_spoke_is_a_call() {
        // Both directions of a connection the agent opened from port 8080.
        let mut out = flow(AGENT, 8080, "198.51.100.200", 40123, 0);
        out.ts = Timestamp(out.ts.0 + 1_000_000); // +1 ms
        let mut back = flow("198.51.100.200", 40123, AGENT, 8080, 0);
        back.ts = Timestamp(back.ts.0 + 31_000_000); // a round trip later
        let mut c = Conversations::new(16);
        assert_eq!(c.from_agent(&out, None), FromAgent::Provisional);
        c.hold("a".into(), &out);
        c.to_agent(&back, None);
        assert!(
            c.due(out.ts).is_some(),
            "not settled by the later peer side"
        );
        // The other order of arrival.
        let mut c = Conversations::new(16);
        c.to_agent(&back, None);
        assert_eq!(c.from_agent(&out, None), FromAgent::ServiceCall);
        // A real answer starts with or after the request (same millisecond here).
        let mut c = Conversations::new(16);
        let request = flow(CHECKER, 51234, AGENT, 8080, 0);
        c.to_agent(&request, None);
        assert_eq!(
            c.from_agent(&flow(AGENT, 8080, CHECKER, 51234, 0), None),
            FromAgent::Reply
        );
    }

    #[test]
    fn a_port_the_peer_used_hours_ago_answers_nothing_now() {
        let mut c = Conversations::new(16);
        c.to_agent(&flow("198.51.100.200", 40123, AGENT, 8080, 0), None);
        let later = flow(AGENT, 8080, "198.51.100.200", 40123, 2 * 86_400);
        assert_eq!(c.from_agent(&later, None), FromAgent::Provisional);
    }

    #[test]
    fn the_records_word_or_a_lone_syn_makes_it_a_call_whatever_the_ports() {
        let mut c = Conversations::new(16);
        let mut syn_only = flow(AGENT, 8080, "198.51.100.200", 40123, 0);
        syn_only.tcp_flags = Some(0x02);
        assert_eq!(c.from_agent(&syn_only, None), FromAgent::Call);
        let mut completed = syn_only.clone();
        completed.tcp_flags = Some(0x1b); // ...AP.SF: both sides look alike
        assert_eq!(c.from_agent(&completed, None), FromAgent::Provisional);
        let mut zeek = completed.clone();
        zeek.src_initiated = true;
        assert_eq!(c.from_agent(&zeek, None), FromAgent::Call);
    }

    #[test]
    fn declared_service_ports_decide_over_port_order() {
        let mut c = Conversations::new(16);
        // Not a declared service port: the agent's own call, judged now.
        let f = flow(AGENT, 8080, "198.51.100.200", 40123, 0);
        assert_eq!(c.from_agent(&f, Some(false)), FromAgent::Call);
        // A declared high service port answering a lower peer port.
        let g = flow(AGENT, 40000, CHECKER, 1024, 0);
        assert_eq!(c.from_agent(&g, Some(true)), FromAgent::Provisional);
        // An ordinary call from an ephemeral port.
        let h = flow(AGENT, 51000, "93.184.216.34", 443, 0);
        assert_eq!(c.from_agent(&h, None), FromAgent::Call);
    }

    #[test]
    fn past_the_cap_the_earliest_answer_is_judged_early_not_lost() {
        let mut c = Conversations::new(2);
        c.hold("a".into(), &flow(AGENT, 8080, CHECKER, 50001, 0));
        c.hold("a".into(), &flow(AGENT, 8080, CHECKER, 50002, 1));
        let forced = c
            .hold("a".into(), &flow(AGENT, 8080, CHECKER, 50003, 2))
            .expect("the earliest is forced out");
        assert_eq!(forced.flow.dst_port, 50001);
        assert_eq!(c.waiting(), 2);
    }
}
