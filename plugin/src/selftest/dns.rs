//! What the agent resolves: through a foreign resolver, a tunnel's many long
//! unique names, generated random-looking domains.

use super::agent::TestAgent;
use super::{Expect, Trial};
use crate::net::Proto;
use std::net::{IpAddr, Ipv4Addr};

pub(super) fn trials(agent: &TestAgent, out: &mut Vec<Trial>) {
    // DNS to a resolver that is not the corporate one.
    let foreign = IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8));
    out.push(agent.trial(
        "foreign_resolver",
        format!("DNS to {foreign} instead of a corporate resolver"),
        Expect::Alert,
        &["dns.foreign_resolver"],
        |rec| {
            agent.dns_via(rec, 10, "selftest.example.com", "A", None, foreign);
            agent.flow(rec, 10, foreign, 53, Proto::Udp);
            10
        },
    ));

    // Tunnelling: many long unique subdomains of one domain.
    out.push(agent.trial(
        "dns_tunnelling",
        "40 queries for unique 32-character subdomains of one domain".into(),
        Expect::Alert,
        &["dns.tunneling"],
        |rec| {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for i in 0..40 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let name = format!("{x:016x}{:016x}.t.selftest-tunnel.org", x.rotate_left(17));
                agent.dns_via(rec, 10 + i, &name, "TXT", None, agent.resolver);
            }
            50
        },
    ));

    // Random-looking names (a domain generation algorithm).
    out.push(agent.trial(
        "random_names",
        "queries for generated domains (xq7zk9w3v.com-style)".into(),
        Expect::Alert,
        &["dns.high_entropy"],
        |rec| {
            for (i, name) in ["xq7zk9w3v.com", "k8vz2qx7r.net", "zr4kq8xv2.org"]
                .iter()
                .enumerate()
            {
                agent.dns(rec, 10 + i as i64, name, None);
            }
            13
        },
    ));
}
