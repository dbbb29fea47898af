//! An agent's last hour of volume: connections and bytes per minute, for
//! the volume and rate baselines.

use super::packing::{Reader, put_varint};
use crate::time::{NANOS_PER_SEC, Timestamp};

fn minute_of(t: Timestamp) -> i64 {
    t.0.div_euclid(60 * NANOS_PER_SEC)
}

/// Connections and bytes per minute over the last hour of event time.
///
/// Held packed: most flows add to the current (head) minute, kept plain; the
/// hour's earlier minutes with traffic follow as varints, oldest first (about
/// 4 bytes a busy minute, where 60 plain minutes took 720 bytes per agent).
/// The head moving on appends it and drops what left the hour from the
/// front; only a late record rewrites an entry in the middle.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SavedVolumeHour", into = "SavedVolumeHour")]
pub struct VolumeHour {
    /// The current minute, [`NO_MINUTE`] before the first connection (an
    /// `Option<i64>` took 8 bytes more in every agent's activity).
    head_minute: i64,
    head: MinuteCount,
    /// The earlier minutes with traffic ([`Entries`]), oldest first.
    earlier: Vec<u8>,
    /// The minutes' sums, kept as they change: every flow asks for them.
    totals: HourTotals,
}

/// No minute yet: below any time's (the earliest time's minute is about -1.5e8).
const NO_MINUTE: i64 = i64::MIN;

impl Default for VolumeHour {
    fn default() -> VolumeHour {
        VolumeHour {
            head_minute: NO_MINUTE,
            head: MinuteCount::default(),
            earlier: Vec::new(),
            totals: HourTotals::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct MinuteCount {
    connections: u32,
    bytes: u64,
}

impl MinuteCount {
    /// Counts one connection of `bytes`, keeping `totals` in step.
    fn add(&mut self, bytes: u64, totals: &mut HourTotals) {
        let connections = self.connections.saturating_add(1);
        let minute_bytes = self.bytes.saturating_add(bytes);
        totals.connections += u64::from(connections - self.connections);
        totals.bytes = totals.bytes.wrapping_add(minute_bytes - self.bytes);
        *self = MinuteCount {
            connections,
            bytes: minute_bytes,
        };
    }
}

/// What a [`VolumeHour`] saves: its totals are derived, and its minutes are
/// packed (a bitmap of the minutes with traffic, then their counts as
/// varints), typically well under 200 bytes.
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

impl Minutes {
    const NONE: Minutes = Minutes {
        connections: [0; 60],
        bytes: [0; 60],
    };

    fn get(&self, i: usize) -> MinuteCount {
        MinuteCount {
            connections: self.connections[i],
            bytes: self.bytes[i],
        }
    }

    fn set(&mut self, i: usize, count: MinuteCount) {
        self.connections[i] = count.connections;
        self.bytes[i] = count.bytes;
    }
}

mod packed_minutes {
    use super::Minutes;
    use super::{Reader, put_varint};
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
        crate::rules::activity::packing::deserialize(d, "packed minutes", unpack)
    }
}

impl TryFrom<SavedVolumeHour> for VolumeHour {
    type Error = &'static str;

    fn try_from(saved: SavedVolumeHour) -> Result<VolumeHour, Self::Error> {
        let minutes = saved.minutes;
        let head_minute = saved.head_minute.unwrap_or(NO_MINUTE);
        if head_minute == NO_MINUTE && minutes != Minutes::NONE {
            return Err("volume minutes with traffic but no current minute");
        }
        let totals = HourTotals {
            connections: minutes.connections.iter().map(|&c| u64::from(c)).sum(),
            bytes: minutes
                .bytes
                .iter()
                .fold(0u64, |sum, &b| sum.wrapping_add(b)),
        };
        let mut hour = VolumeHour {
            head_minute,
            head: MinuteCount::default(),
            earlier: Vec::new(),
            totals,
        };
        hour.set_minutes(&minutes);
        Ok(hour)
    }
}

impl From<VolumeHour> for SavedVolumeHour {
    fn from(hour: VolumeHour) -> SavedVolumeHour {
        SavedVolumeHour {
            head_minute: hour.head_minute(),
            minutes: hour.minutes(),
        }
    }
}

/// Totals of one complete hour, for baselines to learn from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HourTotals {
    pub connections: u64,
    pub bytes: u64,
}

/// The slot (minute of the hour, 0..60) of minute `m`.
fn slot(m: i64) -> u8 {
    m.rem_euclid(60) as u8
}

/// The minute in the hour up to `head` whose slot is `slot`.
fn minute_at(head: i64, slot: u8) -> i64 {
    head - (i64::from(self::slot(head)) - i64::from(slot)).rem_euclid(60)
}

/// Appends one earlier minute: its slot, then its counts as varints.
fn put_entry(out: &mut Vec<u8>, slot: u8, count: MinuteCount) {
    out.push(slot);
    put_varint(out, u64::from(count.connections));
    put_varint(out, count.bytes);
}

/// The earlier minutes as held, oldest first: (slot, counts, bytes the entry takes).
struct Entries<'a>(&'a [u8]);

