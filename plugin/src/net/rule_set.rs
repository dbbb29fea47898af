//! A list of policy rules (`allowed_outbound`, `[approvals]`) compiled once
//! into lookup tables, so finding the first rule that admits a connection
//! costs a few lookups however many rules a policy lists: exact names and
//! addresses by hash, `*.`/`**.` patterns by the name's suffixes, CIDRs by
//! one table per prefix length.
//!
//! Policy order still decides: the note names the first admitting rule, so
//! the lookups collect candidates by position and the lowest wins. Short
//! lists, where trying each rule is cheaper than hashing, are tried in order.

use super::destination::{Destination, Rule};
use super::{Addr, Proto};
use ipnet::IpNet;
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::ops::Deref;

/// Lists up to this long are tried rule by rule.
const INDEX_FROM_RULES: usize = 8;

/// Rules in policy order, with their lookup tables.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    index: Option<Box<Index>>,
}

/// Rule positions by what their destination matches; each list ascending.
#[derive(Debug, Clone, Default)]
struct Index {
    any: Vec<u32>,
    /// Keyed by [`Addr`] for its hash (a fleet's addresses share their first octets).
    addresses: FxHashMap<Addr, Vec<u32>>,
    /// One table per prefix length in use, keyed by the network's address.
    networks: Vec<(u8, FxHashMap<Addr, Vec<u32>>)>,
    names: FxHashMap<Box<str>, Vec<u32>>,
    /// `*.suffix`, by suffix.
    one_label_below: FxHashMap<Box<str>, Vec<u32>>,
    /// `**.suffix`, by suffix.
    any_depth_below: FxHashMap<Box<str>, Vec<u32>>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let index = (rules.len() > INDEX_FROM_RULES).then(|| Box::new(Index::build(&rules)));
        RuleSet { rules, index }
    }

    /// The first rule, in policy order, that admits a connection to
    /// `ip:port/proto` whose address DNS answered for `names` (normalised).
    pub fn first_allowing(
        &self,
        proto: Proto,
        port: u16,
        ip: IpAddr,
        names: &[&str],
    ) -> Option<&Rule> {
        match &self.index {
            Some(index) => index.first_allowing(&self.rules, proto, port, ip, names),
            None => self.first_allowing_in_order(proto, port, ip, names),
        }
    }

    /// [`RuleSet::first_allowing`] by trying each rule in turn, without the
    /// tables: the reference they are tested and measured against.
    pub fn first_allowing_in_order(
        &self,
        proto: Proto,
        port: u16,
        ip: IpAddr,
        names: &[&str],
    ) -> Option<&Rule> {
        self.rules.iter().find(|r| r.allows(proto, port, ip, names))
    }
}

impl From<Vec<Rule>> for RuleSet {
    fn from(rules: Vec<Rule>) -> RuleSet {
        RuleSet::new(rules)
    }
}

impl Deref for RuleSet {
    type Target = [Rule];
    fn deref(&self) -> &[Rule] {
        &self.rules
    }
}

impl PartialEq for RuleSet {
    fn eq(&self, other: &RuleSet) -> bool {
        self.rules == other.rules
    }
}

impl Index {
    fn build(rules: &[Rule]) -> Index {
        let mut index = Index::default();
        for (position, rule) in rules.iter().enumerate() {
            let position = position as u32;
            let list = match &rule.destination {
                Destination::Any => &mut index.any,
                Destination::Ip(ip) => index.addresses.entry(Addr(*ip)).or_default(),
                Destination::Net(net) => {
                    let len = net.prefix_len();
                    let table = match index.networks.iter().position(|(l, _)| *l == len) {
                        Some(i) => &mut index.networks[i].1,
                        None => {
                            index.networks.push((len, FxHashMap::default()));
                            &mut index.networks.last_mut().expect("just pushed").1
                        }
                    };
                    table.entry(Addr(net.network())).or_default()
                }
                Destination::Name(name) => index.names.entry(name.as_str().into()).or_default(),
                Destination::OneLabelBelow(suffix) => index
                    .one_label_below
                    .entry(suffix.as_str().into())
                    .or_default(),
                Destination::AnyDepthBelow(suffix) => index
                    .any_depth_below
                    .entry(suffix.as_str().into())
                    .or_default(),
            };
            list.push(position);
        }
        index
    }

