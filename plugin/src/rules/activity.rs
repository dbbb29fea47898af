//! What each agent has been doing lately, in bounded space: its last hour of
//! volume, the connections it made (to hold against its heartbeats), its
//! declared plan, its approval grants and heartbeat state.
//!
//! Per-agent cost: about 1 KiB for the volume hour, the connections of the
//! last heartbeat window or two (at most [`MAX_CONTACTS`] × 56 B), up to
//! [`MAX_GRANTS`] grants and one plan of at most 64 actions.

use crate::record::{Grant, Heartbeat, PlannedAction, Proto};
use crate::time::{NANOS_PER_SEC, Timestamp};
use std::net::IpAddr;

/// Connections remembered per agent for heartbeat comparison.
pub const MAX_CONTACTS: usize = 256;
/// How long a connection is remembered when no heartbeat asks for it (a
/// heartbeat window plus the lateness allowance must fit).
pub const CONTACT_HISTORY_SECS: i64 = 128 * 60;
/// Live grants kept per agent (the oldest go first).
pub const MAX_GRANTS: usize = 32;
/// Heartbeats waiting for their window's flows to arrive.
pub const MAX_PENDING_HEARTBEATS: usize = 8;

fn minute_of(t: Timestamp) -> i64 {
    t.0.div_euclid(60 * NANOS_PER_SEC)
}

/// Connections and bytes per minute over the last hour of event time.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(from = "SavedVolumeHour", into = "SavedVolumeHour")]
pub struct VolumeHour {
    head_minute: Option<i64>,
    minutes: Minutes,
    /// The minutes' sums, kept as they change: every flow asks for them.
    totals: HourTotals,
}

/// What a [`VolumeHour`] saves: its totals are derived, and its minutes are
/// packed (a bitmap of the minutes with traffic, then their counts as
/// varints): 720 bytes in memory, typically well under 200 saved.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SavedVolumeHour {
    head_minute: Option<i64>,
    #[serde(with = "packed_minutes")]
    minutes: Minutes,
}

#[derive(Debug, Clone, PartialEq)]
struct Minutes {
    connections: [u32; 60],
    bytes: [u64; 60],
}

mod packed_minutes {
    use super::Minutes;
    use super::packing::{Reader, put_varint};
    use serde::{Deserializer, Serializer};

    pub fn pack(m: &Minutes) -> Vec<u8> {
        let with_traffic = (0..60).filter(|&i| m.connections[i] != 0 || m.bytes[i] != 0);
        let bitmap = with_traffic.clone().fold(0u64, |map, i| map | 1 << i);
        let mut out = bitmap.to_le_bytes().to_vec();
        for i in with_traffic {
            put_varint(&mut out, u64::from(m.connections[i]));
            put_varint(&mut out, m.bytes[i]);
        }
        out
    }

    pub fn unpack(bytes: &[u8]) -> Option<Minutes> {
        let mut r = Reader(bytes);
        let bitmap = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        if bitmap >> 60 != 0 {
            return None;
        }
        let mut m = Minutes {
            connections: [0; 60],
            bytes: [0; 60],
        };
        for i in (0..60).filter(|i| bitmap & 1 << i != 0) {
            m.connections[i] = u32::try_from(r.varint()?).ok()?;
            m.bytes[i] = r.varint()?;
        }
        r.0.is_empty().then_some(m)
    }

    pub fn serialize<S: Serializer>(m: &Minutes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&pack(m))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Minutes, D::Error> {
        super::packing::deserialize(d, "packed minutes", unpack)
    }
}

/// Varints and byte strings for the packed parts of an agent's activity.
mod packing {
    use serde::Deserializer;
    use serde::de::{Error, Visitor};

    pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn put_signed(out: &mut Vec<u8>, v: i64) {
        put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
    }