impl Iterator for Entries<'_> {
    type Item = (u8, MinuteCount, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let mut r = Reader(self.0);
        let slot = r.byte()?;
        // Written by `put_entry` only: it reads back.
        let connections = u32::try_from(r.varint()?).ok()?;
        let bytes = r.varint()?;
        let len = self.0.len() - r.0.len();
        self.0 = r.0;
        Some((slot, MinuteCount { connections, bytes }, len))
    }
}

impl VolumeHour {
    fn head_minute(&self) -> Option<i64> {
        (self.head_minute != NO_MINUTE).then_some(self.head_minute)
    }

    /// Adds one connection; returns the hour's totals so far and, when this
    /// moved into a new clock hour, the totals of the hour just completed.
    pub fn add(&mut self, t: Timestamp, bytes: u64) -> (HourTotals, Option<HourTotals>) {
        let m = minute_of(t);
        let mut completed = None;
        match self.head_minute() {
            Some(head) if m == head => {}
            Some(head) if m > head => {
                if m.div_euclid(60) != head.div_euclid(60) {
                    completed = Some(self.totals);
                }
                if self.head != MinuteCount::default() {
                    put_entry(&mut self.earlier, slot(head), self.head);
                }
                self.head = MinuteCount::default();
                // Minutes that left the hour are at the front.
                let mut gone = 0;
                for (s, count, len) in Entries(&self.earlier) {
                    if minute_at(head, s) > m - 60 {
                        break;
                    }
                    self.totals.connections -= u64::from(count.connections);
                    self.totals.bytes = self.totals.bytes.wrapping_sub(count.bytes);
                    gone += len;
                }
                self.earlier.drain(..gone);
                self.head_minute = m;
            }
            // Older than an hour: outside every window that could still matter.
            Some(head) if m <= head - 60 => return (self.totals, None),
            Some(head) => {
                self.add_late(head, m, bytes);
                return (self.totals, None);
            }
            None => self.head_minute = m,
        }
        self.head.add(bytes, &mut self.totals);
        (self.totals, completed)
    }

    /// Adds to minute `m`, earlier in the hour than the head: its entry is
    /// rewritten in place, or a new one goes where its time puts it.
    fn add_late(&mut self, head: i64, m: i64, bytes: u64) {
        let (mut at, mut held) = (0, None);
        for (s, count, len) in Entries(&self.earlier) {
            let minute = minute_at(head, s);
            if minute >= m {
                held = (minute == m).then_some((count, len));
                break;
            }
            at += len;
        }
        let (mut count, old_len) = held.unwrap_or_default();
        count.add(bytes, &mut self.totals);
        // Written at the end, turned into place, the old entry removed.
        let end = self.earlier.len();
        put_entry(&mut self.earlier, slot(m), count);
        let new_len = self.earlier.len() - end;
        self.earlier[at..].rotate_right(new_len);
        self.earlier.drain(at + new_len..at + new_len + old_len);
    }

    pub fn totals(&self) -> HourTotals {
        self.totals
    }

    /// All 60 minutes, the head's in its place.
    fn minutes(&self) -> Minutes {
        let mut minutes = Minutes::NONE;
        for (s, count, _) in Entries(&self.earlier) {
            minutes.set(usize::from(s), count);
        }
        if let Some(head) = self.head_minute() {
            minutes.set(usize::from(slot(head)), self.head);
        }
        minutes
    }

