//! Varints and byte strings for the packed parts of an agent's activity.

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
pub(super) fn deserialize<'de, D: Deserializer<'de>, T>(
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
