//! The connections an agent made, to hold its heartbeats against: how they
//! are kept in memory (each destination once per agent) and saved (packed).

use super::MAX_CONTACTS;
use crate::record::{Flow, Proto};
use crate::time::{NANOS_PER_SEC, Timestamp};
use std::net::IpAddr;

/// Slices of one connection are exported back to back; this much gap still joins them.
pub(super) const SLICE_GAP_NANOS: i64 = 2 * NANOS_PER_SEC;

/// One connection the agent made, as its flow records showed it: by the
/// flows' own start and end times, to the exporter's precision, so a
/// heartbeat window can be held against exactly the connections inside it.
#[derive(Debug, Clone, Copy, PartialEq)]
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

/// Where a contact went. An agent calls a few services over and over, so each
/// is held once and its contacts name it by number.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Service {
    dst: IpAddr,
    port: u16,
    proto: Proto,
}

/// A [`Contact`] as held: 16 bytes where the whole took 40. Its end is a
/// length from its start, in nanoseconds up to 2.1 s or in whole
/// milliseconds (exporters' precision) up to 24 days; the settled flag is the
/// top bit of the service's number.
#[derive(Debug, Clone, Copy)]
struct Held {
    start: Timestamp,
    /// [`encode_length`]'s encoding; unused once the contacts hold exact ends.
    length: u32,
    /// The service's number, and [`SETTLED`].
    service: u16,
    src_port: u16,
}

/// [`Held::service`]'s flag: a heartbeat window reported the contact.
const SETTLED: u16 = 1 << 15;

// Services are renumbered before they outnumber the contacts twice over.
const _: () = assert!(2 * MAX_CONTACTS + 8 < SETTLED as usize);

/// [`Held::length`]'s flag: the rest counts milliseconds, not nanoseconds.
const LENGTH_IN_MS: u32 = 1 << 31;
const NANOS_PER_MS: i64 = 1_000_000;

/// A contact's length as [`Held`] holds it, if it can exactly.
fn encode_length(start: Timestamp, end: Timestamp) -> Option<u32> {
    let nanos = end.0.checked_sub(start.0)?;
    let max = i64::from(LENGTH_IN_MS);
    if (0..max).contains(&nanos) {
        Some(nanos as u32)
    } else if nanos % NANOS_PER_MS == 0 && (0..max).contains(&(nanos / NANOS_PER_MS)) {
        Some(LENGTH_IN_MS | (nanos / NANOS_PER_MS) as u32)
    } else {
        None
    }
}

impl Held {
    fn service(self) -> u16 {
        self.service & !SETTLED
    }

    fn settled(self) -> bool {
        self.service & SETTLED != 0
    }

    /// The end its length gives (not the exact end list's, when there is one).
    fn end(self) -> Timestamp {
        let nanos = if self.length & LENGTH_IN_MS != 0 {
            i64::from(self.length & !LENGTH_IN_MS) * NANOS_PER_MS
        } else {
            i64::from(self.length)
        };
        Timestamp(self.start.0 + nanos)
    }
}

/// An agent's contacts, oldest first (by start), at most [`MAX_CONTACTS`].
#[derive(Debug, Clone, Default)]
pub struct Contacts {
    /// The services the contacts name; ones no contact names any more are
    /// dropped when they outnumber the contacts.
    services: Vec<Service>,
    held: Vec<Held>,
    /// Every contact's end, in the order of `held`, while one of them is
    /// longer than a [`Held`] holds exactly (a nanosecond-precise exporter's
    /// connection of more than 2.1 s): none otherwise. Boxed: 8 bytes in
    /// every agent's activity rather than a list's 24.
    #[allow(clippy::box_collection)]
    exact_ends: Option<Box<Vec<Timestamp>>>,
}

