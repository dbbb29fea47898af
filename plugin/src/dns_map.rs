//! What names each client's DNS answers gave to addresses.
//!
//! Policies name hosts (`api.internal.example.net`) while flows carry only
//! addresses, so the answers a client received are remembered per client:
//! bounded (LRU), TTL-aware, with a grace period after the TTL like Cilium's
//! toFQDNs, because connections outlive the answer that opened them.

use crate::bounded::BoundedMap;
use crate::name::{Interner, Name};
use crate::net::Addr;
use crate::record::DnsQuery;
use crate::time::{NANOS_PER_SEC, Timestamp};
use smallvec::SmallVec;
use std::net::IpAddr;

/// Names kept per (client, address): CDNs put many names on one address
/// (a site, its CNAME chain, its sister sites on the same edge).
const NAMES_PER_ADDRESS: usize = 8;

/// A flow may be stamped slightly before the answer that caused it (separate
/// sensors' clocks).
const ANSWER_SKEW_NANOS: i64 = 2 * NANOS_PER_SEC;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct NameEntry {
    name: Name,
    answered: Timestamp,
    /// End of validity: answer time + TTL + grace.
    valid_until: Timestamp,
}

/// Up to [`NAMES_PER_ADDRESS`] names, without a heap allocation per flow.
pub struct Names<'a> {
    names: [&'a str; NAMES_PER_ADDRESS],
    len: usize,
}

impl<'a> std::ops::Deref for Names<'a> {
    type Target = [&'a str];
    fn deref(&self) -> &[&'a str] {
        &self.names[..self.len]
    }
}

/// Most addresses carry one name for a client: that one is held inline
/// (saved as a list like any other).
type AddressNames = SmallVec<[NameEntry; 1]>;

/// Distinct names held shared: a fleet resolves the same few, each for
/// many clients and addresses (a CDN's answer lists several).
const MAX_SHARED_NAMES: usize = 4096;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct DnsMap {
    entries: BoundedMap<(Addr, Addr), AddressNames>,
    grace_secs: i64,
    /// Not saved: a restore shares names by itself (see [`crate::name`]).
    #[serde(skip, default = "shared_names")]
    names: Interner,
}

fn shared_names() -> Interner {
    Interner::new(MAX_SHARED_NAMES)
}

crate::changes::apply_changes_by_field!(DnsMap {
    entries,
    grace_secs,
    names
});

impl DnsMap {
    pub fn new(max_entries: usize, grace_secs: i64) -> DnsMap {
        DnsMap {
            entries: BoundedMap::new(max_entries),
            grace_secs,
            names: shared_names(),
        }
    }

    pub fn set_grace(&mut self, grace_secs: i64) {
        self.grace_secs = grace_secs;
    }

