//! Event time: the engine's only clock.
//!
//! Records carry their time as RFC 3339 text or as epoch numbers in seconds,
//! milliseconds, microseconds or nanoseconds. Everything is normalised to
//! nanoseconds since the Unix epoch (UTC) so that replays are deterministic and
//! outputs carry one format whatever the input wrote.

use std::fmt::Write as _;

/// Nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// In a save (a binary format), a time of whole seconds is written as twice
/// its seconds (five bytes in msgpack for the coming centuries), any other as
/// twice its nanoseconds plus one (nine), and one too far out for either as
/// `[nanoseconds]`: control records, deadlines and DNS answers are mostly
/// whole seconds. Text formats get the nanoseconds.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return s.serialize_i64(self.0);
        }
        let whole_secs = (self.0 % NANOS_PER_SEC == 0)
            .then(|| (self.0 / NANOS_PER_SEC).checked_mul(2))
            .flatten();
        let nanos = || self.0.checked_mul(2).and_then(|v| v.checked_add(1));
        match whole_secs.or_else(nanos) {
            Some(v) => s.serialize_i64(v),
            None => serde::Serialize::serialize(&(self.0,), s),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        struct TimeVisitor(bool);
        impl<'de> serde::de::Visitor<'de> for TimeVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a time")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                if self.0 {
                    return Ok(Timestamp(v));
                }
                Ok(if v & 1 == 0 {
                    Timestamp::from_secs(v >> 1)
                } else {
                    Timestamp(v >> 1)
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                let v =
                    i64::try_from(v).map_err(|_| E::custom(format!("time {v} out of range")))?;
                self.visit_i64(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Timestamp, A::Error> {
                let nanos: i64 = seq
                    .next_element()?
                    .ok_or_else(|| serde::de::Error::invalid_length(0, &self))?;
                Ok(Timestamp(nanos))
            }
        }
        let human = d.is_human_readable();
        d.deserialize_any(TimeVisitor(human))
    }
}

/// `Option<Timestamp>` in 8 bytes rather than 16, for fields every agent
/// holds: `i64::MIN` (in 1677, before any time a record's text parses to)
/// stands for none, and a time there is held one nanosecond later. Saved as
/// the `Option` it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalTimestamp(i64);

impl OptionalTimestamp {
    pub const NONE: OptionalTimestamp = OptionalTimestamp(i64::MIN);

    #[inline]
    pub fn get(self) -> Option<Timestamp> {
        (self != Self::NONE).then_some(Timestamp(self.0))
    }
}

impl Default for OptionalTimestamp {
    fn default() -> Self {
        Self::NONE
    }
}

impl From<Timestamp> for OptionalTimestamp {
    fn from(t: Timestamp) -> Self {
        OptionalTimestamp(t.0.max(i64::MIN + 1))
    }
}

impl From<Option<Timestamp>> for OptionalTimestamp {
    fn from(t: Option<Timestamp>) -> Self {
        t.map_or(Self::NONE, Self::from)
    }
}

impl serde::Serialize for OptionalTimestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for OptionalTimestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<Timestamp>::deserialize(d).map(Self::from)
    }
}

/// `x * k` for a positive constant `k`, `None` past `i64`. Range checks
/// against `k`'s quotients rather than `checked_mul`, whose overflow test the
/// guest (wasm32) makes with a 128-bit multiply called out of line, and time
/// arithmetic runs on every record.
#[inline]
const fn scaled(x: i64, k: i64) -> Option<i64> {
    if x > i64::MAX / k || x < i64::MIN / k {
        None
    } else {
        Some(x * k)
    }
}

/// A count of units from a record or policy (minutes, say) in smaller ones
/// (`k` of them each), saturating: however large the count, never a wrap.
#[inline]
pub(crate) fn scaled_count(count: u64, k: i64) -> i64 {
    scaled_saturating(i64::try_from(count).unwrap_or(i64::MAX), k)
}

/// [`scaled`], saturating at `i64`'s ends as `saturating_mul` does.
#[inline]
pub(crate) const fn scaled_saturating(x: i64, k: i64) -> i64 {
    match scaled(x, k) {
        Some(v) => v,
        None if x > 0 => i64::MAX,
        None => i64::MIN,
    }
}