    /// Holds `minutes` (of the hour up to the head minute).
    fn set_minutes(&mut self, minutes: &Minutes) {
        self.earlier.clear();
        self.head = MinuteCount::default();
        let Some(head) = self.head_minute() else {
            return;
        };
        for m in (head - 59)..head {
            let count = minutes.get(usize::from(slot(m)));
            if count != MinuteCount::default() {
                put_entry(&mut self.earlier, slot(m), count);
            }
        }
        self.head = minutes.get(usize::from(slot(head)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let bytes = if x.is_multiple_of(97) {
                u64::MAX / 3
            } else {
                x % 10_000
            };
            let (now, _) = v.add(t(minute), bytes);
            let recount = VolumeHour::try_from(SavedVolumeHour::from(v.clone()))
                .unwrap()
                .totals();
            assert_eq!(now, recount);
        }
        let back: VolumeHour = rmp_serde::from_slice(&rmp_serde::to_vec(&v).unwrap()).unwrap();
        assert_eq!(back.totals(), v.totals());
        assert_eq!(back.minutes(), v.minutes());
    }

    /// The hour as it was held before it was packed: 60 plain minutes.
    struct PlainHour {
        head: Option<i64>,
        minutes: Minutes,
    }

    impl PlainHour {
        fn add(&mut self, m: i64, bytes: u64) -> Option<HourTotals> {
            let mut completed = None;
            match self.head {
                Some(head) if m > head => {
                    if m.div_euclid(60) != head.div_euclid(60) {
                        completed = Some(self.totals());
                    }
                    for step in (head + 1)..=m.min(head + 60) {
                        self.minutes
                            .set(step.rem_euclid(60) as usize, MinuteCount::default());
                    }
                    self.head = Some(m);
                }
                Some(head) if m <= head - 60 => return None,
                Some(_) => {}
                None => self.head = Some(m),
            }
            let i = m.rem_euclid(60) as usize;
            let c = self.minutes.get(i);
            self.minutes.set(
                i,
                MinuteCount {
                    connections: c.connections.saturating_add(1),
                    bytes: c.bytes.saturating_add(bytes),
                },
            );
            completed
        }

        fn totals(&self) -> HourTotals {
            HourTotals {
                connections: self.minutes.connections.iter().map(|&c| u64::from(c)).sum(),
                bytes: self
                    .minutes
                    .bytes
                    .iter()
                    .fold(0, |s: u64, &b| s.wrapping_add(b)),
            }
        }
    }

    #[test]
    fn the_packed_hour_counts_as_sixty_plain_minutes_do() {
        let mut v = VolumeHour::default();
        let mut plain = PlainHour {
            head: None,
            minutes: Minutes::NONE,
        };
        let mut x: u64 = 11;
        for n in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly the head minute or the next, sometimes minutes late,
            // sometimes a jump of hours or back past the hour.
            let head = plain.head.unwrap_or(0);
            let minute = match x % 40 {
                0 => head + ((x >> 8) % 300) as i64,
                1 => head - ((x >> 8) % 90) as i64,
                2..=7 => head - ((x >> 8) % 12) as i64,
                8..=15 => head + 1,
                _ => head,
            };
            let bytes = if x.is_multiple_of(89) {
                u64::MAX / 2
            } else {
                x % 5_000
            };
            let (now, completed) = v.add(t(minute), bytes);
            assert_eq!(completed, plain.add(minute, bytes), "step {n}");
            assert_eq!(now, plain.totals(), "step {n}");
            assert_eq!(v.minutes(), plain.minutes, "step {n}");
            if n % 7 == 0 {
                // Saved and restored, it goes on counting the same.
                v = rmp_serde::from_slice(&rmp_serde::to_vec(&v).unwrap()).unwrap();
                assert_eq!(v.minutes(), plain.minutes, "step {n}, restored");
            }
        }
        // Held in far fewer bytes than 60 plain minutes.
        assert!(std::mem::size_of::<VolumeHour>() <= 72);
    }

    #[test]
    fn packed_minutes_come_back_as_they_were_and_are_small() {
        let mut v = VolumeHour::default();
        // Half the hour with a connection of 1,000 bytes a minute, and extremes.
        for m in (0..60).step_by(2) {
            v.add(t(m), 1_000);
        }
        let mut minutes = v.minutes();
        minutes.connections[1] = u32::MAX;
        minutes.bytes[3] = u64::MAX;
        let packed = packed_minutes::pack(&minutes);
        assert_eq!(packed_minutes::unpack(&packed).as_ref(), Some(&minutes));
        // Bitmap, 30 minutes of one connection and 1,000 bytes (1 + 2
        // bytes each), and the two extremes.
        assert_eq!(packed.len(), 8 + 30 * 3 + (5 + 1) + (1 + 10));
        for cut in 0..packed.len() {
            assert_eq!(packed_minutes::unpack(&packed[..cut]), None, "{cut}");
        }
        let mut trailing = packed.clone();
        trailing.push(0);
        assert_eq!(packed_minutes::unpack(&trailing), None);
        // Traffic in an hour with no current minute is not a saved hour.
        let headless = SavedVolumeHour {
            head_minute: None,
            minutes: minutes.clone(),
        };
        assert!(VolumeHour::try_from(headless).is_err());
        // Nor is one whose current minute is no time's.
        let timeless = SavedVolumeHour {
            head_minute: Some(i64::MIN),
            minutes: minutes.clone(),
        };
        assert!(VolumeHour::try_from(timeless).is_err());
        let mut past_the_hour = packed_minutes::pack(&Minutes::NONE);
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
}