    /// Reads packed bytes front to back; `None` when they run out or are malformed.
    pub struct Reader<'a>(pub &'a [u8]);

    impl<'a> Reader<'a> {
        pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
            self.0 = rest;
            Some(head)
        }

        pub fn byte(&mut self) -> Option<u8> {
            self.take(1)?.first().copied()
        }

        pub fn varint(&mut self) -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let b = self.byte()?;
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        }

        pub fn signed(&mut self) -> Option<i64> {
            let v = self.varint()?;
            Some((v >> 1) as i64 ^ -((v & 1) as i64))
        }
    }

    /// Reads a byte string with `unpack`, naming `what` when it does not read.
    pub fn deserialize<'de, D: Deserializer<'de>, T>(
        d: D,
        what: &'static str,
        unpack: fn(&[u8]) -> Option<T>,
    ) -> Result<T, D::Error> {
        struct Packed<T> {
            what: &'static str,
            unpack: fn(&[u8]) -> Option<T>,
        }
        impl<T> Visitor<'_> for Packed<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(self.what)
            }
            fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<T, E> {
                (self.unpack)(bytes)
                    .ok_or_else(|| E::custom(format!("{} cut short or malformed", self.what)))
            }
        }
        d.deserialize_bytes(Packed { what, unpack })
    }
}

impl From<SavedVolumeHour> for VolumeHour {
    fn from(saved: SavedVolumeHour) -> VolumeHour {
        let minutes = saved.minutes;
        let totals = HourTotals {
            connections: minutes.connections.iter().map(|&c| u64::from(c)).sum(),
            bytes: minutes
                .bytes
                .iter()
                .fold(0u64, |sum, &b| sum.wrapping_add(b)),
        };
        VolumeHour {
            head_minute: saved.head_minute,
            minutes,
            totals,
        }
    }
}

impl From<VolumeHour> for SavedVolumeHour {
    fn from(hour: VolumeHour) -> SavedVolumeHour {
        SavedVolumeHour {
            head_minute: hour.head_minute,
            minutes: hour.minutes,
        }
    }
}

/// Totals of one complete hour, for baselines to learn from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourTotals {
    pub connections: u64,
    pub bytes: u64,
}

impl Default for VolumeHour {
    fn default() -> Self {
        VolumeHour::from(SavedVolumeHour {
            head_minute: None,
            minutes: Minutes {
                connections: [0; 60],
                bytes: [0; 60],
            },
        })
    }
}

impl VolumeHour {
    /// Adds one connection; returns the hour's totals so far and, when this
    /// moved into a new clock hour, the totals of the hour just completed.
    pub fn add(&mut self, t: Timestamp, bytes: u64) -> (HourTotals, Option<HourTotals>) {
        let m = minute_of(t);
        let mut completed = None;
        match self.head_minute {
            Some(head) if m > head => {
                if m.div_euclid(60) != head.div_euclid(60) {
                    completed = Some(self.totals);
                }
                for step in (head + 1)..=m.min(head + 60) {
                    self.clear_minute(step.rem_euclid(60) as usize);
                }
                self.head_minute = Some(m);
            }
            // Older than an hour: outside every window that could still matter.
            Some(head) if m <= head - 60 => return (self.totals, None),
            Some(_) => {}
            None => self.head_minute = Some(m),
        }
        let i = m.rem_euclid(60) as usize;
        let connections = self.minutes.connections[i].saturating_add(1);
        let minute_bytes = self.minutes.bytes[i].saturating_add(bytes);
        self.totals.connections += u64::from(connections - self.minutes.connections[i]);
        self.totals.bytes = (self.totals.bytes).wrapping_add(minute_bytes - self.minutes.bytes[i]);
        self.minutes.connections[i] = connections;
        self.minutes.bytes[i] = minute_bytes;
        (self.totals, completed)
    }