impl Timestamp {
    pub fn from_secs(secs: i64) -> Self {
        Timestamp(scaled_saturating(secs, NANOS_PER_SEC))
    }

    pub fn plus_secs(self, secs: i64) -> Self {
        Timestamp(
            self.0
                .saturating_add(scaled_saturating(secs, NANOS_PER_SEC)),
        )
    }

    pub fn plus_minutes(self, minutes: i64) -> Self {
        self.plus_secs(scaled_saturating(minutes, 60))
    }

    /// Epoch number of unknown unit: the magnitude tells the unit, since any
    /// plausible event time (1973..5138) is unambiguous at each scale.
    pub fn from_epoch_number(value: f64) -> Option<Self> {
        if !value.is_finite() || value < 0.0 {
            return None;
        }
        let nanos = if value < 1e11 {
            value * 1e9
        } else if value < 1e14 {
            value * 1e6
        } else if value < 1e17 {
            value * 1e3
        } else {
            value
        };
        if nanos > i64::MAX as f64 {
            return None;
        }
        Some(Timestamp(nanos.round() as i64))
    }

    /// Epoch integer of unknown unit, without the float rounding of large values.
    pub fn from_epoch_integer(value: u64) -> Option<Self> {
        let nanos = if value < 100_000_000_000 {
            value.checked_mul(1_000_000_000)?
        } else if value < 100_000_000_000_000 {
            value.checked_mul(1_000_000)?
        } else if value < 100_000_000_000_000_000 {
            value.checked_mul(1_000)?
        } else {
            value
        };
        i64::try_from(nanos).ok().map(Timestamp)
    }

