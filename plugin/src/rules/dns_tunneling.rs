//! `dns.tunneling`: DNS used as a data channel. Per (agent, registered domain)
//! and five-minute window of event time: many unique subdomains that are long
//! on average, a burst of TXT/NULL queries for distinct names, or a large
//! volume of distinct query names.
//!
//! Only *distinct* names count: a tunnel carries data, so every query name is
//! new, while an agent without a DNS cache asks for the same few names again
//! and again, which is repetition, not information.

use super::{Finding, RuleInfo, Severity, Subject, registered_domain};
use crate::bounded::BoundedMap;
use crate::name::{Name, NamePair};
use crate::registry::Agent;
use crate::time::{NANOS_PER_SEC, Timestamp};
use std::hash::{Hash, Hasher};

pub const RULE: RuleInfo = RuleInfo {
    id: "dns.tunneling",
    description: "Many unique long subdomains under one registered domain, TXT/NULL bursts, or query-byte volume.",
    severity: Severity::High,
    tags: &["dns", "exfiltration", "tunneling"],
};

const WINDOW_NANOS: i64 = 5 * 60 * NANOS_PER_SEC;
/// Unique subdomains in a window, with their mean length, that mark a tunnel.
const UNIQUE_SUBDOMAINS: usize = 30;
const MEAN_SUBDOMAIN_LEN: usize = 16;
/// TXT/NULL queries for distinct names in a window, and their share of the window's distinct names, that mark a tunnel.
const TXT_NULL_QUERIES: u32 = 10;
/// Bytes of distinct query names under one domain in a window that mark a tunnel.
const QUERY_BYTES: u32 = 4096;

/// Distinct names remembered per window to tell new from repeated; past it
/// (far past every threshold) names count as new.
const SEEN_NAMES: usize = 256;
/// Room for names kept from one window to the next (the rest is freed).
const KEPT_SEEN_CAPACITY: usize = 8;

/// One (agent, registered domain)'s current window. Counts are 32-bit and
/// saturate (far past every threshold): an agent holds a window for each
/// domain it resolves under.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Window {
    /// The window's number: five-minute steps since 1970 (any time's fits).
    start: i32,
    /// Distinct query names (of any type) in the window.
    names: u32,
    /// Distinct names asked for as TXT/NULL.
    txt_null: u32,
    /// Bytes of the distinct names.
    query_bytes: u32,
    /// Distinct non-empty subdomains and their total length.
    distinct: u32,
    distinct_len_total: u32,
    /// Hashes of the (name, TXT/NULL) pairs seen.
    seen: Vec<u64>,
}

/// Windows per (agent, registered domain), least recently used forgotten first.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct TunnelWindows {
    windows: BoundedMap<(Name, Name), Window>,
}

crate::changes::apply_changes_by_field!(TunnelWindows { windows });

impl TunnelWindows {
    pub fn new(cap: usize) -> TunnelWindows {
        TunnelWindows {
            windows: BoundedMap::new(cap),
        }
    }

    /// Counts one query of `agent` and judges its domain's window.
    pub fn check(
        &mut self,
        agent: &Agent,
        qname: &str,
        qtype: Option<&str>,
        t: Timestamp,
    ) -> Option<Finding> {
        self.check_in(agent, qname, registered_domain(qname)?, qtype, t)
    }

    /// [`TunnelWindows::check`] for a name whose registered domain the caller already knows.
    pub fn check_in(
        &mut self,
        agent: &Agent,
        qname: &str,
        domain: &str,
        qtype: Option<&str>,
        t: Timestamp,
    ) -> Option<Finding> {
        let sub = qname
            .strip_suffix(domain)
            .unwrap_or("")
            .trim_end_matches('.');
        let start = t.0.div_euclid(WINDOW_NANOS) as i32;
        let key: &dyn NamePair = &(&*agent.info.id, domain);
        let owned = || (agent.info.id.clone(), Name::from(domain));
        let w = self.windows.get_or_insert_by(key, owned, Window::default);
        if w.start != start {
            if start < w.start {
                return None; // a late record of a window already judged
            }
            // A quiet domain's few names reuse their buffer window after
            // window; a burst's large one is given back.
            let mut seen = std::mem::take(&mut w.seen);
            seen.clear();
            if seen.capacity() > KEPT_SEEN_CAPACITY {
                seen = Vec::new();
            }
            *w = Window {
                start,
                seen,
                ..Window::default()
            };
        }
        let txt_null = qtype.is_some_and(|q| {
            ["TXT", "NULL", "16", "10"]
                .iter()
                .any(|t| q.eq_ignore_ascii_case(t))
        });
        let hash = {
            let mut h = rustc_hash::FxHasher::default();
            qname.hash(&mut h);
            txt_null.hash(&mut h);
            h.finish()
        };
        if w.seen.contains(&hash) {
            return None; // asked before in this window: repetition carries nothing
        }
        if w.seen.len() < SEEN_NAMES {
            w.seen.push(hash);
        }
        let len = u32::try_from(qname.len()).unwrap_or(u32::MAX);
        w.names = w.names.saturating_add(1);
        w.query_bytes = w.query_bytes.saturating_add(len);
        if txt_null {
            w.txt_null = w.txt_null.saturating_add(1);
        }
        if !sub.is_empty() {
            let sub_len = u32::try_from(sub.len()).unwrap_or(u32::MAX);
            w.distinct = w.distinct.saturating_add(1);
            w.distinct_len_total = w.distinct_len_total.saturating_add(sub_len);
        }
        let why = if w.distinct as usize > UNIQUE_SUBDOMAINS
            && (w.distinct_len_total / w.distinct) as usize >= MEAN_SUBDOMAIN_LEN
        {
            format!(
                "more than {UNIQUE_SUBDOMAINS} unique subdomains averaging {} characters",
                w.distinct_len_total / w.distinct
            )
        } else if w.txt_null >= TXT_NULL_QUERIES && u64::from(w.txt_null) * 2 >= u64::from(w.names)
        {
            format!(
                "{} TXT/NULL queries for distinct names out of {}",
                w.txt_null, w.names
            )
        } else if w.query_bytes >= QUERY_BYTES {
            format!("{} bytes of distinct query names", w.query_bytes)
        } else {
            return None;
        };
        let subject = Subject::Agent(agent);
        Some(Finding::new(
            &RULE,
            &subject,
            Some(domain),
            format!("{subject} sent DNS to {domain} like a tunnel: {why} within 5 minutes"),
        ))
    }