impl Contacts {
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn get(&self, i: usize) -> Contact {
        let h = self.held[i];
        let service = self.services[usize::from(h.service())];
        Contact {
            dst: service.dst,
            port: service.port,
            proto: service.proto,
            src_port: h.src_port,
            start: h.start,
            end: self.end(i),
            settled: h.settled(),
        }
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Contact> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Marks contact `i` accounted for by a heartbeat window.
    pub fn settle(&mut self, i: usize) {
        self.held[i].service |= SETTLED;
    }

    fn end(&self, i: usize) -> Timestamp {
        match &self.exact_ends {
            Some(ends) => ends[i],
            None => self.held[i].end(),
        }
    }

    /// Holds every contact's end exactly, from now on.
    fn keep_exact_ends(&mut self) {
        if self.exact_ends.is_none() {
            self.exact_ends = Some(Box::new(self.held.iter().map(|h| h.end()).collect()));
        }
    }

    /// The length a [`Held`] holds for this span; when it cannot, the
    /// contacts hold exact ends from now on (and the length is unused).
    fn length_or_exact(&mut self, start: Timestamp, end: Timestamp) -> u32 {
        encode_length(start, end).unwrap_or_else(|| {
            self.keep_exact_ends();
            0
        })
    }

    /// Sets contact `i`'s span.
    fn set_span(&mut self, i: usize, start: Timestamp, end: Timestamp) {
        let length = self.length_or_exact(start, end);
        self.held[i].start = start;
        match &mut self.exact_ends {
            Some(ends) => ends[i] = end,
            None => self.held[i].length = length,
        }
    }

    fn insert(&mut self, i: usize, start: Timestamp, end: Timestamp, service: u16, src_port: u16) {
        let length = self.length_or_exact(start, end);
        self.held.insert(
            i,
            Held {
                start,
                length,
                service,
                src_port,
            },
        );
        if let Some(ends) = &mut self.exact_ends {
            ends.insert(i, end);
        }
    }

    /// Forgets contact `i`; returns it as held and its end.
    fn remove(&mut self, i: usize) -> (Held, Timestamp) {
        let end = self.end(i);
        if let Some(ends) = &mut self.exact_ends {
            ends.remove(i);
        }
        (self.held.remove(i), end)
    }

    /// Remembers a flow's connection; slices of one connection join, whatever
    /// order their records arrive in. Returns the end of a contact forgotten
    /// to stay within [`MAX_CONTACTS`].
    pub fn observe(&mut self, flow: &Flow) -> Option<Timestamp> {
        let end = flow.end.map_or(flow.ts, |e| e.max(flow.ts));
        let wanted = Service {
            dst: flow.dst,
            port: flow.dst_port,
            proto: flow.proto,
        };
        let service = self.services.iter().position(|s| *s == wanted);
        if let Some(service) = service {
            let service = service as u16;
            if self.join(service, flow.src_port, flow.ts, end) {
                return None;
            }
        }
        let mut forgotten = None;
        if self.held.len() >= MAX_CONTACTS {
            // Under pressure (a loop to one destination), a connection joins
            // the latest to the same destination when it is close in time.
            if let Some(i) = (0..self.held.len()).rev().find(|&i| {
                let h = self.held[i];
                service.is_some_and(|s| usize::from(h.service()) == s)
                    && flow.ts.0 <= self.end(i).0 + 60 * NANOS_PER_SEC
                    && h.start.0 <= flow.ts.0
            }) {
                self.set_span(i, self.held[i].start, self.end(i).max(end));
                return None;
            }
            forgotten = Some(self.remove(0).1);
        }
        let service = match service {
            Some(s) => s as u16,
            None => self.add_service(wanted),
        };
        // Mostly in order; a late record is slotted in by its start.
        let at = self
            .held
            .iter()
            .rposition(|h| h.start.0 <= flow.ts.0)
            .map_or(0, |i| i + 1);
        self.insert(at, flow.ts, end, service, flow.src_port);
        forgotten
    }

    /// Joins a slice to the contact of its connection, if it has one.
    fn join(&mut self, service: u16, src_port: u16, start: Timestamp, end: Timestamp) -> bool {
        let touches = |(from, to): (Timestamp, Timestamp), start: Timestamp, end: Timestamp| {
            start.0 <= to.0 + SLICE_GAP_NANOS && end.0 + SLICE_GAP_NANOS >= from.0
        };
        let same = |h: &Held| h.src_port == src_port && h.service() == service;
        let span = |contacts: &Contacts, i: usize| (contacts.held[i].start, contacts.end(i));
        let Some(i) = (0..self.held.len())
            .rev()
            .find(|&i| same(&self.held[i]) && touches(span(self, i), start, end))
        else {
            return false;
        };
        let (from, to) = span(self, i);
        let (from, to) = (from.min(start), to.max(end));
        self.set_span(i, from, to);
        // The slice may bridge two parts that arrived before it.
        let bridged = (0..self.held.len())
            .find(|&j| j != i && same(&self.held[j]) && touches(span(self, j), from, to));
        if let Some(j) = bridged {
            let (other, other_end) = self.remove(j);
            let i = if j < i { i - 1 } else { i };
            self.set_span(i, from.min(other.start), to.max(other_end));
            self.held[i].service |= other.service & SETTLED;
        }
        true
    }

    /// The number of a service not held yet.
    fn add_service(&mut self, service: Service) -> u16 {
        if self.services.len() >= 2 * self.held.len() + 8 {
            self.drop_unused_services();
        }
        self.services.push(service);
        (self.services.len() - 1) as u16
    }

    /// Drops the services no contact names, renumbering the rest.
    fn drop_unused_services(&mut self) {
        let mut used = vec![false; self.services.len()];
        for h in &self.held {
            used[usize::from(h.service())] = true;
        }
        let mut number = vec![0u16; self.services.len()];
        let mut kept = 0u16;
        for (i, n) in number.iter_mut().enumerate() {
            *n = kept;
            kept += u16::from(used[i]);
        }
        let mut i = 0;
        self.services.retain(|_| {
            i += 1;
            used[i - 1]
        });
        for h in &mut self.held {
            h.service = number[usize::from(h.service())] | (h.service & SETTLED);
        }
    }

    /// Keeps the contacts `keep` accepts, in one pass; exact ends are let go
    /// once every contact left fits a `Held` again.
    pub fn retain(&mut self, mut keep: impl FnMut(&Contact) -> bool) {
        let mut kept = 0;
        for i in 0..self.held.len() {
            if keep(&self.get(i)) {
                self.held[kept] = self.held[i];
                if let Some(ends) = &mut self.exact_ends {
                    ends[kept] = ends[i];
                }
                kept += 1;
            }
        }
        self.held.truncate(kept);
        if let Some(ends) = &mut self.exact_ends {
            ends.truncate(kept);
            let lengths: Option<Vec<u32>> = (self.held.iter().zip(ends.iter()))
                .map(|(h, &end)| encode_length(h.start, end))
                .collect();
            if let Some(lengths) = lengths {
                for (h, length) in self.held.iter_mut().zip(lengths) {
                    h.length = length;
                }
                self.exact_ends = None;
            }
        }
        self.drop_unused_services();
    }
}

impl FromIterator<Contact> for Contacts {
    fn from_iter<I: IntoIterator<Item = Contact>>(contacts: I) -> Contacts {
        let mut all = Contacts::default();
        for c in contacts {
            let wanted = Service {
                dst: c.dst,
                port: c.port,
                proto: c.proto,
            };
            let service = match all.services.iter().position(|s| *s == wanted) {
                Some(s) => s as u16,
                None => all.add_service(wanted),
            };
            let service = service | if c.settled { SETTLED } else { 0 };
            all.insert(all.len(), c.start, c.end, service, c.src_port);
        }
        all
    }
}

/// Contacts are most of an active agent's saved state, so they are saved
/// packed rather than as msgpack arrays of fields: per contact a flag byte
/// (IPv6, settled, protocol, units), the address's bytes, the ports as
/// varints, the start as a varint difference from the previous contact's
/// (contacts are kept oldest first, so it is small) and the end as one from
/// the start, each in milliseconds when it is whole milliseconds (exporters'
/// precision) and in nanoseconds otherwise. About 15 bytes a contact instead
/// of about 43.
pub(super) mod packed_contacts {
    use super::{Contact, Contacts, MAX_CONTACTS};
    use crate::record::Proto;
    use crate::rules::activity::packing::{Reader, put_signed, put_varint};
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

