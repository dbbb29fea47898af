//! One `allowed_outbound` / `[approvals]` entry: protocol, port(s), destination.

use crate::net::Proto;
use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::net::IpAddr;

/// Which transport protocol a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl Protocol {
    pub fn matches(self, proto: Proto) -> bool {
        match self {
            Protocol::Any => true,
            Protocol::Tcp => proto == Proto::Tcp,
            Protocol::Udp => proto == Proto::Udp,
            Protocol::Icmp => proto == Proto::Icmp,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Any => "any",
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "ICMP" => Ok(Protocol::Icmp),
            "ANY" => Ok(Protocol::Any),
            _ => Err(de::Error::custom(format!(
                "unknown protocol `{s}`: expected \"TCP\", \"UDP\", \"ICMP\" or \"ANY\""
            ))),
        }
    }
}

/// A port, an inclusive range, or any port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub low: u16,
    pub high: u16,
}

impl Ports {
    pub const ANY: Ports = Ports {
        low: 0,
        high: u16::MAX,
    };

    pub fn contains(self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }

    fn parse(text: &str) -> Result<Ports, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("any") {
            return Ok(Ports::ANY);
        }
        let number = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|_| format!("invalid port `{}` in `{text}`: ports are 0-65535", s.trim()))
        };
        match text.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (number(low)?, number(high)?);
                if low > high {
                    return Err(format!(
                        "port range `{text}` is backwards: write it low-high"
                    ));
                }
                Ok(Ports { low, high })
            }
            None => number(text).map(|p| Ports { low: p, high: p }),
        }
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if *self == Ports::ANY {
            f.write_str("any port")
        } else if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortsVisitor;
        impl Visitor<'_> for PortsVisitor {
            type Value = Ports;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number (443), a range (\"8000-8100\") or \"ANY\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ports, E> {
                u16::try_from(v)
                    .map(|p| Ports { low: p, high: p })
                    .map_err(|_| E::custom(format!("invalid port {v}: ports are 0-65535")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ports, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ports, E> {
                Ports::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(PortsVisitor)
    }
}

/// Where a rule lets an agent connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `ANY`: every destination.
    Any,
    /// A single address.
    Ip(IpAddr),
    /// A CIDR block.
    Net(IpNet),
    /// An exact host name (lower-case, no trailing dot).
    Name(String),
    /// `*.suffix`: exactly one label below `suffix`.
    OneLabelBelow(String),
    /// `**.suffix`: one or more labels below `suffix`.
    AnyDepthBelow(String),
}

impl Destination {
    pub fn parse(text: &str) -> Result<Destination, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("any") {
            return Ok(Destination::Any);
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Destination::Ip(ip.to_canonical()));
        }
        if t.contains('/') {
            let net: IpNet = t
                .parse()
                .map_err(|_| format!("invalid CIDR `{t}`: expected e.g. \"10.30.0.0/24\""))?;
            if net != net.trunc() {
                return Err(format!(
                    "CIDR `{t}` has host bits set: did you mean \"{}\"?",
                    net.trunc()
                ));
            }
            return Ok(Destination::Net(net));
        }
        let name = t.trim_end_matches('.').to_ascii_lowercase();
        let (make, rest): (fn(String) -> Destination, &str) =
            if let Some(rest) = name.strip_prefix("**.") {
                (Destination::AnyDepthBelow, rest)
            } else if let Some(rest) = name.strip_prefix("*.") {
                (Destination::OneLabelBelow, rest)
            } else {
                (Destination::Name, name.as_str())
            };
        validate_host_name(rest).map_err(|why| format!("invalid destination `{t}`: {why}; expected \"ANY\", an IP, a CIDR, a host name, \"*.domain\" or \"**.domain\""))?;
        Ok(make(rest.to_string()))
    }

    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            Destination::Any => true,
            Destination::Ip(own) => *own == ip,
            Destination::Net(net) => net.contains(&ip),
            _ => false,
        }
    }

    /// `name` must be normalised (lower-case, no trailing dot).
    pub fn matches_name(&self, name: &str) -> bool {
        match self {
            Destination::Any => true,
            Destination::Name(own) => own == name,
            Destination::OneLabelBelow(suffix) => {
                label_prefix(name, suffix).is_some_and(|p| !p.contains('.'))
            }
            Destination::AnyDepthBelow(suffix) => label_prefix(name, suffix).is_some(),
            Destination::Ip(_) | Destination::Net(_) => false,
        }
    }

    /// Whether a name rule: only these can be satisfied through DNS answers.
    pub fn is_name(&self) -> bool {
        matches!(
            self,
            Destination::Name(_) | Destination::OneLabelBelow(_) | Destination::AnyDepthBelow(_)
        )
    }
}

/// The labels of `name` in front of `.suffix`, if `name` lies below `suffix`.
fn label_prefix<'n>(name: &'n str, suffix: &str) -> Option<&'n str> {
    let prefix = name.strip_suffix(suffix)?.strip_suffix('.')?;
    (!prefix.is_empty()).then_some(prefix)
}

fn validate_host_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if label.contains('*') {
            return Err("a wildcard may only be the first label (\"*.\" or \"**.\")");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("names may hold only letters, digits, '-' and '_'");
        }
    }
    Ok(())
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Destination::Any => f.write_str("ANY"),
            Destination::Ip(ip) => write!(f, "{ip}"),
            Destination::Net(net) => write!(f, "{net}"),
            Destination::Name(n) => f.write_str(n),
            Destination::OneLabelBelow(s) => write!(f, "*.{s}"),
            Destination::AnyDepthBelow(s) => write!(f, "**.{s}"),
        }
    }
}