    fn first_allowing<'r>(
        &self,
        rules: &'r [Rule],
        proto: Proto,
        port: u16,
        ip: IpAddr,
        names: &[&str],
    ) -> Option<&'r Rule> {
        let mut best = u32::MAX;
        // The first rule of a list (all of whose destinations match) that
        // also admits the protocol and port, if it comes before the best so far.
        let mut consider = |list: Option<&Vec<u32>>| {
            for &position in list.into_iter().flatten() {
                if position >= best {
                    break;
                }
                let rule = &rules[position as usize];
                if rule.protocol.matches(proto)
                    && (proto == Proto::Icmp || rule.port.contains(port))
                {
                    best = position;
                    break;
                }
            }
        };
        consider(Some(&self.any));
        consider(self.addresses.get(&Addr(ip)));
        for (len, table) in &self.networks {
            if let Ok(net) = IpNet::new(ip, *len) {
                consider(table.get(&Addr(net.network())));
            }
        }
        for name in names {
            consider(self.names.get(*name));
            let mut rest = *name;
            let mut first = true;
            // Every suffix below a label boundary, longest first.
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if first {
                    consider(self.one_label_below.get(rest));
                    first = false;
                }
                consider(self.any_depth_below.get(rest));
            }
        }
        rules.get(best as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        let (destination, rest) = text.rsplit_once(':').unwrap();
        let (port, protocol) = rest.split_once('/').unwrap();
        let toml = format!(
            "protocol = \"{protocol}\"\nport = \"{port}\"\ndestination = \"{destination}\"\n"
        );
        toml::from_str(&toml).unwrap()
    }

    /// A small deterministic generator: the same cases on every run.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    const DESTINATIONS: &[&str] = &[
        "ANY",
        "api.example.com",
        "example.com",
        "*.example.com",
        "**.example.com",
        "**.com",
        "*.cdn.example.net",
        "**.cdn.example.net",
        "cdn.example.net",
        "a.cdn.example.net",
        "10.30.0.7",
        "10.30.0.0/24",
        "10.30.0.0/16",
        "10.0.0.0/8",
        "93.184.216.34",
        "2001:db8::1",
        "2001:db8::/32",
    ];
    const NAMES: &[&str] = &[
        "api.example.com",
        "example.com",
        "deep.api.example.com",
        "x.cdn.example.net",
        "y.x.cdn.example.net",
        "cdn.example.net",
        "a.cdn.example.net",
        "other.org",
        "com",
    ];
    const ADDRESSES: &[&str] = &[
        "10.30.0.7",
        "10.30.0.8",
        "10.30.1.1",
        "10.99.0.1",
        "93.184.216.34",
        "192.0.2.1",
        "2001:db8::1",
        "2001:db8:1::5",
        "2001:dead::1",
    ];

    /// The tables find exactly the rule trying each rule in order finds, on
    /// thousands of random rule lists and connections (including several
    /// rules for one destination on different ports, where order decides).
    #[test]
    fn the_lookup_tables_find_the_same_first_rule_as_trying_each_in_order() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut indexed = 0;
        for _ in 0..2000 {
            let count = 1 + rng.below(30);
            let rules: Vec<Rule> = (0..count)
                .map(|_| {
                    let port = rng.pick(&["443", "80", "8000-8100", "ANY", "53"]);
                    let proto = rng.pick(&["TCP", "UDP", "ANY", "ICMP"]);
                    rule(&format!("{}:{port}/{proto}", rng.pick(DESTINATIONS)))
                })
                .collect();
            let set = RuleSet::new(rules);
            let index = Index::build(&set);
            indexed += usize::from(set.index.is_some());
            for _ in 0..50 {
                let ip: IpAddr = rng.pick(ADDRESSES).parse().unwrap();
                let names: Vec<&str> = (0..rng.below(3)).map(|_| rng.pick(NAMES)).collect();
                let port = [443, 80, 8050, 53, 9999][rng.below(5)];
                let proto = [Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Other(47)][rng.below(4)];
                let expected = set.first_allowing_in_order(proto, port, ip, &names);
                let found = index.first_allowing(&set, proto, port, ip, &names);
                assert_eq!(
                    found.map(|r| r.to_string()),
                    expected.map(|r| r.to_string()),
                    "{proto:?} {ip}:{port} named {names:?} in {:?}",
                    set.rules
                );
                // Same rule, not just an equal one: the position matters.
                assert_eq!(
                    found.map(|r| r as *const Rule),
                    expected.map(|r| r as *const Rule)
                );
                assert_eq!(
                    set.first_allowing(proto, port, ip, &names)
                        .map(|r| r as *const Rule),
                    expected.map(|r| r as *const Rule)
                );
            }
        }
        assert!(indexed > 1000, "long lists use the tables: {indexed}");
    }

    #[test]
    fn a_wildcard_needs_a_label_below_its_suffix() {
        let rules: Vec<Rule> = ["*.example.com:443/TCP", "**.example.net:443/TCP"]
            .iter()
            .map(|t| rule(t))
            .cycle()
            .take(INDEX_FROM_RULES + 2)
            .collect();
        let set = RuleSet::new(rules);
        assert!(set.index.is_some());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let allows = |name: &str| set.first_allowing(Proto::Tcp, 443, ip, &[name]).is_some();
        assert!(allows("api.example.com"));
        assert!(!allows("example.com"), "the suffix itself is not below it");
        assert!(!allows("deep.api.example.com"), "`*.` is exactly one label");
        assert!(allows("deep.api.example.net"));
        assert!(!allows("example.net"));
        assert!(
            !allows("badexample.net"),
            "a suffix only at a label boundary"
        );
    }
}
