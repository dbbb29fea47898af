//! Network vocabulary every layer shares: transport protocols, destinations
//! as a policy names them (host patterns, CIDRs), `host:port` endpoints and
//! registered domains. Below it only [`crate::text`]: records, policy and
//! rules can all use it without depending on each other.

pub mod addr;
pub mod destination;
pub mod rule_set;
pub use addr::Addr;
pub use destination::Destination;
pub use rule_set::RuleSet;

use std::fmt;
use std::net::IpAddr;

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Other(u8),
}

impl Proto {
    pub fn from_number(n: u64) -> Option<Proto> {
        Some(match n {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            1 | 58 => Proto::Icmp,
            n => Proto::Other(u8::try_from(n).ok()?),
        })
    }

    pub fn from_name(name: &str) -> Option<Proto> {
        if let Ok(n) = name.parse::<u64>() {
            return Proto::from_number(n);
        }
        // Compared in place: this runs for every flow, and an allocation per
        // flow for a lowercase copy is a waste.
        let is = |other: &str| name.eq_ignore_ascii_case(other);
        if is("tcp") {
            Some(Proto::Tcp)
        } else if is("udp") {
            Some(Proto::Udp)
        } else if ["icmp", "ipv6-icmp", "icmpv6", "icmp6"].into_iter().any(is) {
            Some(Proto::Icmp)
        } else {
            None
        }
    }

    /// A small code for saves: `Tcp` 0, `Udp` 1, `Icmp` 2, `Other(n)` 3 + n.
    pub fn code(self) -> u16 {
        match self {
            Proto::Tcp => 0,
            Proto::Udp => 1,
            Proto::Icmp => 2,
            Proto::Other(n) => 3 + u16::from(n),
        }
    }

    /// The protocol of a [`Proto::code`]; `None` past 258.
    pub fn from_code(code: u16) -> Option<Proto> {
        Some(match code {
            0 => Proto::Tcp,
            1 => Proto::Udp,
            2 => Proto::Icmp,
            n => Proto::Other(u8::try_from(n - 3).ok()?),
        })
    }

    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
            Proto::Other(n) => n,
        }
    }
}