    fn clear_minute(&mut self, i: usize) {
        self.totals.connections -= u64::from(self.minutes.connections[i]);
        self.totals.bytes = self.totals.bytes.wrapping_sub(self.minutes.bytes[i]);
        self.minutes.connections[i] = 0;
        self.minutes.bytes[i] = 0;
    }

    pub fn totals(&self) -> HourTotals {
        self.totals
    }
}

/// One connection the agent made, as its flow records showed it: by the
/// flows' own start and end times, to the exporter's precision, so a
/// heartbeat window can be held against exactly the connections inside it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    pub dst: IpAddr,
    pub port: u16,
    pub proto: Proto,
    /// With the destination, tells one connection's active-timeout slices
    /// (separate flow records) apart from other connections.
    pub src_port: u16,
    pub start: Timestamp,
    pub end: Timestamp,
    /// A heartbeat window reported it (or judged it hidden): done with.
    pub settled: bool,
}

/// Contacts are most of an active agent's saved state, so they are saved
/// packed rather than as msgpack arrays of fields: per contact a flag byte
/// (IPv6, settled, protocol, units), the address's bytes, the ports as
/// varints, the start as a varint difference from the previous contact's
/// (contacts are kept oldest first, so it is small) and the end as one from
/// the start, each in milliseconds when it is whole milliseconds (exporters'
/// precision) and in nanoseconds otherwise. About 15 bytes a contact instead
/// of about 43.
mod packed_contacts {
    use super::Contact;
    use super::packing::{Reader, put_signed, put_varint};
    use crate::record::Proto;
    use crate::time::Timestamp;
    use rustc_hash::FxHashMap;
    use serde::{Deserializer, Serializer};
    use std::collections::hash_map::Entry;
    use std::net::IpAddr;

    const V6: u8 = 1;
    const SETTLED: u8 = 2;
    const PROTO_SHIFT: u8 = 2;
    /// Protocols by [`Proto::code`]; `Other`'s number follows in a byte.
    const OTHER: u8 = 3;
    const PROTO_MASK: u8 = 3;
    const START_IN_MS: u8 = 16;
    const LENGTH_IN_MS: u8 = 32;
    /// The destination (protocol, address, port) is an earlier contact's:
    /// its number among the list's distinct destinations follows instead.
    /// An agent calls a few services over and over.
    const SEEN_DESTINATION: u8 = 64;
    const NANOS_PER_MS: i64 = 1_000_000;

    /// `v` in milliseconds if it is whole ones, with the flag saying so.
    fn in_ms(v: i64, flag: u8) -> (i64, u8) {
        if v % NANOS_PER_MS == 0 {
            (v / NANOS_PER_MS, flag)
        } else {
            (v, 0)
        }
    }

    pub fn pack(contacts: &[Contact]) -> Vec<u8> {
        let mut out = Vec::with_capacity(contacts.len() * 20);
        let mut previous_start = 0i64;
        let mut destinations: FxHashMap<(IpAddr, u16, Proto), u64> = FxHashMap::default();
        for c in contacts {
            let next = destinations.len() as u64;
            let seen = match destinations.entry((c.dst, c.port, c.proto)) {
                Entry::Occupied(number) => Some(*number.get()),
                Entry::Vacant(slot) => {
                    slot.insert(next);
                    None
                }
            };
            let (proto, other) = match c.proto {
                Proto::Other(n) => (OTHER, Some(n)),
                known => (known.code() as u8, None),
            };
            let v6 = matches!(c.dst, IpAddr::V6(_));
            let (start, start_unit) = in_ms(c.start.0.wrapping_sub(previous_start), START_IN_MS);
            let (length, length_unit) = in_ms(c.end.0.wrapping_sub(c.start.0), LENGTH_IN_MS);
            out.push(
                (u8::from(v6) * V6)
                    | (u8::from(c.settled) * SETTLED)
                    | (proto << PROTO_SHIFT)
                    | start_unit
                    | length_unit
                    | (u8::from(seen.is_some()) * SEEN_DESTINATION),
            );
            if let Some(number) = seen {
                put_varint(&mut out, number);
            } else {
                out.extend(other);
                match c.dst {
                    IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
                    IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
                }
                put_varint(&mut out, u64::from(c.port));
            }
            put_varint(&mut out, u64::from(c.src_port));
            put_signed(&mut out, start);
            put_signed(&mut out, length);
            previous_start = c.start.0;
        }
        out
    }

