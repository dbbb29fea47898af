//! `dns.foreign_resolver`: DNS that bypasses the corporate resolvers: plain DNS
//! (53/udp+tcp), DNS over TLS/QUIC (853), or DNS over HTTPS to a well-known
//! public resolver (443), to anything not in `corp_resolvers`.
//!
//! Active only when `corp_resolvers` is set: without it there is no telling a
//! foreign resolver from a corporate one.

use super::{Detector, Finding, Observed, RuleInfo, Seen, Severity, Subject, endpoint};
use crate::policy::Monitor;
use crate::record::{Flow, Proto};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const RULE: RuleInfo = RuleInfo {
    id: "dns.foreign_resolver",
    description: "DNS (53/udp+tcp, DoT 853, DoH to known public resolvers) not to a corporate resolver.",
    severity: Severity::High,
    tags: &["dns", "exfiltration", "network"],
};

/// Public resolvers that answer DNS over HTTPS on 443.
const PUBLIC_DOH_RESOLVERS: &[IpAddr] = &[
    v4(8, 8, 8, 8),
    v4(8, 8, 4, 4),
    v4(1, 1, 1, 1),
    v4(1, 0, 0, 1),
    v4(9, 9, 9, 9),
    v4(149, 112, 112, 112),
    v4(208, 67, 222, 222),
    v4(208, 67, 220, 220),
    v4(94, 140, 14, 14),
    v4(94, 140, 15, 15),
    v4(185, 228, 168, 9),
    v4(76, 76, 2, 0),
    v4(45, 90, 28, 0),
    v6([0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888]),
    v6([0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8844]),
    v6([0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111]),
    v6([0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1001]),
    v6([0x2620, 0xfe, 0, 0, 0, 0, 0, 0xfe]),
    v6([0x2620, 0xfe, 0, 0, 0, 0, 0, 0x9]),
];

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const fn v6(s: [u16; 8]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
    ))
}

fn is_public_doh(ip: IpAddr) -> bool {
    PUBLIC_DOH_RESOLVERS.contains(&ip)
}

fn is_dns_port(flow: &Flow) -> bool {
    match (flow.proto, flow.dst_port) {
        (Proto::Tcp | Proto::Udp, 53 | 853) => true,
        (Proto::Tcp | Proto::Udp, 443) => is_public_doh(flow.dst),
        _ => false,
    }
}

fn corp_list(monitor: &Monitor) -> String {
    monitor
        .corp_resolvers
        .iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An outbound flow that carries DNS to a non-corporate resolver.
pub fn check_flow(flow: &Flow, subject: &Subject, monitor: &Monitor) -> Option<Finding> {
    if monitor.corp_resolvers.is_empty() || !is_dns_port(flow) || monitor.is_corp_resolver(flow.dst)
    {
        return None;
    }
    let kind = match flow.dst_port {
        53 => "DNS",
        853 => "DNS over TLS",
        _ => "DNS over HTTPS",
    };
    let resolver = flow.dst.to_string();
    Some(Finding::new(
        &RULE,
        subject,
        Some(&resolver),
        format!(
            "{subject} sent {kind} to {}/{}, not a corporate resolver ({})",
            endpoint(&resolver, flow.dst_port),
            flow.proto,
            corp_list(monitor)
        ),
    ))
}

/// Runs on the DNS an agent (or an address in an agent subnet) sends, by flow or resolver log.
pub struct ForeignResolver;

impl Detector for ForeignResolver {
    fn rule(&self) -> &'static RuleInfo {
        &RULE
    }

    fn inspect(&self, seen: &Seen) -> Option<Finding> {
        match seen.subject {
            Subject::Agent(_) => {}
            Subject::Address(ip) if seen.monitor.in_agent_subnet(ip) => {}
            Subject::Address(_) | Subject::Log(_) => return None,
        }
        match seen.event {
            Observed::Flow { flow, .. } => check_flow(flow, &seen.subject, seen.monitor),
            Observed::Dns(q) => check_query(&q.qname, q.resolver, &seen.subject, seen.monitor),
            Observed::ProxyCall { .. } => None,
        }
    }
}

/// A resolver log line whose resolver is not corporate.
pub fn check_query(
    qname: &str,
    resolver: Option<IpAddr>,
    subject: &Subject,
    monitor: &Monitor,
) -> Option<Finding> {
    let resolver = resolver?;
    if monitor.corp_resolvers.is_empty() || monitor.is_corp_resolver(resolver) {
        return None;
    }
    let resolver = resolver.to_string();
    Some(Finding::new(
        &RULE,
        subject,
        Some(&resolver),
        format!(
            "{subject} resolved {qname} through {resolver}, not a corporate resolver ({})",
            corp_list(monitor)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, flow, policy};
    use super::*;

    #[test]
    fn fires_on_plain_dns_dot_and_doh_to_foreign_resolvers() {
        let p = policy();
        let a = agent("data_collector_v1");
        let s = Subject::Agent(&a);
        let f = check_flow(
            &flow("10.20.0.15", "8.8.8.8", 53, Proto::Udp),
            &s,
            &p.monitor,
        )
        .expect("plain DNS");
        assert_eq!(f.incident, "0x8a3f/dns.foreign_resolver/8.8.8.8");
        assert_eq!(
            f.summary,
            "data_collector_v1 0x8a3f sent DNS to 8.8.8.8:53/udp, not a corporate resolver (10.0.0.53)"
        );
        assert!(
            check_flow(
                &flow("10.20.0.15", "9.9.9.9", 853, Proto::Tcp),
                &s,
                &p.monitor
            )
            .is_some()
        );
        assert!(
            check_flow(
                &flow("10.20.0.15", "1.1.1.1", 443, Proto::Tcp),
                &s,
                &p.monitor
            )
            .unwrap()
            .summary
            .contains("DNS over HTTPS")
        );
        assert!(
            check_query(
                "x.example",
                Some("8.8.4.4".parse().unwrap()),
                &s,
                &p.monitor
            )
            .is_some()
        );
    }

    #[test]
    fn near_misses_do_not_fire() {
        let p = policy();
        let a = agent("data_collector_v1");
        let s = Subject::Agent(&a);
        assert!(
            check_flow(
                &flow("10.20.0.15", "10.0.0.53", 53, Proto::Udp),
                &s,
                &p.monitor
            )
            .is_none(),
            "corporate resolver"
        );
        assert!(
            check_flow(
                &flow("10.20.0.15", "8.8.8.8", 54, Proto::Udp),
                &s,
                &p.monitor
            )
            .is_none(),
            "not a DNS port"
        );
        assert!(
            check_flow(
                &flow("10.20.0.15", "93.184.216.34", 443, Proto::Tcp),
                &s,
                &p.monitor
            )
            .is_none(),
            "HTTPS to a non-resolver"
        );
        assert!(
            check_query(
                "x.example",
                Some("10.0.0.53".parse().unwrap()),
                &s,
                &p.monitor
            )
            .is_none()
        );
        assert!(
            check_query("x.example", None, &s, &p.monitor).is_none(),
            "resolver unknown"
        );
        let open = crate::policy::Policy::from_toml("").unwrap();
        assert!(
            check_flow(
                &flow("10.20.0.15", "8.8.8.8", 53, Proto::Udp),
                &s,
                &open.monitor
            )
            .is_none(),
            "no corp_resolvers set"
        );
    }
}
