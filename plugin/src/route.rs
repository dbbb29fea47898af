//! Where a record goes when clawwatch is scaled out over a partitioned log:
//! what `clawwatch route` keys it by.
//!
//! All state is per agent (DESIGN §8), and an agent is found by the address
//! its traffic comes from, so the data plane (flows, DNS, proxy calls) is
//! keyed by the agent-side address: every record of one agent's traffic
//! reaches the same instance, in order. The control plane (spawns,
//! terminations, plans, policy changes, approvals, heartbeats) is small and
//! read by every instance, so each knows every agent; it is keyed by agent id
//! only to keep one agent's lifecycle in order.

use crate::policy::Policy;
use crate::record::fields::Fields;
use crate::record::{CallingAgent, Event, InputFormat, Recognized, recognize_text, recognize_with};
use std::net::IpAddr;

/// Which plane a record belongs to, and its key there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Traffic, keyed by the address inside `agent_subnets` that it comes
    /// from or goes to; `None`: neither end is (or the record is unreadable,
    /// passed on to be tagged), so any instance may judge it.
    Data(Option<IpAddr>),
    /// Lifecycle and intent, keyed by the agent it names.
    Control(Option<String>),
}

/// Routes one record (one line, without its `\n`); `hint` names the format
/// when the record's shape does not say.
pub fn route(record: &[u8], policy: &Policy, hint: Option<InputFormat>) -> Route {
    let Ok(text) = std::str::from_utf8(record.trim_ascii()) else {
        return Route::Data(None);
    };
    let recognized = match Fields::parse(text) {
        Ok(fields) => recognize_with(&fields, &policy.inputs, hint),
        Err(_) => match recognize_text(text, &policy.inputs, None) {
            Some(recognized) => recognized,
            None => return Route::Data(None),
        },
    };
    let Recognized::Event(event) = recognized else {
        return Route::Data(None);
    };
    plane_of(&event, policy)
}

/// Which plane a decoded event belongs to, and its key there.
pub fn plane_of(event: &Event, policy: &Policy) -> Route {
    let agent_side = |ip: IpAddr| policy.monitor.in_agent_subnet(ip).then_some(ip);
    let control = |id: &str| Route::Control(Some(id.to_string()));
    match event {
        // The caller's end first: between two agents, the flow is the caller's call.
        Event::Flow(flow) => Route::Data(agent_side(flow.src).or_else(|| agent_side(flow.dst))),
        Event::Dns(query) => Route::Data(agent_side(query.client)),
        Event::Proxied(call) => match &call.agent {
            CallingAgent::Address(ip) => Route::Data(agent_side(*ip)),
            // Known by id alone: every instance must see it to find the agent.
            CallingAgent::Id(id) => control(id),
        },
        Event::Spawn(s) => control(&s.agent_id),
        Event::Terminate(t) => control(&t.agent_id),
        Event::PolicyChange(p) => control(&p.agent_id),
        Event::Heartbeat(h) => control(&h.agent_id),
        Event::Plan(p) => control(&p.agent_id),
        Event::Grant(g) => control(&g.agent_id),
        Event::Intent(i) => control(&i.agent_id),
        Event::Liveness(l) => control(&l.agent_id),
        Event::Seen(s) => control(&s.spawn.agent_id),
        Event::Telemetry(line) => Route::Control(line.agent.as_ref().map(|s| s.agent_id.clone())),
    }
}

/// Kafka's default partitioner (Java clients, Kafka Streams, librdkafka's
/// `murmur2_random`): the partition a keyed record is produced to. An
/// instance computes an agent's partition the same way, so it knows which
/// records are its own to write.
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) as u32 % partitions.max(1)
}

/// MurmurHash2 as Kafka's `Utils.murmur2` computes it (seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// One partition of a partitioned log, as an engine judging only it sees
/// it: the records keyed to it are its own to write, and so are the
/// findings about agents and addresses whose key falls in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: u32,
    pub count: u32,
}

impl Partition {
    /// The partition an address's traffic is keyed to (as `clawwatch route` keys it).
    pub fn of_address(&self, ip: IpAddr) -> u32 {
        partition_of(ip.to_string().as_bytes(), self.count)
    }