impl Proto {
    /// Appends the protocol's name (`tcp`, `proto-47`).
    pub fn push_name(self, out: &mut String) {
        match self {
            Proto::Tcp => out.push_str("tcp"),
            Proto::Udp => out.push_str("udp"),
            Proto::Icmp => out.push_str("icmp"),
            Proto::Other(n) => {
                out.push_str("proto-");
                out.push_str(crate::text::Decimal::new(u64::from(n)).as_str());
            }
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut name = String::with_capacity(9);
        self.push_name(&mut name);
        f.write_str(&name)
    }
}

/// Saved as one small number (`Other(n)` as 3 + n), where serde would write
/// the variant's name with every heartbeat connection and planned action;
/// as its text in human-readable formats.
impl serde::Serialize for Proto {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return s.collect_str(self);
        }
        s.serialize_u16(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for Proto {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Proto, D::Error> {
        use serde::de::Error;
        if d.is_human_readable() {
            let text = <std::borrow::Cow<str>>::deserialize(d)?;
            let other = text.strip_prefix("proto-").and_then(|n| n.parse().ok());
            return (other.map(Proto::Other).or_else(|| Proto::from_name(&text)))
                .ok_or_else(|| D::Error::custom(format!("unknown protocol `{text}`")));
        }
        let code = u16::deserialize(d)?;
        Proto::from_code(code)
            .ok_or_else(|| D::Error::custom(format!("protocol code {code}, expected 0 to 258")))
    }
}

/// The registered domain of a (normalised) name: the public suffix plus one
/// label, by the public suffix list (private section included, so each
/// `*.cloudfront.net` host is a domain of its own). `None` for bare suffixes,
/// addresses and reverse-lookup names.
pub fn registered_domain(name: &str) -> Option<&str> {
    if name.parse::<IpAddr>().is_ok() || name.ends_with(".arpa") {
        return None;
    }
    psl::domain_str(name)
}

/// An address in text, as `str::parse::<IpAddr>` reads it. Nearly every
/// address a record carries is a plain dotted quad, which is read here in one
/// pass; anything else (IPv6, or a quad std would refuse) goes to std.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    parse_dotted_quad(text.as_bytes())
        .map(IpAddr::from)
        .or_else(|| text.parse().ok())
}

/// Four decimal octets of one to three digits, no leading zero, at most 255,
/// separated by dots, nothing else; `None` for anything else, which is left
/// to std (so its answer, not this one, decides an unusual text). No loop
/// per digit: in the guest every loop entered is checked for interruption.
fn parse_dotted_quad(text: &[u8]) -> Option<[u8; 4]> {
    let (a, i) = octet_at(text, 0)?;
    let (b, i) = octet_at(text, dot_after(text, i)?)?;
    let (c, i) = octet_at(text, dot_after(text, i)?)?;
    let (d, i) = octet_at(text, dot_after(text, i)?)?;
    (i == text.len()).then_some([a, b, c, d])
}

/// Past the dot at `i`.
#[inline(always)]
fn dot_after(text: &[u8], i: usize) -> Option<usize> {
    (text.get(i) == Some(&b'.')).then_some(i + 1)
}

/// The octet of one to three digits at `i` and where it ends.
#[inline(always)]
fn octet_at(text: &[u8], i: usize) -> Option<(u8, usize)> {
    let digit = |k: usize| {
        text.get(i + k)
            .map(|b| b.wrapping_sub(b'0'))
            .filter(|&d| d <= 9)
    };
    let first = digit(0)?;
    let Some(second) = digit(1) else {
        return Some((first, i + 1));
    };
    if first == 0 {
        return None; // a leading zero
    }
    let Some(third) = digit(2) else {
        return Some((first * 10 + second, i + 2));
    };
    let value = u32::from(first) * 100 + u32::from(second) * 10 + u32::from(third);
    if value > 255 || digit(3).is_some() {
        return None;
    }
    Some((value as u8, i + 3))
}

/// `host:port` with IPv6 bracketed, for incident keys and summaries.
pub fn endpoint(host: &str, port: u16) -> String {
    let mut out = String::with_capacity(host.len() + 8);
    push_endpoint(&mut out, host, port);
    out
}

/// Appends [`endpoint`]`(host, port)`.
pub fn push_endpoint(out: &mut String, host: &str, port: u16) {
    let bracketed = host.contains(':');
    if bracketed {
        out.push('[');
    }
    out.push_str(host);
    if bracketed {
        out.push(']');
    }
    out.push(':');
    out.push_str(crate::text::Decimal::new(u64::from(port)).as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_protocols_are_written_as_summaries_show_them() {
        assert_eq!(endpoint("api.example.net", 443), "api.example.net:443");
        assert_eq!(endpoint("10.0.0.1", 0), "10.0.0.1:0");
        assert_eq!(endpoint("2001:db8::7", 65535), "[2001:db8::7]:65535");
        let names: Vec<String> = [Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Other(47)]
            .iter()
            .map(Proto::to_string)
            .collect();
        assert_eq!(names, ["tcp", "udp", "icmp", "proto-47"]);
    }

    /// A protocol is one byte in a save (a code up to 258 for `Other`) and
    /// its text in JSON; every value comes back, and a code past 258 is refused.
    #[test]
    fn a_protocol_is_saved_as_a_small_number_and_read_back() {
        let all = [
            Proto::Tcp,
            Proto::Udp,
            Proto::Icmp,
            Proto::Other(0),
            Proto::Other(255),
        ];
        for proto in all {
            let bytes = rmp_serde::to_vec(&proto).unwrap();
            assert!(bytes.len() <= 3, "{proto:?}: {} bytes", bytes.len());
            assert_eq!(rmp_serde::from_slice::<Proto>(&bytes).unwrap(), proto);
            let json = serde_json::to_string(&proto).unwrap();
            assert_eq!(
                serde_json::from_str::<Proto>(&json).unwrap(),
                proto,
                "{json}"
            );
        }
        assert_eq!(rmp_serde::to_vec(&Proto::Tcp).unwrap(), [0]);
        let err = rmp_serde::from_slice::<Proto>(&rmp_serde::to_vec(&259u16).unwrap());
        assert!(err.unwrap_err().to_string().contains("protocol code 259"));
    }

    #[test]
    fn addresses_read_as_std_reads_them() {
        for text in [
            "10.20.0.15",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.",
            "1.2.3.4.5",
            "1..3.4",
            " 1.2.3.4",
            "1.2.3.4 ",
            "1234.1.1.1",
            "2001:db8::7",
            "::ffff:10.0.0.1",
            "",
            "a.b.c.d",
            "1.2.3.-4",
            "1.2.3.4\0",
        ] {
            assert_eq!(parse_ip(text), text.parse().ok(), "{text:?}");
        }
        // As std reads it, and a quad std reads is read by the fast path, not
        // left to std. True for a quad.
        let reads_as_std = |text: &str| {
            assert_eq!(parse_ip(text), text.parse().ok(), "{text:?}");
            let quad = text.parse::<std::net::Ipv4Addr>().ok();
            if let Some(quad) = quad {
                assert_eq!(
                    parse_dotted_quad(text.as_bytes()),
                    Some(quad.octets()),
                    "{text:?}"
                );
            }
            quad.is_some()
        };
        // Random texts of the characters addresses are made of.
        let mut x: u64 = 99;
        let alphabet = b"0123456789.:af";
        let mut quads = 0;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 18) as usize;
            let text: String = (0..len)
                .map(|k| {
                    let pick = (x >> (k * 3 % 60)) as usize ^ k;
                    // Mostly digits and dots, so many are near-quads.
                    alphabet[pick % if x % 5 == 0 { alphabet.len() } else { 11 }] as char
                })
                .collect();
            quads += usize::from(reads_as_std(&text));
        }
        // Every quad of octets spelt as addresses are, and as they are not.
        let parts = [
            "0", "1", "9", "10", "25", "99", "100", "199", "200", "249", "250", "255", "256",
            "300", "999", "01", "001", "1000", "",
        ];
        for a in parts {
            for b in parts {
                for c in parts {
                    for d in parts {
                        let text = format!("{a}.{b}.{c}.{d}");
                        quads += usize::from(reads_as_std(&text));
                    }
                }
            }
        }
        assert!(quads > 10_000, "only {quads} quads read");
        assert!(
            parse_dotted_quad(b"93.184.216.34").is_some(),
            "the fast path reads quads"
        );
    }
}