    pub fn pack(contacts: impl IntoIterator<Item = Contact>) -> Vec<u8> {
        let mut out = Vec::new();
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

    pub fn serialize<S: Serializer>(contacts: &Contacts, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&pack(contacts.iter()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Contacts, D::Error> {
        // More than the cap is no list clawwatch wrote (and would overflow
        // the 2-byte service numbers if large enough).
        crate::rules::activity::packing::deserialize(d, "packed contacts", |bytes| {
            (unpack(bytes).filter(|contacts| contacts.len() <= MAX_CONTACTS))
                .map(Contacts::from_iter)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::activity::{Activity, outbound};

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
        let packed = packed_contacts::pack(contacts.clone());
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
        let both = packed_contacts::pack(minute_apart.clone()).len();
        let first = packed_contacts::pack(minute_apart[..1].to_vec()).len();
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
        let packed = packed_contacts::pack(again.clone());
        // Flags, number, source port (3), start (3), length (2).
        assert_eq!(packed.len() - both, 10);
        assert_eq!(packed_contacts::unpack(&packed), Some(again.clone()));
        for cut in 1..packed.len() {
            let read = packed_contacts::unpack(&packed[..cut]);
            assert!(read.is_none_or(|r| r.len() < again.len()), "{cut}");
        }
        // A number naming no earlier destination is refused.
        let mut unknown = packed_contacts::pack(again[..1].to_vec());
        unknown.extend([64, 5, 1, 0, 0]);
        assert_eq!(packed_contacts::unpack(&unknown), None);
        // Through the snapshot's encoding, too.
        let a = Activity {
            contacts: contacts.iter().copied().collect(),
            ..Activity::default()
        };
        let back: Activity = rmp_serde::from_slice(&rmp_serde::to_vec(&a).unwrap()).unwrap();
        assert_eq!(back.contacts.iter().collect::<Vec<_>>(), contacts);
        // A saved list past the cap is refused, not held.
        let over: Vec<Contact> = (0..=MAX_CONTACTS as i64)
            .map(|i| contact("93.184.216.34", Proto::Tcp, t + i, t + i, false))
            .collect();
        let at_cap = Activity {
            contacts: over[1..].iter().copied().collect(),
            ..Activity::default()
        };
        let saved = rmp_serde::to_vec(&at_cap).unwrap();
        assert!(rmp_serde::from_slice::<Activity>(&saved).is_ok());
        let past_cap = Activity {
            contacts: over.iter().copied().collect(),
            ..Activity::default()
        };
        let saved = rmp_serde::to_vec(&past_cap).unwrap();
        let refused = rmp_serde::from_slice::<Activity>(&saved).err().unwrap();
        assert!(refused.to_string().contains("packed contacts"), "{refused}");
    }

    /// Contacts as they were held before services were numbered: a plain list.
    #[derive(Default)]
    struct PlainContacts(Vec<Contact>);

    impl PlainContacts {
        fn observe(&mut self, flow: &Flow) -> Option<Timestamp> {
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
            let list = &mut self.0;
            if let Some(i) = (0..list.len())
                .rev()
                .find(|&i| same(&list[i]) && touches(&list[i], flow.ts, end))
            {
                list[i].start = list[i].start.min(flow.ts);
                list[i].end = list[i].end.max(end);
                let (start, end) = (list[i].start, list[i].end);
                if let Some(j) = (0..list.len())
                    .find(|&j| j != i && same(&list[j]) && touches(&list[j], start, end))
                {
                    let other = list.remove(j);
                    let c = &mut list[if j < i { i - 1 } else { i }];
                    c.start = c.start.min(other.start);
                    c.end = c.end.max(other.end);
                    c.settled |= other.settled;
                }
                return None;
            }
            let mut forgotten = None;
            if list.len() >= MAX_CONTACTS {
                if let Some(c) = list.iter_mut().rev().find(|c| {
                    c.dst == flow.dst
                        && c.port == flow.dst_port
                        && c.proto == flow.proto
                        && flow.ts.0 <= c.end.0 + 60 * NANOS_PER_SEC
                        && c.start <= flow.ts
                }) {
                    c.end = c.end.max(end);
                    return None;
                }
                forgotten = Some(list.remove(0).end);
            }
            let at = list
                .iter()
                .rposition(|c| c.start <= flow.ts)
                .map_or(0, |i| i + 1);
            list.insert(
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
            forgotten
        }
    }

    #[test]
    fn a_held_length_gives_back_its_end_exactly_or_is_not_held() {
        let ms = NANOS_PER_MS;
        let max = i64::from(LENGTH_IN_MS);
        let mut lengths = vec![0, 1, max - 1, max, max + 1, 3 * ms, (max - 1) * ms];
        lengths.extend([max * ms, (max + 1) * ms, max * ms - 1, -1, -ms, i64::MAX]);
        let mut x: u64 = 11;
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let unit = if x.is_multiple_of(3) { ms } else { 1 };
            lengths.push(((x >> (x % 40)) as i64).wrapping_mul(unit));
        }
        let mut held = [0, 0];
        for start in [0, 1_795_528_800 * NANOS_PER_SEC + 7, i64::MIN, i64::MAX - 5] {
            for &length in &lengths {
                let (start, end) = (Timestamp(start), Timestamp(start.wrapping_add(length)));
                let Some(encoded) = encode_length(start, end) else {
                    continue;
                };
                let h = Held {
                    start,
                    length: encoded,
                    service: 0,
                    src_port: 0,
                };
                assert_eq!(h.end(), end, "{start:?} + {length}");
                held[usize::from(encoded & LENGTH_IN_MS != 0)] += 1;
            }
        }
        assert!(held.iter().all(|&n| n > 100), "{held:?}: in ns and in ms");
        // The lengths a Held cannot hold.
        let at = Timestamp(0);
        for length in [max, max * ms, -1, max + 1] {
            assert_eq!(encode_length(at, Timestamp(length)), None, "{length}");
        }
    }

    /// A slice that bridges two parts of one connection joins them, and a
    /// heartbeat's settling of either part holds for the whole.
    #[test]
    fn a_bridging_slice_joins_two_parts_keeping_their_settling() {
        let at = |secs: i64| Timestamp::from_secs(1_795_528_800 + secs);
        let part = |from, to| {
            let dst = "93.184.216.34".parse().unwrap();
            outbound(at(from), Some(at(to)), dst, (40_000, 443), Proto::Tcp)
        };
        for settled_first in [true, false] {
            let mut contacts = Contacts::default();
            contacts.observe(&part(0, 10));
            contacts.observe(&part(20, 30));
            assert_eq!(contacts.len(), 2, "ten seconds apart: two parts");
            contacts.settle(if settled_first { 0 } else { 1 });
            contacts.observe(&part(9, 21));
            assert_eq!(contacts.len(), 1);
            let whole = contacts.get(0);
            assert_eq!((whole.start, whole.end), (at(0), at(30)));
            assert!(whole.settled, "settled_first: {settled_first}");
        }
    }

    #[test]
    fn numbered_services_keep_the_contacts_a_plain_list_keeps() {
        let mut held = Contacts::default();
        let mut plain = PlainContacts::default();
        let mut x: u64 = 5;
        let t0 = 1_795_528_800i64;
        let mut now = t0;
        let mut most = 0;
        // Flows judged with lengths only, and with exact ends.
        let mut exact_ends_held = [0; 2];
        let (mut was_exact, mut narrowed) = (false, 0);
        for n in 0..30_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // A few services called over and over, now and then a new one
            // (a crawler), slices of long connections, late records.
            now += (x % 7) as i64;
            let dst = if x.is_multiple_of(13) {
                format!("198.51.{}.{}", (x >> 8) % 200, (x >> 16) % 250)
            } else {
                format!("93.184.216.{}", (x >> 8) % 4)
            };
            let late = (x >> 20).is_multiple_of(5) as i64 * ((x >> 24) % 600) as i64;
            // Now and then a phase of a nanosecond-precise exporter: ends
            // off whole milliseconds, so long connections need exact ends.
            let ns = if (n / 2_000) % 3 == 1 && x.is_multiple_of(3) {
                (x >> 44) as i64 % NANOS_PER_SEC
            } else {
                0
            };
            let flow = outbound(
                Timestamp::from_secs(now - late),
                Some(Timestamp(
                    Timestamp::from_secs(now + ((x >> 28) % 90) as i64).0 + ns,
                )),
                dst.parse().unwrap(),
                (
                    40_000 + ((x >> 32) % 400) as u16,
                    if x.is_multiple_of(5) { 80 } else { 443 },
                ),
                if x.is_multiple_of(11) {
                    Proto::Udp
                } else {
                    Proto::Tcp
                },
            );
            assert_eq!(held.observe(&flow), plain.observe(&flow), "flow {n}");
            if x.is_multiple_of(97) {
                let i = (x >> 40) as usize % held.len();
                held.settle(i);
                plain.0[i].settled = true;
            }
            if n % 1_000 == 999 {
                // A heartbeat's deadline forgets what ended long ago.
                let before = Timestamp::from_secs(now - 1_800);
                held.retain(|c| c.end >= before);
                plain.0.retain(|c| c.end >= before);
            }
            assert_eq!(held.len(), plain.0.len(), "flow {n}");
            if let Some(ends) = &held.exact_ends {
                assert_eq!(ends.len(), held.len(), "flow {n}");
            }
            let exact = held.exact_ends.is_some();
            exact_ends_held[usize::from(exact)] += 1;
            narrowed += usize::from(was_exact && !exact);
            was_exact = exact;
            most = most.max(held.len());
            if n % 100 == 0 || n > 29_900 {
                assert!(held.iter().eq(plain.0.iter().copied()), "flow {n}");
            }
            // Services no contact names do not pile up.
            assert!(held.services.len() <= 2 * held.len() + 9, "flow {n}");
        }
        assert_eq!(most, MAX_CONTACTS, "the cap was reached");
        assert!(
            exact_ends_held.iter().all(|&n| n > 3_000) && narrowed >= 3,
            "{exact_ends_held:?}, narrowed {narrowed} times: both ways of holding ends tried, back and forth"
        );
        // A crawler at the cap: every connection to a new address, none
        // forgotten by a deadline. The services stay bounded all the same.
        for n in 0..3_000u32 {
            now += 1;
            let flow = outbound(
                Timestamp::from_secs(now),
                None,
                std::net::Ipv4Addr::from(0xC633_0000 + n).into(),
                (50_000, 443),
                Proto::Tcp,
            );
            assert_eq!(held.observe(&flow), plain.observe(&flow), "crawl {n}");
            assert!(held.services.len() <= 2 * MAX_CONTACTS + 9, "crawl {n}");
        }
        assert!(held.iter().eq(plain.0.iter().copied()));
        assert_eq!(std::mem::size_of::<Held>(), 16);
    }
}