    pub fn of_key(&self, key: &str) -> u32 {
        partition_of(key.as_bytes(), self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = include_str!("../../testdata/policy.toml");

    fn route_of(line: &str) -> Route {
        route(line.as_bytes(), &Policy::from_toml(POLICY).unwrap(), None)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn traffic_is_keyed_by_its_agent_side_address_whichever_end_that_is() {
        let flow = |src: &str, dst: &str| {
            format!(
                r#"{{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"{src}","src_port":40001,"dst_ip":"{dst}","dst_port":443,"proto":"TCP","bytes":1000}}"#
            )
        };
        assert_eq!(
            route_of(&flow("10.20.0.15", "93.184.216.34")),
            Route::Data(ip("10.20.0.15"))
        );
        // Reported the other way round (the answer, or an exporter's order).
        assert_eq!(
            route_of(&flow("93.184.216.34", "10.20.0.15")),
            Route::Data(ip("10.20.0.15"))
        );
        // Between two agents: the caller's.
        assert_eq!(
            route_of(&flow("10.20.0.15", "10.20.0.16")),
            Route::Data(ip("10.20.0.15"))
        );
        // No agent end: any instance.
        assert_eq!(
            route_of(&flow("192.0.2.1", "93.184.216.34")),
            Route::Data(None)
        );
        let dns = r#"{"type":"dns","ts":"2026-11-24T14:30:05Z","client_ip":"10.20.0.15","resolver_ip":"10.0.0.53","qname":"api.internal.example.net","answers":[]}"#;
        assert_eq!(route_of(dns), Route::Data(ip("10.20.0.15")));
    }

    #[test]
    fn lifecycle_is_control_keyed_by_agent_and_damage_still_has_a_route() {
        let spawn = r#"{"type":"agent.spawn","ts":"2026-11-24T14:30:00Z","agent_id":"0x8a3f","agent_type":"data_collector_v1","ip":"10.20.0.15"}"#;
        assert_eq!(route_of(spawn), Route::Control(Some("0x8a3f".into())));
        let heartbeat = r#"{"type":"agent.heartbeat","ts":"2026-11-24T14:45:00Z","agent_id":"0x8a3f","window_start":"2026-11-24T14:30:00Z","window_end":"2026-11-24T14:45:00Z","connections":[]}"#;
        assert_eq!(route_of(heartbeat), Route::Control(Some("0x8a3f".into())));
        for damaged in [
            "",
            "not json",
            "{\"type\":\"flow\",\"src_ip\":12}",
            "\u{fffd}",
        ] {
            assert_eq!(route_of(damaged), Route::Data(None), "{damaged:?}");
        }
        assert_eq!(
            route(b"\xff\xfe", &Policy::from_toml(POLICY).unwrap(), None),
            Route::Data(None)
        );
    }

    /// Kafka's own test vectors (`UtilsTest`) and librdkafka's: a key lands
    /// in the partition every Kafka client puts it in.
    #[test]
    fn murmur2_is_kafkas() {
        for (key, hash) in [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
            ("kafka", 0xd067cf64_u32 as i32),
        ] {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key}");
        }
        assert_eq!(
            partition_of(b"foobar", 12),
            (-790332482_i32 & 0x7fff_ffff) as u32 % 12
        );
    }

    /// Every record of the bundled scenario has a route, and each agent's
    /// traffic goes under one key: the address its spawn announced.
    #[test]
    fn the_scenario_routes_each_agents_traffic_under_its_own_address() {
        let policy = Policy::from_toml(POLICY).unwrap();
        let scenario = include_bytes!("../../testdata/scenario/records.ndjson");
        let (mut data, mut control, mut unkeyed) = (0, 0, 0);
        for line in scenario.split(|b| *b == b'\n') {
            match route(line, &policy, None) {
                Route::Data(Some(ip)) => {
                    assert!(policy.monitor.in_agent_subnet(ip));
                    data += 1;
                }
                Route::Data(None) => unkeyed += 1,
                Route::Control(_) => control += 1,
            }
        }
        assert!(
            data > 100 && control > 10 && unkeyed > 0,
            "{data} {control} {unkeyed}"
        );
    }
}