    /// Reads what [`pack`] wrote; `None` if it is cut short or malformed.
    pub fn unpack(bytes: &[u8]) -> Option<Vec<Contact>> {
        let mut r = Reader(bytes);
        let mut contacts = Vec::new();
        let mut previous_start = 0i64;
        let mut destinations: Vec<(IpAddr, u16, Proto)> = Vec::new();
        while !r.0.is_empty() {
            let flags = r.byte()?;
            let (dst, port, proto) = if flags & SEEN_DESTINATION != 0 {
                *destinations.get(usize::try_from(r.varint()?).ok()?)?
            } else {
                let proto = match flags >> PROTO_SHIFT & PROTO_MASK {
                    OTHER => Proto::Other(r.byte()?),
                    known => Proto::from_code(known.into())?,
                };
                let dst =
                    crate::net::addr::from_octets(r.take(if flags & V6 != 0 { 16 } else { 4 })?)?;
                let port = u16::try_from(r.varint()?).ok()?;
                destinations.push((dst, port, proto));
                (dst, port, proto)
            };
            let src_port = u16::try_from(r.varint()?).ok()?;
            let unit = |flag: u8| if flags & flag != 0 { NANOS_PER_MS } else { 1 };
            let start = previous_start.wrapping_add(r.signed()?.wrapping_mul(unit(START_IN_MS)));
            let end = start.wrapping_add(r.signed()?.wrapping_mul(unit(LENGTH_IN_MS)));
            previous_start = start;
            contacts.push(Contact {
                dst,
                port,
                proto,
                src_port,
                start: Timestamp(start),
                end: Timestamp(end),
                settled: flags & SETTLED != 0,
            });
        }
        Some(contacts)
    }

