//! An address as the state saves it.
//!
//! serde writes an `IpAddr` to msgpack as `{"V4": [a, b, c, d]}`, 9 to 13
//! bytes for four; addresses key the DNS answers, the registry's bindings
//! and the rate windows, several per agent. [`Addr`] writes its 4 or 16
//! bytes as one binary (6 or 18 bytes), and text where the format is
//! human-readable.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An `IpAddr` saved as its bytes, and hashed as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Addr(pub IpAddr);

/// `IpAddr` hashes its octets in memory order: on a little-endian machine the
/// first octets, which a subnet's addresses share, land in the low bits.
/// FxHash on a 32-bit target (the guest) draws the tag that tells a table's
/// entries apart from those low bits, so the addresses of a fleet all had one
/// tag and each lookup compared keys with every entry it probed (8.7 per DNS
/// lookup, measured). As a number, the host part is the low bits.
impl std::hash::Hash for Addr {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match self.0 {
            IpAddr::V4(a) => h.write_u32(a.to_bits()),
            IpAddr::V6(a) => h.write_u128(a.to_bits()),
        }
    }
}

impl Serialize for Addr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return self.0.serialize(s);
        }
        match self.0 {
            IpAddr::V4(v4) => s.serialize_bytes(&v4.octets()),
            IpAddr::V6(v6) => s.serialize_bytes(&v6.octets()),
        }
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Addr, D::Error> {
        if d.is_human_readable() {
            return IpAddr::deserialize(d).map(Addr);
        }
        d.deserialize_bytes(AddrVisitor)
    }
}

struct AddrVisitor;

impl Visitor<'_> for AddrVisitor {
    type Value = Addr;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an address as 4 or 16 bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Addr, E> {
        from_octets(v)
            .map(Addr)
            .ok_or_else(|| E::invalid_length(v.len(), &self))
    }
}

/// The address of 4 or 16 bytes; `None` for any other length.
pub fn from_octets(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else {
        <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
    }
}

/// For a `Vec<IpAddr>` field saved as [`Addr`]s.
pub mod list {
    use super::Addr;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::net::IpAddr;

    pub fn serialize<S: Serializer>(ips: &[IpAddr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ips.iter().map(|&ip| Addr(ip)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
        Ok(Vec::<Addr>::deserialize(d)?
            .into_iter()
            .map(|a| a.0)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FxHash as it runs on a 32-bit target (the guest): each word is added
    /// and multiplied; the table's 7-bit tag is the top of the result rotated.
    struct Fx32(u32);

    impl std::hash::Hasher for Fx32 {
        fn write(&mut self, bytes: &[u8]) {
            for word in bytes.chunks(4) {
                let mut w = [0; 4];
                w[..word.len()].copy_from_slice(word);
                self.write_u32(u32::from_le_bytes(w));
            }
        }
        fn write_u32(&mut self, i: u32) {
            self.0 = self.0.wrapping_add(i).wrapping_mul(0x93d7_65dd);
        }
        fn write_u64(&mut self, i: u64) {
            self.write_u32(i as u32);
            self.write_u32((i >> 32) as u32);
        }
        fn write_u128(&mut self, i: u128) {
            self.write_u64(i as u64);
            self.write_u64((i >> 64) as u64);
        }
        fn finish(&self) -> u64 {
            u64::from(self.0.rotate_left(15))
        }
    }

    fn tag(key: &impl std::hash::Hash) -> u64 {
        let mut h = Fx32(0);
        key.hash(&mut h);
        std::hash::Hasher::finish(&h) >> 25
    }

    /// A fleet's addresses (one /16, and one /64) and the pairs the DNS
    /// answers are keyed by get many tags, not one: with one, every lookup
    /// compares its key with every entry it probes.
    #[test]
    fn a_fleets_addresses_get_many_table_tags_on_a_32_bit_target() {
        let v4: Vec<Addr> = (0..2000u32)
            .map(|i| Addr(Ipv4Addr::new(10, 20, (i / 250) as u8, (i % 250 + 2) as u8).into()))
            .collect();
        let v6: Vec<Addr> = (0..2000u16)
            .map(|i| Addr(Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0, 0, i / 256, i % 256).into()))
            .collect();
        let resolver = Addr(Ipv4Addr::new(93, 184, 216, 34).into());
        let tags = |keys: &mut dyn Iterator<Item = u64>| {
            keys.collect::<std::collections::BTreeSet<u64>>().len()
        };
        assert!(tags(&mut v4.iter().map(tag)) >= 100, "v4");
        assert!(tags(&mut v6.iter().map(tag)) >= 100, "v6");
        assert!(
            tags(&mut v4.iter().map(|a| tag(&(*a, resolver)))) >= 100,
            "pairs"
        );
    }

    #[test]
    fn an_address_is_saved_as_its_bytes_and_read_back() {
        for (text, saved) in [("93.184.216.34", 6), ("2001:db8::1", 18), ("0.0.0.0", 6)] {
            let addr = Addr(text.parse().unwrap());
            let bytes = rmp_serde::to_vec(&addr).unwrap();
            assert_eq!(bytes.len(), saved, "{text}");
            let plain = rmp_serde::to_vec(&addr.0).unwrap();
            assert!(
                plain.len() > bytes.len(),
                "{text}: {} bytes plain",
                plain.len()
            );
            assert_eq!(rmp_serde::from_slice::<Addr>(&bytes).unwrap(), addr);
            // JSON keeps the text.
            let json = serde_json::to_string(&addr).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Addr>(&json).unwrap(), addr);
        }
    }

    #[test]
    fn bytes_of_another_length_are_refused_naming_what_was_expected() {
        let five = rmp_serde::to_vec(&serde_bytes_of(&[1, 2, 3, 4, 5])).unwrap();
        let err = rmp_serde::from_slice::<Addr>(&five)
            .unwrap_err()
            .to_string();
        assert!(err.contains("4 or 16 bytes"), "{err}");
    }

    fn serde_bytes_of(bytes: &[u8]) -> impl Serialize + '_ {
        struct Bytes<'a>(&'a [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        Bytes(bytes)
    }
}