    /// Meets the running policy's cap after a restore.
    pub fn recap(&mut self, cap: usize) {
        self.windows.recap(cap);
    }

    pub fn evictions(&self) -> u64 {
        self.windows.evictions()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, ts};
    use super::*;

    #[test]
    fn unique_long_subdomains_fire_once_past_the_threshold() {
        let a = agent("data_collector_v1");
        let mut w = TunnelWindows::new(16);
        let t = ts("2026-11-24T14:31:00Z");
        let mut fired = None;
        for i in 0..40 {
            let name = format!(
                "{:032x}.t.example.org",
                0x1234_5678_9abc_def0_u128 * (i + 1)
            );
            if let Some(f) = w.check(&a, &name, Some("A"), t) {
                fired.get_or_insert((i, f));
            }
        }
        let (at, f) = fired.expect("fires");
        assert_eq!(at, 30, "the 31st unique subdomain");
        assert_eq!(f.incident, "0x8a3f/dns.tunneling/example.org");
    }

    #[test]
    fn a_window_shares_its_agents_id() {
        let a = agent("data_collector_v1");
        let mut w = TunnelWindows::new(16);
        let t = ts("2026-11-24T14:31:00Z");
        w.check(&a, "a.example.org", Some("A"), t);
        w.check(&a, "b.example.org", Some("A"), t);
        let keys: Vec<_> = w.windows.keys().collect();
        assert_eq!(keys.len(), 1);
        assert_eq!((&*keys[0].0, &*keys[0].1), ("0x8a3f", "example.org"));
        assert!(std::ptr::eq(keys[0].0.as_ptr(), a.info.id.as_ptr()));
    }

    #[test]
    fn txt_bursts_and_query_volume_fire() {
        let a = agent("data_collector_v1");
        let mut w = TunnelWindows::new(16);
        let t = ts("2026-11-24T14:31:00Z");
        let fired = (0..10)
            .filter_map(|i| w.check(&a, &format!("c{i}.cmd.example.net"), Some("TXT"), t))
            .count();
        assert_eq!(fired, 1);
    }

    #[test]
    fn busy_but_ordinary_dns_is_a_near_miss() {
        let a = agent("data_collector_v1");
        let mut w = TunnelWindows::new(16);
        // The same few names, resolved again and again across windows.
        for i in 0..500 {
            let t = ts("2026-11-24T14:00:00Z").plus_secs(i * 7);
            for name in [
                "api.internal.example.net",
                "en.wikipedia.org",
                "www.wikipedia.org",
            ] {
                assert!(w.check(&a, name, Some("A"), t).is_none());
            }
        }
        // An agent without a DNS cache: one allowed name ~170 times in 5 minutes.
        for i in 0..170 {
            let t = ts("2026-11-24T16:00:00Z").plus_secs(i * 5 / 3);
            assert!(
                w.check(&a, "telemetry-ingest.internal.example.net", Some("A"), t)
                    .is_none()
            );
            assert!(
                w.check(&a, "telemetry-ingest.internal.example.net", Some("TXT"), t)
                    .is_none()
            );
        }
        // Many short unique subdomains (a CDN's shards) within one window.
        for i in 0..60 {
            assert!(
                w.check(
                    &a,
                    &format!("img{i}.cdn.example.com"),
                    Some("AAAA"),
                    ts("2026-11-24T15:00:00Z")
                )
                .is_none()
            );
        }
    }
}
