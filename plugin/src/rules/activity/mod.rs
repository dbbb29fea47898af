//! What each agent has been doing lately, in bounded space: its last hour of
//! volume, the connections it made (to hold against its heartbeats), its
//! declared plan, its approval grants and heartbeat state.
//!
//! Per-agent cost: the volume hour (about 4 bytes per minute with traffic),
//! the connections of the last heartbeat window or two (at most
//! [`MAX_CONTACTS`] × 16 B, each destination once), up to [`MAX_GRANTS`]
//! grants and one plan of at most 64 actions.

mod contact;
mod packing;
mod volume;

use contact::SLICE_GAP_NANOS;
pub use contact::{Contact, Contacts};
pub use volume::{HourTotals, VolumeHour};

use crate::record::{Grant, Heartbeat, PlannedAction};
use crate::time::{OptionalTimestamp, Timestamp};

/// Connections remembered per agent for heartbeat comparison.
pub const MAX_CONTACTS: usize = 256;
/// How long a connection is remembered when no heartbeat asks for it (a
/// heartbeat window plus the lateness allowance must fit).
pub const CONTACT_HISTORY_SECS: i64 = 128 * 60;
/// Live grants kept per agent (the oldest go first).
pub const MAX_GRANTS: usize = 32;
/// Heartbeats waiting for their window's flows to arrive.
pub const MAX_PENDING_HEARTBEATS: usize = 8;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Activity {
    pub volume: VolumeHour,
    /// Connections made, oldest first, for heartbeat windows to be held against.
    #[serde(with = "contact::packed_contacts")]
    pub contacts: Contacts,
    /// Connections were forgotten to stay within the cap up to this time: a
    /// heartbeat window overlapping it cannot be checked for hidden traffic.
    pub contacts_incomplete_until: OptionalTimestamp,
    /// The last heartbeat window judged, for connections on its boundary.
    /// Boxed, as is `held_deviation`: most agents hold none, and they hold the
    /// inline bytes all the same.
    pub last_window: Option<Box<Heartbeat>>,
    /// When the agent last ran away in a retry loop (`rate.runaway`): the
    /// hour's connection volume is that loop, not a second incident.
    pub runaway_at: OptionalTimestamp,
    /// When the hour's volume, over its baseline, is judged (a pending deadline).
    pub volume_due: OptionalTimestamp,
    /// A call off its schedule, held until its minute is complete: a retry
    /// loop to a scheduled destination is `rate.runaway`, not a deviation.
    pub held_deviation: Option<Box<(Timestamp, crate::rules::Finding)>>,
    /// Random-looking registered domains resolved lately (hash, when), for
    /// `dns.high_entropy`: one odd name is not a generator.
    pub random_domains: Vec<(u64, Timestamp)>,
    pub plan: Option<Vec<PlannedAction>>,
    pub grants: Vec<Grant>,
    pub last_heartbeat_end: OptionalTimestamp,
    /// When the next heartbeat is overdue (the armed `heartbeat.missing` deadline).
    pub heartbeat_overdue: OptionalTimestamp,
    pub pending_heartbeats: Vec<Heartbeat>,
}

impl Activity {
    /// Remembers an outbound connection; slices of one connection join,
    /// whatever order their records arrive in.
    pub fn observe(&mut self, flow: &crate::record::Flow) {
        if let Some(forgotten) = self.contacts.observe(flow) {
            self.contacts_incomplete_until = (self.contacts_incomplete_until.get())
                .map_or(forgotten, |t| t.max(forgotten))
                .into();
        }
    }

    /// Forgets connections no heartbeat window can still ask about: ended
    /// before `before`, or settled and ended before the last judged window.
    pub fn forget_contacts_before(&mut self, before: Timestamp) {
        let judged = self.last_window.as_ref().map(|w| w.window_end);
        self.contacts.retain(|c| {
            c.end >= before
                && !(c.settled && judged.is_some_and(|j| c.end.0 + SLICE_GAP_NANOS < j.0))
        });
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
    pub fn queue_heartbeat(&mut self, mut hb: Heartbeat) -> bool {
        let fits = self.pending_heartbeats.len() < MAX_PENDING_HEARTBEATS;
        if !fits {
            self.pending_heartbeats.remove(0);
        }
        // Held for a window or two: no spare capacity (heartbeats are rare).
        hb.connections.shrink_to_fit();
        self.pending_heartbeats.reserve_exact(1);
        self.pending_heartbeats.push(hb);
        fits
    }
}

/// A one-packet flow from the tests' agent (10.20.0.15) to `dst`, from and to the ports given.
#[cfg(test)]
fn outbound(
    ts: Timestamp,
    end: Option<Timestamp>,
    dst: std::net::IpAddr,
    (src_port, dst_port): (u16, u16),
    proto: crate::record::Proto,
) -> crate::record::Flow {
    crate::record::Flow {
        ts,
        end,
        src: "10.20.0.15".parse().unwrap(),
        dst,
        src_port,
        dst_port,
        proto,
        bytes: 1,
        packets: 1,
        tcp_flags: None,
        src_initiated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Proto;
    use crate::time::NANOS_PER_SEC;

    fn flow(secs: i64, dst: &str, sport: u16, dur: i64) -> crate::record::Flow {
        outbound(
            Timestamp::from_secs(1_795_528_800 + secs),
            Some(Timestamp::from_secs(1_795_528_800 + secs + dur)),
            dst.parse().unwrap(),
            (sport, 443),
            Proto::Tcp,
        )
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
            restored.contacts.get(0).end,
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
        assert!(
            a.contacts_incomplete_until.get().is_none(),
            "nothing forgotten"
        );
        assert_eq!(
            a.contacts.iter().last().unwrap().end.0 / NANOS_PER_SEC - 1_795_528_800,
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
            OptionalTimestamp::from(Timestamp::from_secs(1_795_528_800 + 400))
        );
        a.forget_contacts_before(Timestamp::from_secs(1_795_528_800 + 10_000));
        assert_eq!(a.contacts.len(), MAX_CONTACTS + 5 - 100);
    }
}