    /// Learns the addresses in a query's answers. Both the queried name and any
    /// CNAME targets in the answer name the addresses.
    pub fn learn(&mut self, q: &DnsQuery) {
        // The question and the answers' CNAME targets: a handful, on the stack.
        let mut names: SmallVec<[&str; NAMES_PER_ADDRESS]> = SmallVec::new();
        names.push(q.qname.as_str());
        for a in &q.answers {
            if crate::net::parse_ip(&a.data).is_none()
                && !a.data.is_empty()
                && names.len() < NAMES_PER_ADDRESS
            {
                names.push(a.data.trim_end_matches('.'));
            }
        }
        let DnsMap {
            entries,
            grace_secs,
            names: shared,
        } = self;
        // Each name's shared copy, made when an entry first needs it.
        let mut held: [Option<Name>; NAMES_PER_ADDRESS] = Default::default();
        for a in &q.answers {
            let Some(ip) = crate::net::parse_ip(&a.data) else {
                continue;
            };
            let valid_until = q.ts.plus_secs(i64::from(a.ttl) + *grace_secs);
            let list = entries
                .get_or_insert_with((Addr(q.client), Addr(ip.to_canonical())), SmallVec::new);
            for (&name, held) in names.iter().zip(&mut held) {
                // Held names are lower case: one asked again is found without
                // making a lower-case copy first.
                match list.iter_mut().find(|e| e.name.eq_ignore_ascii_case(name)) {
                    Some(e) => {
                        e.answered = e.answered.min(q.ts);
                        e.valid_until = e.valid_until.max(valid_until);
                    }
                    None => {
                        if list.len() == NAMES_PER_ADDRESS {
                            // Forget the entry that expires first.
                            let oldest = list
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, e)| e.valid_until)
                                .map(|(i, _)| i)
                                .unwrap_or(0);
                            list.remove(oldest);
                        }
                        let name = held.get_or_insert_with(|| {
                            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                                shared.get(&name.to_ascii_lowercase())
                            } else {
                                shared.get(name)
                            }
                        });
                        list.push(NameEntry {
                            name: name.clone(),
                            answered: q.ts,
                            valid_until,
                        });
                    }
                }
            }
        }
    }

    /// Names `client` had for `ip` at time `t`, sorted (so the first is the
    /// same whichever answer came first).
    pub fn names_at(&mut self, client: IpAddr, ip: IpAddr, t: Timestamp) -> Names<'_> {
        let mut names = Names {
            names: [""; NAMES_PER_ADDRESS],
            len: 0,
        };
        if let Some(list) = self.entries.get(&(Addr(client), Addr(ip))) {
            for e in list
                .iter()
                .filter(|e| e.answered.0 - ANSWER_SKEW_NANOS <= t.0 && t <= e.valid_until)
            {
                names.names[names.len] = &e.name;
                names.len += 1;
            }
        }
        names.names[..names.len].sort_unstable();
        names
    }

    /// [`DnsMap::names_at`] for a connection from `start` to `end`, which keeps
    /// the names it used valid while it lasts (and a grace period after), as
    /// connection tracking does: exporters cut long connections into slices
    /// that start long after the answer's TTL.
    pub fn names_for_connection(
        &mut self,
        client: IpAddr,
        ip: IpAddr,
        start: Timestamp,
        end: Timestamp,
    ) -> Names<'_> {
        let kept = end.plus_secs(self.grace_secs);
        if let Some(list) = self.entries.peek_mut(&(Addr(client), Addr(ip))) {
            for e in list
                .iter_mut()
                .filter(|e| e.answered.0 - ANSWER_SKEW_NANOS <= start.0 && start <= e.valid_until)
            {
                e.valid_until = e.valid_until.max(kept);
            }
        }
        self.names_at(client, ip, start)
    }

    /// Meets the running policy's cap after a restore.
    pub fn recap(&mut self, max_entries: usize) {
        self.entries.recap(max_entries);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn evictions(&self) -> u64 {
        self.entries.evictions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DnsAnswer;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn query(client: &str, name: &str, at: &str, answers: &[(&str, u32)]) -> DnsQuery {
        DnsQuery {
            ts: ts(at),
            client: client.parse().unwrap(),
            resolver: None,
            qname: name.into(),
            qtype: Some("A".into()),
            rcode: None,
            answers: answers
                .iter()
                .map(|(d, ttl)| DnsAnswer {
                    data: d.to_string(),
                    ttl: *ttl,
                })
                .collect(),
        }
    }

    /// The [`Name`]s `client` holds for `ip`, as held.
    fn held(m: &DnsMap, client: &str, ip: &str) -> Vec<Name> {
        let key = (Addr(client.parse().unwrap()), Addr(ip.parse().unwrap()));
        let list = m.entries.peek(&key).expect("an entry");
        list.iter().map(|e| e.name.clone()).collect()
    }

    #[test]
    fn a_name_answered_to_many_clients_for_many_addresses_is_held_once() {
        let mut m = DnsMap::new(64, 300);
        let cdn = [("93.184.216.34", 60), ("93.184.216.35", 60)];
        m.learn(&query(
            "10.20.0.15",
            "cdn.example.net",
            "2026-11-24T10:00:00Z",
            &cdn,
        ));
        m.learn(&query(
            "10.20.0.16",
            "CDN.Example.net",
            "2026-11-24T10:00:05Z",
            &cdn,
        ));
        let names: Vec<Name> = [("10.20.0.15", cdn[0].0), ("10.20.0.15", cdn[1].0)]
            .into_iter()
            .chain([("10.20.0.16", cdn[0].0), ("10.20.0.16", cdn[1].0)])
            .flat_map(|(client, ip)| held(&m, client, ip))
            .collect();
        assert_eq!(names.len(), 4);
        for name in &names {
            assert_eq!(&**name, "cdn.example.net", "held lower case");
            assert!(std::ptr::eq(name.as_ptr(), names[0].as_ptr()), "one string");
        }
    }

    #[test]
    fn answers_name_addresses_per_client_within_ttl_and_grace() {
        let mut m = DnsMap::new(64, 300);
        m.learn(&query(
            "10.20.0.15",
            "api.internal.example.net",
            "2026-11-24T10:00:00Z",
            &[("93.184.216.34", 60)],
        ));
        let (client, ip) = (
            "10.20.0.15".parse().unwrap(),
            "93.184.216.34".parse().unwrap(),
        );
        assert_eq!(
            *m.names_at(client, ip, ts("2026-11-24T10:00:30Z")),
            ["api.internal.example.net"]
        );
        assert_eq!(
            *m.names_at(client, ip, ts("2026-11-24T10:06:00Z")),
            ["api.internal.example.net"],
            "within grace"
        );
        assert!(
            m.names_at(client, ip, ts("2026-11-24T10:06:01Z"))
                .is_empty(),
            "after ttl + grace"
        );
        assert!(
            m.names_at(client, ip, ts("2026-11-24T09:59:00Z"))
                .is_empty(),
            "before the answer"
        );
        assert!(
            m.names_at(
                "10.20.0.16".parse().unwrap(),
                ip,
                ts("2026-11-24T10:00:30Z")
            )
            .is_empty(),
            "another client's answer"
        );
    }

    #[test]
    fn cname_targets_also_name_the_address() {
        let mut m = DnsMap::new(64, 0);
        m.learn(&query(
            "10.20.0.15",
            "www.example.org",
            "2026-11-24T10:00:00Z",
            &[("edge.cdn.example.", 30), ("198.51.100.7", 30)],
        ));
        let names = m.names_at(
            "10.20.0.15".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
            ts("2026-11-24T10:00:10Z"),
        );
        assert_eq!(*names, ["edge.cdn.example", "www.example.org"]);
    }

    #[test]
    fn a_connection_keeps_its_names_alive_past_the_ttl() {
        let mut m = DnsMap::new(64, 60);
        m.learn(&query(
            "10.20.0.15",
            "bucket.s3.amazonaws.com",
            "2026-11-24T10:00:00Z",
            &[("52.216.0.10", 5)],
        ));
        let (client, ip) = (
            "10.20.0.15".parse().unwrap(),
            "52.216.0.10".parse().unwrap(),
        );
        // A 20-minute upload, exported in one-minute slices.
        let mut t = ts("2026-11-24T10:00:01Z");
        for _ in 0..20 {
            let names = m.names_for_connection(client, ip, t, t.plus_secs(60));
            assert_eq!(*names, ["bucket.s3.amazonaws.com"], "at {}", t.to_rfc3339());
            t = t.plus_secs(60);
        }
        assert!(
            m.names_at(client, ip, ts("2026-11-24T10:30:00Z"))
                .is_empty(),
            "kept only while used, plus the grace"
        );
    }

    #[test]
    fn a_flood_of_answers_costs_bounded_memory() {
        let mut m = DnsMap::new(100, 0);
        for i in 0..10_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            m.learn(&query(
                "10.20.0.15",
                &format!("n{i}.example"),
                "2026-11-24T10:00:00Z",
                &[(&ip, 30)],
            ));
        }
        assert_eq!(m.len(), 100);
        assert_eq!(m.evictions(), 9_900);
    }
}
