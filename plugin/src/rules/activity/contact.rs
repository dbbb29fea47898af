//! One connection an agent made, and how its contacts are saved.

use crate::record::Proto;
use crate::time::Timestamp;
use std::net::IpAddr;

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
pub(super) mod packed_contacts {
    use super::Contact;
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
        crate::rules::activity::packing::deserialize(d, "packed contacts", unpack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::activity::Activity;
    use crate::time::NANOS_PER_SEC;

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
}