    pub fn serialize<S: Serializer>(contacts: &[Contact], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&pack(contacts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Contact>, D::Error> {
        super::packing::deserialize(d, "packed contacts", unpack)
    }
}

/// Slices of one connection are exported back to back; this much gap still joins them.
const SLICE_GAP_NANOS: i64 = 2 * NANOS_PER_SEC;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Activity {
    pub volume: VolumeHour,
    /// Connections made, oldest first, for heartbeat windows to be held against.
    #[serde(with = "packed_contacts")]
    pub contacts: Vec<Contact>,
    /// The contacts' source ports, index for index: finding a flow's own
    /// connection reads these 2-byte ports, not every 56-byte contact. Not
    /// saved; rebuilt when out of step with `contacts` (after a restore).
    #[serde(skip)]
    contact_ports: Vec<u16>,
    /// Connections were forgotten to stay within the cap up to this time: a
    /// heartbeat window overlapping it cannot be checked for hidden traffic.
    pub contacts_incomplete_until: Option<Timestamp>,
    /// The last heartbeat window judged, for connections on its boundary.
    pub last_window: Option<Heartbeat>,
    /// When the agent last ran away in a retry loop (`rate.runaway`): the
    /// hour's connection volume is that loop, not a second incident.
    pub runaway_at: Option<Timestamp>,
    /// When the hour's volume, over its baseline, is judged (a pending deadline).
    pub volume_due: Option<Timestamp>,
    /// A call off its schedule, held until its minute is complete: a retry
    /// loop to a scheduled destination is `rate.runaway`, not a deviation.
    pub held_deviation: Option<(Timestamp, crate::rules::Finding)>,
    /// Random-looking registered domains resolved lately (hash, when), for
    /// `dns.high_entropy`: one odd name is not a generator.
    pub random_domains: Vec<(u64, Timestamp)>,
    pub plan: Option<Vec<PlannedAction>>,
    pub grants: Vec<Grant>,
    pub last_heartbeat_end: Option<Timestamp>,
    /// When the next heartbeat is overdue (the armed `heartbeat.missing` deadline).
    pub heartbeat_overdue: Option<Timestamp>,
    pub pending_heartbeats: Vec<Heartbeat>,
}

impl Activity {
    /// Remembers an outbound connection; slices of one connection join,
    /// whatever order their records arrive in.
    pub fn observe(&mut self, flow: &crate::record::Flow) {
        if self.contact_ports.len() != self.contacts.len() {
            self.contact_ports = self.contacts.iter().map(|c| c.src_port).collect();
        }
        let end = flow.end.map_or(flow.ts, |e| e.max(flow.ts));
        let same = |c: &Contact| {
            c.src_port == flow.src_port
                && c.port == flow.dst_port
                && c.dst == flow.dst
                && c.proto == flow.proto
        };
        let touches = |c: &Contact, start: Timestamp, end: Timestamp| {
            start.0 <= c.end.0 + SLICE_GAP_NANOS && end.0 + SLICE_GAP_NANOS >= c.start.0
        };
        // Candidates first by source port (most contacts differ there).
        fn candidates(ports: &[u16], port: u16) -> impl DoubleEndedIterator<Item = usize> + '_ {
            ports
                .iter()
                .enumerate()
                .filter(move |(_, p)| **p == port)
                .map(|(i, _)| i)
        }
        let own = candidates(&self.contact_ports, flow.src_port)
            .rev()
            .find(|&i| same(&self.contacts[i]) && touches(&self.contacts[i], flow.ts, end));
        if let Some(i) = own {
            let c = &mut self.contacts[i];
            c.start = c.start.min(flow.ts);
            c.end = c.end.max(end);
            let (start, end) = (c.start, c.end);
            // The slice may bridge two parts that arrived before it.
            let bridged = candidates(&self.contact_ports, flow.src_port).find(|&j| {
                j != i && same(&self.contacts[j]) && touches(&self.contacts[j], start, end)
            });
            if let Some(j) = bridged {
                let other = self.remove_contact(j);
                let c = &mut self.contacts[if j < i { i - 1 } else { i }];
                c.start = c.start.min(other.start);
                c.end = c.end.max(other.end);
                c.settled |= other.settled;
            }
            return;
        }
        if self.contacts.len() >= MAX_CONTACTS {
            // Under pressure (a loop to one destination), a connection joins
            // the latest to the same destination when it is close in time.
            if let Some(c) = self.contacts.iter_mut().rev().find(|c| {
                c.dst == flow.dst
                    && c.port == flow.dst_port
                    && c.proto == flow.proto
                    && flow.ts.0 <= c.end.0 + 60 * NANOS_PER_SEC
                    && c.start <= flow.ts
            }) {
                c.end = c.end.max(end);
                return;
            }
            let forgotten = self.remove_contact(0);
            self.contacts_incomplete_until = Some(
                self.contacts_incomplete_until
                    .map_or(forgotten.end, |t| t.max(forgotten.end)),
            );
        }
        // Mostly in order; a late record is slotted in by its start.
        let at = self
            .contacts
            .iter()
            .rposition(|c| c.start <= flow.ts)
            .map_or(0, |i| i + 1);
        self.contacts.insert(
            at,
            Contact {
                dst: flow.dst,
                port: flow.dst_port,
                proto: flow.proto,
                src_port: flow.src_port,
                start: flow.ts,
                end,
                settled: false,
            },
        );
        self.contact_ports.insert(at, flow.src_port);
    }

    fn remove_contact(&mut self, i: usize) -> Contact {
        self.contact_ports.remove(i);
        self.contacts.remove(i)
    }

    /// Forgets connections no heartbeat window can still ask about: ended
    /// before `before`, or settled and ended before the last judged window.
    pub fn forget_contacts_before(&mut self, before: Timestamp) {
        let judged = self.last_window.as_ref().map(|w| w.window_end);
        self.contacts.retain(|c| {
            c.end >= before
                && !(c.settled && judged.is_some_and(|j| c.end.0 + SLICE_GAP_NANOS < j.0))
        });
        self.contact_ports = self.contacts.iter().map(|c| c.src_port).collect();
    }

    /// Keeps a grant, dropping expired ones and, past the cap, the oldest.
    pub fn add_grant(&mut self, grant: Grant) {
        let now = grant.ts;
        self.grants.retain(|g| g.expires.is_none_or(|e| e > now));
        if self.grants.len() >= MAX_GRANTS {
            self.grants.remove(0);
        }
        self.grants.push(grant);
    }

    /// Queues a heartbeat until its window can be judged; false if the queue was full.
    pub fn queue_heartbeat(&mut self, hb: Heartbeat) -> bool {
        let fits = self.pending_heartbeats.len() < MAX_PENDING_HEARTBEATS;
        if !fits {
            self.pending_heartbeats.remove(0);
        }
        self.pending_heartbeats.push(hb);
        fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_contacts_come_back_as_they_were_and_are_small() {
        let contact = |dst: &str, proto, start: i64, end: i64, settled| Contact {
            dst: dst.parse().unwrap(),
            port: 443,
            proto,
            src_port: 50123,
            start: Timestamp(start),
            end: Timestamp(end),
            settled,
        };
        let t = 1_795_528_800 * NANOS_PER_SEC;
        let contacts = vec![
            contact("93.184.216.34", Proto::Tcp, t, t + 1_500_000_000, false),
            // Out of order (a late flow) and far apart: the differences go negative.
            contact("2001:db8::7", Proto::Udp, t - 90 * NANOS_PER_SEC, t, true),
            contact(
                "198.51.100.7",
                Proto::Other(47),
                t + 60 * NANOS_PER_SEC,
                t,
                false,
            ),
            contact("198.51.100.8", Proto::Icmp, i64::MIN, i64::MAX, true),
            // Not whole milliseconds (Zeek's microseconds, a nanosecond clock).
            contact(
                "198.51.100.9",
                Proto::Tcp,
                t + 1_234,
                t + 1_000_001_234,
                false,
            ),
        ];
        let packed = packed_contacts::pack(&contacts);
        assert_eq!(packed_contacts::unpack(&packed), Some(contacts.clone()));
        assert_eq!(packed_contacts::unpack(&[]), Some(Vec::new()));
        // Cut anywhere inside, it is refused, never read as something else.
        for cut in 1..packed.len() {
            let read = packed_contacts::unpack(&packed[..cut]);
            assert!(read.is_none_or(|r| r.len() < contacts.len()), "{cut}");
        }
        // A typical one: an IPv4 destination a minute after the last.
        let minute_apart = vec![
            contact("93.184.216.34", Proto::Tcp, t, t + NANOS_PER_SEC, false),
            contact(
                "93.184.216.35",
                Proto::Tcp,
                t + 60 * NANOS_PER_SEC,
                t + 61 * NANOS_PER_SEC,
                false,
            ),
        ];
        let both = packed_contacts::pack(&minute_apart).len();
        let first = packed_contacts::pack(&minute_apart[..1]).len();
        assert!(both - first <= 16, "{}", both - first);
        // The same service again: its destination is a number, not 7 bytes.
        let mut again = minute_apart.clone();
        again.push(contact(
            "93.184.216.34",
            Proto::Tcp,
            t + 120 * NANOS_PER_SEC,
            t + 121 * NANOS_PER_SEC,
            true,
        ));
        let packed = packed_contacts::pack(&again);
        // Flags, number, source port (3), start (3), length (2).
        assert_eq!(packed.len() - both, 10);
        assert_eq!(packed_contacts::unpack(&packed), Some(again.clone()));
        for cut in 1..packed.len() {
            let read = packed_contacts::unpack(&packed[..cut]);
            assert!(read.is_none_or(|r| r.len() < again.len()), "{cut}");
        }
        // A number naming no earlier destination is refused.
        let mut unknown = packed_contacts::pack(&again[..1]);
        unknown.extend([64, 5, 1, 0, 0]);
        assert_eq!(packed_contacts::unpack(&unknown), None);
        // Through the snapshot's encoding, too.
        let mut a = Activity::default();
        a.contacts = contacts.clone();
        let back: Activity = rmp_serde::from_slice(&rmp_serde::to_vec(&a).unwrap()).unwrap();
        assert_eq!(back.contacts, contacts);
    }

    fn t(minutes: i64) -> Timestamp {
        Timestamp::from_secs(1_795_528_800 + minutes * 60)
    }

    #[test]
    fn volume_hour_totals_kept_as_they_change_equal_a_recount() {
        let mut v = VolumeHour::default();
        let mut x: u64 = 7;
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly forward in time, sometimes back, sometimes a jump of hours.
            let minute = match x % 50 {
                0 => (x >> 8) % 2_000,
                1..=5 => (x >> 8) % 90,
                _ => 60 + (x >> 8) % 30,
            } as i64;
            let bytes = if x % 97 == 0 {
                u64::MAX / 3
            } else {
                x % 10_000
            };
            let (now, _) = v.add(t(minute), bytes);
            let recount = VolumeHour::from(SavedVolumeHour::from(v.clone())).totals();
            assert_eq!(now, recount);
        }
        let back: VolumeHour = rmp_serde::from_slice(&rmp_serde::to_vec(&v).unwrap()).unwrap();
        assert_eq!(back.totals(), v.totals());
        assert_eq!(back.minutes.connections, v.minutes.connections);
    }

    #[test]
    fn packed_minutes_come_back_as_they_were_and_are_small() {
        let mut v = VolumeHour::default();
        // Half the hour with a connection of 1,000 bytes a minute, and extremes.
        for m in (0..60).step_by(2) {
            v.add(t(m), 1_000);
        }
        v.minutes.connections[1] = u32::MAX;
        v.minutes.bytes[3] = u64::MAX;
        let packed = packed_minutes::pack(&v.minutes);
        assert_eq!(packed_minutes::unpack(&packed), Some(v.minutes.clone()));
        // Bitmap, 30 minutes of one connection and 1,000 bytes (1 + 2
        // bytes each), and the two extremes.
        assert_eq!(packed.len(), 8 + 30 * 3 + (5 + 1) + (1 + 10));
        for cut in 0..packed.len() {
            assert_eq!(packed_minutes::unpack(&packed[..cut]), None, "{cut}");
        }
        let mut trailing = packed.clone();
        trailing.push(0);
        assert_eq!(packed_minutes::unpack(&trailing), None);
        let mut past_the_hour = packed_minutes::pack(&VolumeHour::default().minutes);
        past_the_hour[7] = 0x10;
        assert_eq!(packed_minutes::unpack(&past_the_hour), None, "minute 60");
    }

    #[test]
    fn volume_hour_slides_and_reports_completed_hours() {
        let mut v = VolumeHour::default();
        for m in 0..30 {
            v.add(t(m), 100);
        }
        assert_eq!(
            v.totals(),
            HourTotals {
                connections: 30,
                bytes: 3000
            }
        );
        let (now, completed) = v.add(t(70), 1);
        assert_eq!(
            completed,
            Some(HourTotals {
                connections: 30,
                bytes: 3000
            }),
            "moved into the next clock hour"
        );
        assert_eq!(
            now.connections, 20,
            "minutes 11..29 and 70 are within the last hour"
        );
        let (now, _) = v.add(t(5), 1);
        assert_eq!(now.connections, 20, "older than an hour: ignored");
    }

    fn flow(secs: i64, dst: &str, sport: u16, dur: i64) -> crate::record::Flow {
        crate::record::Flow {
            ts: Timestamp::from_secs(1_795_528_800 + secs),
            end: Some(Timestamp::from_secs(1_795_528_800 + secs + dur)),
            src: "10.20.0.15".parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: sport,
            dst_port: 443,
            proto: Proto::Tcp,
            bytes: 1,
            packets: 1,
            tcp_flags: None,
            src_initiated: false,
        }
    }

    #[test]
    fn contacts_keep_their_own_times_and_join_one_connections_slices() {
        let mut a = Activity::default();
        a.observe(&flow(100, "93.184.216.34", 50000, 60));
        a.observe(&flow(160, "93.184.216.34", 50000, 60)); // the next active-timeout slice
        a.observe(&flow(170, "93.184.216.34", 50001, 1)); // another connection
        a.observe(&flow(50, "198.51.100.7", 50002, 1)); // late, earlier
        a.observe(&flow(280, "93.184.216.34", 50000, 60)); // the fourth slice before the third
        a.observe(&flow(220, "93.184.216.34", 50000, 60)); // the third, bridging
        let spans: Vec<(i64, i64, u16)> = a
            .contacts
            .iter()
            .map(|c| {
                (
                    c.start.0 / NANOS_PER_SEC - 1_795_528_800,
                    c.end.0 / NANOS_PER_SEC - 1_795_528_800,
                    c.src_port,
                )
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            spans,
            [(50, 51, 50002), (100, 340, 50000), (170, 171, 50001)]
        );
    }

    #[test]
    fn a_restored_activity_still_joins_a_connections_slices() {
        let mut a = Activity::default();
        a.observe(&flow(100, "93.184.216.34", 50000, 60));
        a.observe(&flow(100, "93.184.216.34", 50001, 60));
        let bytes = rmp_serde::to_vec_named(&a).unwrap();
        let mut restored: Activity = rmp_serde::from_slice(&bytes).unwrap();
        restored.observe(&flow(160, "93.184.216.34", 50000, 60));
        assert_eq!(
            restored.contacts.len(),
            2,
            "the slice joined its connection"
        );
        assert_eq!(
            restored.contacts[0].end,
            Timestamp::from_secs(1_795_528_800 + 220)
        );
    }

    #[test]
    fn a_loop_to_one_destination_fills_no_more_than_the_cap() {
        let mut a = Activity::default();
        for i in 0..2000 {
            a.observe(&flow(
                i / 10,
                "93.184.216.34",
                40000 + (i % 20000) as u16,
                0,
            ));
        }
        assert_eq!(a.contacts.len(), MAX_CONTACTS);
        assert!(a.contacts_incomplete_until.is_none(), "nothing forgotten");
        assert_eq!(
            a.contacts.last().unwrap().end.0 / NANOS_PER_SEC - 1_795_528_800,
            199
        );
    }

    #[test]
    fn contacts_are_capped_and_the_gap_is_remembered() {
        let mut a = Activity::default();
        for i in 0..(MAX_CONTACTS as i64 + 5) {
            a.observe(&flow(
                i * 100,
                &format!("10.0.{}.{}", i / 250, i % 250),
                40000,
                0,
            ));
        }
        assert_eq!(a.contacts.len(), MAX_CONTACTS);
        assert_eq!(
            a.contacts_incomplete_until,
            Some(Timestamp::from_secs(1_795_528_800 + 400))
        );
        a.forget_contacts_before(Timestamp::from_secs(1_795_528_800 + 10_000));
        assert_eq!(a.contacts.len(), MAX_CONTACTS + 5 - 100);
    }
}
