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

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(from = "SavedActivity")]
pub struct Activity {
    pub volume: VolumeHour,
    /// Connections made, oldest first, for heartbeat windows to be held against.
    pub contacts: Contacts,
    /// The last heartbeat window judged, for connections on its boundary.
    /// Boxed: most agents hold none, and they would hold the inline bytes all the same.
    pub last_window: Option<Box<Heartbeat>>,
    /// When the hour's volume, over its baseline, is judged (a pending deadline).
    pub volume_due: OptionalTimestamp,
    pub plan: Option<Vec<PlannedAction>>,
    pub last_heartbeat_end: OptionalTimestamp,
    /// When the next heartbeat is overdue (the armed `heartbeat.missing` deadline).
    pub heartbeat_overdue: OptionalTimestamp,
    pub pending_heartbeats: Vec<Heartbeat>,
    /// What few agents ever hold, boxed: 8 bytes in every agent's activity
    /// rather than 72. `None` while all of it is empty.
    seldom: Option<Box<Seldom>>,
}

/// The part of an [`Activity`] most agents never fill.
#[derive(Debug, Clone, Default)]
struct Seldom {
    /// Connections were forgotten to stay within the cap up to this time: a
    /// heartbeat window overlapping it cannot be checked for hidden traffic.
    contacts_incomplete_until: OptionalTimestamp,
    /// When the agent last ran away in a retry loop (`rate.runaway`): the
    /// hour's connection volume is that loop, not a second incident.
    runaway_at: OptionalTimestamp,
    /// A call off its schedule, held until its minute is complete: a retry
    /// loop to a scheduled destination is `rate.runaway`, not a deviation.
    held_deviation: Option<Box<(Timestamp, crate::rules::Finding)>>,
    /// Random-looking registered domains resolved lately (hash, when), for
    /// `dns.high_entropy`: one odd name is not a generator.
    random_domains: Vec<(u64, Timestamp)>,
    grants: Vec<Grant>,
}

impl Seldom {
    fn is_empty(&self) -> bool {
        self.contacts_incomplete_until.get().is_none()
            && self.runaway_at.get().is_none()
            && self.held_deviation.is_none()
            && self.random_domains.is_empty()
            && self.grants.is_empty()
    }
}

/// [`Activity`] as saves hold it: every field in one list, as before its
/// seldom-used part was boxed.
#[derive(serde::Deserialize)]
struct SavedActivity {
    volume: VolumeHour,
    #[serde(with = "contact::packed_contacts")]
    contacts: Contacts,
    contacts_incomplete_until: OptionalTimestamp,
    last_window: Option<Box<Heartbeat>>,
    runaway_at: OptionalTimestamp,
    volume_due: OptionalTimestamp,
    held_deviation: Option<Box<(Timestamp, crate::rules::Finding)>>,
    random_domains: Vec<(u64, Timestamp)>,
    plan: Option<Vec<PlannedAction>>,
    grants: Vec<Grant>,
    last_heartbeat_end: OptionalTimestamp,
    heartbeat_overdue: OptionalTimestamp,
    pending_heartbeats: Vec<Heartbeat>,
}

impl From<SavedActivity> for Activity {
    fn from(a: SavedActivity) -> Activity {
        let seldom = Seldom {
            contacts_incomplete_until: a.contacts_incomplete_until,
            runaway_at: a.runaway_at,
            held_deviation: a.held_deviation,
            random_domains: a.random_domains,
            grants: a.grants,
        };
        Activity {
            volume: a.volume,
            contacts: a.contacts,
            last_window: a.last_window,
            volume_due: a.volume_due,
            plan: a.plan,
            last_heartbeat_end: a.last_heartbeat_end,
            heartbeat_overdue: a.heartbeat_overdue,
            pending_heartbeats: a.pending_heartbeats,
            seldom: (!seldom.is_empty()).then(|| Box::new(seldom)),
        }
    }
}

/// Writes [`SavedActivity`]'s fields in its order, borrowing them.
impl serde::Serialize for Activity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Packed<'a>(&'a Contacts);
        impl serde::Serialize for Packed<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                contact::packed_contacts::serialize(self.0, s)
            }
        }
        let seldom = self.seldom.as_deref();
        let mut saved = s.serialize_struct("SavedActivity", 13)?;
        saved.serialize_field("volume", &self.volume)?;
        saved.serialize_field("contacts", &Packed(&self.contacts))?;
        saved.serialize_field(
            "contacts_incomplete_until",
            &self.contacts_incomplete_until(),
        )?;
        saved.serialize_field("last_window", &self.last_window)?;
        saved.serialize_field("runaway_at", &self.runaway_at())?;
        saved.serialize_field("volume_due", &self.volume_due)?;
        saved.serialize_field(
            "held_deviation",
            &seldom.and_then(|s| s.held_deviation.as_deref()),
        )?;
        saved.serialize_field(
            "random_domains",
            seldom.map_or(&[][..], |s| &s.random_domains),
        )?;
        saved.serialize_field("plan", &self.plan)?;
        saved.serialize_field("grants", self.grants())?;
        saved.serialize_field("last_heartbeat_end", &self.last_heartbeat_end)?;
        saved.serialize_field("heartbeat_overdue", &self.heartbeat_overdue)?;
        saved.serialize_field("pending_heartbeats", &self.pending_heartbeats)?;
        saved.end()
    }
}