/// Written as the policy text it was parsed from, which `parse` reads back.
/// Its text, written as a name is: the same planned destination across a
/// fleet's plans is one number in a save.
impl serde::Serialize for Destination {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::name::serialize_str(&self.to_string(), s)
    }
}

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A policy file is text: its errors stay those of a string.
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            return Destination::parse(&s).map_err(de::Error::custom);
        }
        let s = crate::name::Name::deserialize(d)?;
        Destination::parse(&s).map_err(de::Error::custom)
    }
}

/// One allowed connection shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// "TCP", "UDP", "ICMP" or "ANY".
    pub protocol: Protocol,
    /// A port, "low-high", or "ANY".
    pub port: Ports,
    /// "ANY", an IP, a CIDR, a host name, "*.domain" (one label) or "**.domain" (any depth).
    pub destination: Destination,
}

impl Rule {
    /// Whether a connection to `ip:port/proto`, whose address DNS answered for
    /// `names`, fits this rule.
    pub fn allows(&self, proto: Proto, port: u16, ip: IpAddr, names: &[&str]) -> bool {
        self.protocol.matches(proto)
            && (proto == Proto::Icmp || self.port.contains(port))
            && (self.destination.matches_ip(ip)
                || (self.destination.is_name()
                    && names.iter().any(|n| self.destination.matches_name(n))))
    }
}

/// A port agents of a profile serve on (`listen = [{ protocol, port }]`):
/// their answers from it are replies to the peers that connected, not calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenPort {
    /// "TCP", "UDP" or "ANY".
    pub protocol: Protocol,
    /// A port or "low-high" (not "ANY": every port a service port would make
    /// every call look like an answer).
    pub port: Ports,
}

impl ListenPort {
    pub fn serves(&self, proto: Proto, port: u16) -> bool {
        self.protocol.matches(proto) && self.port.contains(port)
    }
}

impl fmt::Display for ListenPort {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.as_str())
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.destination,
            self.port,
            self.protocol.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(s: &str) -> Destination {
        Destination::parse(s).unwrap()
    }

    #[test]
    fn one_label_wildcard_matches_exactly_one_label() {
        let d = dest("*.wikipedia.org");
        assert!(d.matches_name("en.wikipedia.org"));
        assert!(!d.matches_name("wikipedia.org"));
        assert!(!d.matches_name("a.b.wikipedia.org"));
        assert!(!d.matches_name("evilwikipedia.org"));
    }

    #[test]
    fn any_depth_wildcard_matches_below_but_not_the_suffix_itself() {
        let d = dest("**.edu");
        assert!(d.matches_name("mit.edu"));
        assert!(d.matches_name("www.cs.mit.edu"));
        assert!(!d.matches_name("edu"));
        assert!(!d.matches_name("notedu"));
        assert!(!d.matches_name("mit.edu.evil.com"));
    }

    #[test]
    fn exact_names_are_case_and_dot_insensitive() {
        let d = dest("API.internal.example.net.");
        assert!(d.matches_name("api.internal.example.net"));
        assert!(!d.matches_name("x.api.internal.example.net"));
    }

    #[test]
    fn cidr_and_single_ip() {
        let d = dest("10.30.0.0/24");
        assert!(d.matches_ip("10.30.0.255".parse().unwrap()));
        assert!(!d.matches_ip("10.30.1.0".parse().unwrap()));
        assert!(dest("2001:db8::1").matches_ip("2001:db8::1".parse().unwrap()));
        assert!(!dest("10.0.0.1").matches_name("10.0.0.1"));
    }

    #[test]
    fn rejects_bad_destinations_with_a_reason() {
        for (bad, why) in [
            ("10.30.0.0/33", "invalid CIDR"),
            ("10.30.0.1/24", "host bits set"),
            ("a.*.example", "wildcard may only be the first label"),
            ("exa mple.com", "letters, digits"),
            ("a..b", "empty label"),
            ("", "empty name"),
        ] {
            let err = Destination::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn ports_single_range_and_any() {
        assert_eq!(
            Ports::parse("8000-8100").unwrap(),
            Ports {
                low: 8000,
                high: 8100
            }
        );
        assert!(Ports::parse("9-8").unwrap_err().contains("backwards"));
        assert!(Ports::parse("70000").unwrap_err().contains("0-65535"));
        assert_eq!(Ports::parse("any").unwrap(), Ports::ANY);
    }

    #[test]
    fn rule_checks_protocol_port_and_destination() {
        let rule = Rule {
            protocol: Protocol::Tcp,
            port: Ports {
                low: 443,
                high: 443,
            },
            destination: dest("api.internal.example.net"),
        };
        let ip: IpAddr = "93.184.216.34".parse().unwrap();
        assert!(rule.allows(Proto::Tcp, 443, ip, &["api.internal.example.net"]));
        assert!(!rule.allows(Proto::Tcp, 444, ip, &["api.internal.example.net"]));
        assert!(!rule.allows(Proto::Tcp, 442, ip, &["api.internal.example.net"]));
        assert!(!rule.allows(Proto::Udp, 443, ip, &["api.internal.example.net"]));
        assert!(!rule.allows(Proto::Tcp, 443, ip, &[]));
        assert!(!rule.allows(Proto::Tcp, 443, ip, &["internal.example.net"]));
    }
}
