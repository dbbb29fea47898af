//! What each agent has been doing lately, in bounded space: its last hour of
//! volume, the destinations it reached minute by minute (to hold against its
//! heartbeats), its declared plan, its approval grants and heartbeat state.
//!
//! Per-agent cost: about 1 KiB for the volume hour, up to
//! [`MAX_OBSERVED_DESTINATIONS`] × ~64 B of destinations, up to
//! [`MAX_GRANTS`] grants and one plan of at most 64 actions.

use crate::record::{Grant, Heartbeat, PlannedAction, Proto};
use crate::time::{NANOS_PER_SEC, Timestamp};
use std::net::IpAddr;

/// Distinct destinations remembered per agent for heartbeat comparison.
pub const MAX_OBSERVED_DESTINATIONS: usize = 64;
/// Minutes of history per destination (a heartbeat window plus lateness must fit).
pub const OBSERVED_MINUTES: i64 = 128;
/// Live grants kept per agent (the oldest go first).
pub const MAX_GRANTS: usize = 32;
/// Heartbeats waiting for their window's flows to arrive.
pub const MAX_PENDING_HEARTBEATS: usize = 8;

fn minute_of(t: Timestamp) -> i64 {
    t.0.div_euclid(60 * NANOS_PER_SEC)
}

/// Connections and bytes per minute over the last hour of event time.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VolumeHour {
    head_minute: Option<i64>,
    #[serde(with = "minute_array")]
    connections: [u32; 60],
    #[serde(with = "minute_array")]
    bytes: [u64; 60],
}

/// serde has no impls for arrays longer than 32.
mod minute_array {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(a: &[T; 60], s: S) -> Result<S::Ok, S::Error> {
        a.as_slice().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<[T; 60], D::Error> {
        let v = Vec::<T>::deserialize(d)?;
        let len = v.len();
        v.try_into()
            .map_err(|_| serde::de::Error::invalid_length(len, &"60 minutes"))
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
        VolumeHour {
            head_minute: None,
            connections: [0; 60],
            bytes: [0; 60],
        }
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
                    completed = Some(self.totals());
                }
                for step in (head + 1)..=m.min(head + 60) {
                    let i = step.rem_euclid(60) as usize;
                    self.connections[i] = 0;
                    self.bytes[i] = 0;
                }
                self.head_minute = Some(m);
            }
            // Older than an hour: outside every window that could still matter.
            Some(head) if m <= head - 60 => return (self.totals(), None),
            Some(_) => {}
            None => self.head_minute = Some(m),
        }
        let i = m.rem_euclid(60) as usize;
        self.connections[i] = self.connections[i].saturating_add(1);
        self.bytes[i] = self.bytes[i].saturating_add(bytes);
        (self.totals(), completed)
    }

    pub fn totals(&self) -> HourTotals {
        HourTotals {
            connections: self.connections.iter().map(|&c| u64::from(c)).sum(),
            bytes: self.bytes.iter().sum(),
        }
    }
}

/// One destination an agent reached, with the minutes it was reached in.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ObservedDestination {
    pub dst: IpAddr,
    pub port: u16,
    pub proto: Proto,
    /// The name the agent's own DNS gave the address, if any.
    pub name: Option<Box<str>>,
    base_minute: i64,
    /// Bit i: reached in minute `base_minute + i`.
    minutes: u128,
}

impl ObservedDestination {
    fn mark(&mut self, m: i64) {
        let top = self.base_minute + OBSERVED_MINUTES - 1;
        if m > top {
            let shift = m - top;
            self.minutes = if shift >= OBSERVED_MINUTES {
                0
            } else {
                self.minutes >> shift
            };
            self.base_minute += shift;
        }
        if m >= self.base_minute {
            self.minutes |= 1u128 << (m - self.base_minute);
        }
    }

    /// Whether reached in any minute of [from, to).
    pub fn seen_in(&self, from: Timestamp, to: Timestamp) -> bool {
        let (from, to) = (
            minute_of(from).max(self.base_minute),
            minute_of(Timestamp(to.0 - 1)).min(self.base_minute + OBSERVED_MINUTES - 1),
        );
        (from..=to).any(|m| self.minutes >> (m - self.base_minute) & 1 == 1)
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Activity {
    pub volume: VolumeHour,
    pub observed: Vec<ObservedDestination>,
    /// Destinations were forgotten to stay within the cap since this time: a
    /// heartbeat window overlapping it cannot be checked for hidden traffic.
    pub observed_incomplete_since: Option<Timestamp>,
    pub plan: Option<Vec<PlannedAction>>,
    pub grants: Vec<Grant>,
    pub last_heartbeat_end: Option<Timestamp>,
    /// When the next heartbeat is overdue (the armed `heartbeat.missing` deadline).
    pub heartbeat_overdue: Option<Timestamp>,
    pub pending_heartbeats: Vec<Heartbeat>,
}

impl Activity {
    pub fn observe(
        &mut self,
        t: Timestamp,
        dst: IpAddr,
        port: u16,
        proto: Proto,
        name: Option<&str>,
    ) {
        let m = minute_of(t);
        if let Some(d) = self
            .observed
            .iter_mut()
            .find(|d| d.dst == dst && d.port == port && d.proto == proto)
        {
            if d.name.is_none() {
                d.name = name.map(Into::into);
            }
            d.mark(m);
            return;
        }
        if self.observed.len() >= MAX_OBSERVED_DESTINATIONS {
            // Forget the destination reached least recently.
            let stalest = self
                .observed
                .iter()
                .enumerate()
                .min_by_key(|(_, d)| d.base_minute + 127 - d.minutes.leading_zeros() as i64)
                .map(|(i, _)| i)
                .unwrap_or(0);
            self.observed.swap_remove(stalest);
            self.observed_incomplete_since = Some(
                self.observed_incomplete_since
                    .map_or(t, |since| since.max(t)),
            );
        }
        let mut d = ObservedDestination {
            dst,
            port,
            proto,
            name: name.map(Into::into),
            base_minute: m - (OBSERVED_MINUTES - 1),
            minutes: 0,
        };
        d.mark(m);
        self.observed.push(d);
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

    fn t(minutes: i64) -> Timestamp {
        Timestamp::from_secs(1_795_528_800 + minutes * 60)
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

    #[test]
    fn observed_destinations_remember_minutes() {
        let mut a = Activity::default();
        let ip: IpAddr = "93.184.216.34".parse().unwrap();
        a.observe(t(10), ip, 443, Proto::Tcp, Some("api.example"));
        a.observe(t(50), ip, 443, Proto::Tcp, None);
        let d = &a.observed[0];
        assert!(d.seen_in(t(0), t(15)));
        assert!(!d.seen_in(t(11), t(50)), "window end is exclusive");
        assert!(d.seen_in(t(11), t(51)));
        assert_eq!(d.name.as_deref(), Some("api.example"));
        a.observe(t(300), ip, 443, Proto::Tcp, None);
        assert!(
            !a.observed[0].seen_in(t(0), t(60)),
            "older than the history: forgotten"
        );
    }

    #[test]
    fn destinations_are_capped_and_the_gap_is_remembered() {
        let mut a = Activity::default();
        for i in 0..(MAX_OBSERVED_DESTINATIONS as u32 + 5) {
            a.observe(
                t(i as i64),
                IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
                443,
                Proto::Tcp,
                None,
            );
        }
        assert_eq!(a.observed.len(), MAX_OBSERVED_DESTINATIONS);
        assert!(a.observed_incomplete_since.is_some());
    }
}