    /// Parses RFC 3339 (`2026-11-24T14:30:00Z`, `...:00.123+02:00`). A space may
    /// stand for the `T`, and a missing offset means UTC, as several collectors
    /// write it that way.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() < 19 {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            let mut v = 0i64;
            for &c in &b[range] {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + i64::from(c - b'0');
            }
            Some(v)
        };
        if b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut i = 19;
        let mut frac_nanos = 0i64;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    frac_nanos = frac_nanos * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return None;
            }
            for _ in digits.min(9)..9 {
                frac_nanos *= 10;
            }
        }
        let offset_secs = match b.get(i) {
            None => 0,
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
                let off = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
                if sign == b'+' { off } else { -off }
            }
            // `+0000`, as Suricata writes it.
            Some(&sign @ (b'+' | b'-')) if b.len() == i + 5 => {
                let off = num(i + 1..i + 3)? * 3600 + num(i + 3..i + 5)? * 60;
                if sign == b'+' { off } else { -off }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_secs;
        Some(Timestamp(
            scaled(secs, NANOS_PER_SEC)?.checked_add(frac_nanos)?,
        ))
    }

    /// RFC 3339 in UTC with the shortest exact fraction (none, ms, µs or ns).
    pub fn write_rfc3339(self, out: &mut String) {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let tod = secs.rem_euclid(86_400);
        let _ = write!(
            out,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            tod / 3600,
            tod / 60 % 60,
            tod % 60
        );
        if nanos != 0 {
            if nanos % 1_000_000 == 0 {
                let _ = write!(out, ".{:03}", nanos / 1_000_000);
            } else if nanos % 1_000 == 0 {
                let _ = write!(out, ".{:06}", nanos / 1_000);
            } else {
                let _ = write!(out, ".{nanos:09}");
            }
        }
        out.push('Z');
    }

    /// [`Self::write_rfc3339`] into bytes without `fmt` machinery: this runs for every record.
    pub fn write_rfc3339_bytes(self, out: &mut Vec<u8>) {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        if !(0..=9999).contains(&year) {
            let mut s = String::with_capacity(32);
            self.write_rfc3339(&mut s);
            out.extend_from_slice(s.as_bytes());
            return;
        }
        let tod = secs.rem_euclid(86_400) as u32;
        let [m0, m1] = two_digits(month as u32);
        let [d0, d1] = two_digits(day as u32);
        let [h0, h1] = two_digits(tod / 3600);
        let [n0, n1] = two_digits(tod / 60 % 60);
        let [s0, s1] = two_digits(tod % 60);
        let [y0, y1] = two_digits(year as u32 / 100);
        let [y2, y3] = two_digits(year as u32 % 100);
        out.extend_from_slice(&[
            y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, b'T', h0, h1, b':', n0, n1, b':', s0, s1,
        ]);
        if nanos != 0 {
            // The shortest exact fraction: milliseconds, microseconds or nanoseconds.
            let nanos = nanos as u32;
            let digits = if nanos.is_multiple_of(1_000_000) {
                3
            } else if nanos.is_multiple_of(1_000) {
                6
            } else {
                9
            };
            // All nine digits, two a step from the right, written whole and
            // the zeros past `digits` cut off: a copy of a fixed length
            // (in the guest a variable one is a call into the runtime).
            let mut frac = [b'.'; 10];
            let mut v = nanos;
            for at in [8, 6, 4, 2] {
                frac[at..at + 2].copy_from_slice(&two_digits(v % 100));
                v /= 100;
            }
            frac[1] = b'0' + v as u8;
            out.extend_from_slice(&frac);
            out.truncate(out.len() - (9 - digits));
        }
        out.push(b'Z');
    }

    pub fn to_rfc3339(self) -> String {
        let mut s = String::with_capacity(30);
        self.write_rfc3339(&mut s);
        s
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// "00" to "99": a time is written for every record, and this is a lookup
/// where dividing by 10 twice per field was not.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0; 2]; 100];
    let mut i = 0;
    while i < 100 {
        pairs[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    pairs
};

/// `v` (below 100) as two ASCII digits.
fn two_digits(v: u32) -> [u8; 2] {
    DIGIT_PAIRS[v as usize % 100]
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_timestamp_is_the_option_it_stands_for_in_half_the_bytes() {
        assert_eq!(std::mem::size_of::<OptionalTimestamp>(), 8);
        assert_eq!(std::mem::size_of::<Option<Timestamp>>(), 16);
        for t in [
            None,
            Some(0),
            Some(1),
            Some(-1),
            Some(i64::MAX),
            Some(i64::MIN + 1),
        ] {
            let t = t.map(Timestamp);
            let held = OptionalTimestamp::from(t);
            assert_eq!(held.get(), t);
            let saved = rmp_serde::to_vec(&held).unwrap();
            assert_eq!(saved, rmp_serde::to_vec(&t).unwrap(), "saved as the Option");
            assert_eq!(
                rmp_serde::from_slice::<OptionalTimestamp>(&saved).unwrap(),
                held
            );
        }
        // The one time it cannot hold is held a nanosecond later, not lost.
        let earliest = OptionalTimestamp::from(Timestamp(i64::MIN));
        assert_eq!(earliest.get(), Some(Timestamp(i64::MIN + 1)));
        assert_eq!(OptionalTimestamp::default().get(), None);
    }

    #[test]
    fn scaling_agrees_with_the_overflow_checked_multiply() {
        let mut edges = vec![0, 1, -1, i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1];
        for k in [60, NANOS_PER_SEC] {
            for q in [i64::MAX / k, i64::MIN / k] {
                edges.extend([q - 1, q, q + 1]);
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            edges.push((x as i64) >> (x % 64));
        }
        for k in [60, NANOS_PER_SEC] {
            for &v in &edges {
                assert_eq!(scaled(v, k), v.checked_mul(k), "{v} * {k}");
                assert_eq!(scaled_saturating(v, k), v.saturating_mul(k), "{v} * {k}");
            }
        }
    }

    #[test]
    fn parses_and_formats_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-24T14:30:00Z").unwrap();
        assert_eq!(t.0 / NANOS_PER_SEC, 1_795_530_600);
        assert_eq!(t.to_rfc3339(), "2026-11-24T14:30:00Z");
    }

    #[test]
    fn offsets_and_fractions_normalise_to_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-24T16:30:00.250+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-24T14:30:00.250Z");
        let t = Timestamp::parse_rfc3339("2026-11-24 14:30:00.123456").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-24T14:30:00.123456Z");
        let t = Timestamp::parse_rfc3339("2026-11-24T15:30:00.123456+0100").unwrap();
        assert_eq!(
            t.to_rfc3339(),
            "2026-11-24T14:30:00.123456Z",
            "Suricata's offsets"
        );
    }

    #[test]
    fn rejects_malformed_dates() {
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-24T14:30",
            "yesterday",
            "2026-11-24T14:30:00Q",
            "2026-11-24T14:30:00.",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
        assert!(Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn epoch_numbers_of_every_unit_agree() {
        let expected = Timestamp::parse_rfc3339("2026-11-24T14:30:00Z").unwrap();
        for v in [
            1_795_530_600u64,
            1_795_530_600_000,
            1_795_530_600_000_000,
            1_795_530_600_000_000_000,
        ] {
            assert_eq!(Timestamp::from_epoch_integer(v), Some(expected), "{v}");
            assert_eq!(
                Timestamp::from_epoch_number(v as f64),
                Some(expected),
                "{v}"
            );
        }
        assert_eq!(Timestamp::from_epoch_number(-1.0), None);
    }

    #[test]
    fn byte_writer_agrees_with_the_formatter() {
        for t in [
            0i64,
            1_795_530_600_000_000_000,
            1_795_530_600_250_000_000,
            1_795_530_600_000_250_000,
            1_795_530_600_000_000_007,
            1_795_530_600_999_999_999,
            -86_400_000_000_000,
        ] {
            let mut bytes = Vec::new();
            Timestamp(t).write_rfc3339_bytes(&mut bytes);
            assert_eq!(String::from_utf8(bytes).unwrap(), Timestamp(t).to_rfc3339());
        }
    }

    #[test]
    fn bytes_are_written_as_the_text_is() {
        let mut x: u64 = 3;
        for n in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Any instant from 1970 to 2255, in whole seconds, milliseconds,
            // microseconds or nanoseconds.
            let secs = (x % 9_000_000_000) as i64;
            let nanos = match n % 4 {
                0 => 0,
                1 => (x >> 40) as i64 % 1_000 * 1_000_000,
                2 => (x >> 40) as i64 % 1_000_000 * 1_000,
                _ => (x >> 34) as i64 % 1_000_000_000,
            };
            let t = Timestamp(secs * NANOS_PER_SEC + nanos);
            let mut bytes = Vec::new();
            t.write_rfc3339_bytes(&mut bytes);
            assert_eq!(String::from_utf8(bytes).unwrap(), t.to_rfc3339());
        }
    }

    #[test]
    fn round_trips_across_the_calendar() {
        for days in [-800_000i64, -1, 0, 59, 60, 365, 10_957, 20_000, 2_932_896] {
            let t = Timestamp::from_secs(days * 86_400 + 3_723);
            assert_eq!(
                Timestamp::parse_rfc3339(&t.to_rfc3339()).filter(|_| days >= -719_162),
                if days >= -719_162 { Some(t) } else { None }
            );
        }
    }
}

#[cfg(test)]
mod saved_time_tests {
    use super::*;

    #[test]
    fn times_come_back_from_a_save_and_whole_seconds_are_short() {
        let times = [
            Timestamp::from_secs(1_795_528_800),
            Timestamp(1_795_528_800_123_456_789),
            Timestamp(-1),
            Timestamp(-NANOS_PER_SEC),
            Timestamp(0),
            Timestamp(i64::MIN),
            Timestamp(i64::MAX),
            Timestamp(i64::MAX / 2 + 1),
        ];
        for t in times {
            let bytes = rmp_serde::to_vec(&t).unwrap();
            assert_eq!(
                rmp_serde::from_slice::<Timestamp>(&bytes).unwrap(),
                t,
                "{t:?}"
            );
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, t.0.to_string(), "text formats get nanoseconds");
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        }
        assert_eq!(rmp_serde::to_vec(&times[0]).unwrap().len(), 5);
        assert_eq!(rmp_serde::to_vec(&times[1]).unwrap().len(), 9);
    }
}