impl Activity {
    /// Remembers an outbound connection; slices of one connection join,
    /// whatever order their records arrive in.
    pub fn observe(&mut self, flow: &crate::record::Flow) {
        if let Some(forgotten) = self.contacts.observe(flow) {
            let seldom = self.seldom_mut();
            seldom.contacts_incomplete_until = (seldom.contacts_incomplete_until.get())
                .map_or(forgotten, |t| t.max(forgotten))
                .into();
        }
    }

    fn seldom_mut(&mut self) -> &mut Seldom {
        self.seldom.get_or_insert_with(Box::default)
    }

    /// Connections were forgotten to stay within the cap up to this time.
    pub fn contacts_incomplete_until(&self) -> OptionalTimestamp {
        self.seldom
            .as_ref()
            .map_or(OptionalTimestamp::NONE, |s| s.contacts_incomplete_until)
    }

    /// When the agent last ran away in a retry loop (`rate.runaway`).
    pub fn runaway_at(&self) -> OptionalTimestamp {
        self.seldom
            .as_ref()
            .map_or(OptionalTimestamp::NONE, |s| s.runaway_at)
    }

    pub fn ran_away_at(&mut self, t: Timestamp) {
        self.seldom_mut().runaway_at = OptionalTimestamp::from(t);
    }

    /// Whether a call off its schedule is held until its minute is complete.
    pub fn holds_deviation(&self) -> bool {
        self.seldom
            .as_ref()
            .is_some_and(|s| s.held_deviation.is_some())
    }

    /// Holds a call off its schedule (seen at `t`) until its minute is complete.
    pub fn hold_deviation(&mut self, t: Timestamp, finding: crate::rules::Finding) {
        self.seldom_mut().held_deviation = Some(Box::new((t, finding)));
    }

    pub fn take_held_deviation(&mut self) -> Option<(Timestamp, crate::rules::Finding)> {
        let held = self.seldom.as_mut()?.held_deviation.take()?;
        Some(*held)
    }

    /// The random-looking registered domains resolved lately, made room for.
    pub fn random_domains_mut(&mut self) -> &mut Vec<(u64, Timestamp)> {
        &mut self.seldom_mut().random_domains
    }

    /// Approval grants still held (expired ones go as new ones arrive).
    pub fn grants(&self) -> &[Grant] {
        self.seldom.as_ref().map_or(&[], |s| &s.grants)
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
        let grants = &mut self.seldom_mut().grants;
        grants.retain(|g| g.expires.is_none_or(|e| e > now));
        if grants.len() >= MAX_GRANTS {
            grants.remove(0);
        }
        grants.push(grant);
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

    /// The seldom-used part is saved in its place among the other fields, and
    /// comes back boxed only when it holds something.
    #[test]
    fn the_seldom_part_is_saved_in_place_and_boxed_only_when_held() {
        let plain = Activity::default();
        let bytes = rmp_serde::to_vec(&plain).unwrap();
        let back: Activity = rmp_serde::from_slice(&bytes).unwrap();
        assert!(back.seldom.is_none());
        let t = Timestamp::from_secs(1_795_528_800);
        let mut busy = Activity::default();
        busy.ran_away_at(t);
        busy.random_domains_mut().push((7, t));
        busy.add_grant(Grant {
            ts: t,
            agent_id: "a-1".into(),
            dest: crate::net::Destination::Name("pypi.org".into()),
            port: Some(443),
            proto: None,
            expires: None,
            approver: None,
            reason: None,
        });
        let bytes = rmp_serde::to_vec(&busy).unwrap();
        // Read as the full list of fields, the seldom ones are in their places.
        let saved: SavedActivity = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(saved.runaway_at, OptionalTimestamp::from(t));
        assert!(saved.held_deviation.is_none());
        assert_eq!(saved.random_domains, [(7, t)]);
        assert_eq!(saved.grants, busy.grants());
        assert!(saved.contacts_incomplete_until.get().is_none());
        let back: Activity = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.runaway_at(), busy.runaway_at());
        assert_eq!(back.grants(), busy.grants());
        assert!(!back.holds_deviation());
        assert_eq!(rmp_serde::to_vec(&back).unwrap(), bytes);
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
            a.contacts_incomplete_until().get().is_none(),
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
            a.contacts_incomplete_until(),
            OptionalTimestamp::from(Timestamp::from_secs(1_795_528_800 + 400))
        );
        a.forget_contacts_before(Timestamp::from_secs(1_795_528_800 + 10_000));
        assert_eq!(a.contacts.len(), MAX_CONTACTS + 5 - 100);
    }
}
