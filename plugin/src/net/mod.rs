//! Network vocabulary every layer shares: transport protocols, destinations
//! as a policy names them (host patterns, CIDRs), `host:port` endpoints and
//! registered domains. A leaf: it depends on no other clawwatch module, so
//! records, policy and rules can all use it without depending on each other.

pub mod destination;
pub mod rule_set;
pub use destination::Destination;
pub use rule_set::RuleSet;

use std::fmt;
use std::net::IpAddr;

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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

    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
            Proto::Other(n) => n,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Proto::Tcp => f.write_str("tcp"),
            Proto::Udp => f.write_str("udp"),
            Proto::Icmp => f.write_str("icmp"),
            Proto::Other(n) => write!(f, "proto-{n}"),
        }
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

/// `host:port` with IPv6 bracketed, for incident keys and summaries.
pub fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
