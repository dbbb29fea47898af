//! `dns.high_entropy`: an agent resolves random-looking names: labels whose
//! letters follow no word's pattern (scored against a letter-bigram model of
//! English and host-name words), that interleave letters and digits like a
//! generator (`data-xy78z4`), or that are long and high-entropy (encoded data).
//!
//! CDN and cloud hosts look random too (`d3k8x9q2a7b1c0.cloudfront.net`), so a
//! name the agent is allowed to reach (its `allowed_outbound`, the approvals
//! allow-list) is never judged. One incident per (agent, registered domain).

use super::letter_bigrams::LOG10_P;
use super::{Finding, RuleInfo, Severity, Subject, registered_domain};
use crate::registry::Agent;

pub const RULE: RuleInfo = RuleInfo {
    id: "dns.high_entropy",
    description: "An agent resolves random-looking names (entropy and letter n-gram score, per registered domain).",
    severity: Severity::Medium,
    tags: &["dns", "dga"],
};

/// Mean log10 probability per letter transition below which a letters-only
/// token reads as random. Host-name words score about -0.9 to -1.8; random
/// letters -2.1 to -2.8.
const BIGRAM_THRESHOLD: f32 = -2.0;
/// Letters-only tokens shorter than this are too short to judge.
const MIN_LETTERS: usize = 7;
/// Letter/digit switches that mark a generated token (`xy78z4` has three).
const MIN_SWITCHES: usize = 3;
/// A label this long with this much Shannon entropy (bits per char) is encoded data.
const LONG_LABEL: usize = 24;
const LONG_LABEL_ENTROPY: f64 = 3.8;

fn bigram_score(letters: &str) -> f32 {
    let index = |c: u8| usize::from(c - b'a' + 1);
    let mut prev = 0;
    let mut total = 0.0;
    for c in letters.bytes() {
        total += LOG10_P[prev][index(c)];
        prev = index(c);
    }
    total += LOG10_P[prev][0];
    total / (letters.len() + 1) as f32
}

fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| f64::from(c) / n)
        .map(|p| -p * p.log2())
        .sum()
}

/// Why a label looks machine-made, if it does.
pub fn random_label(label: &str) -> Option<&'static str> {
    if label.len() >= LONG_LABEL && entropy(label) >= LONG_LABEL_ENTROPY {
        return Some("a long high-entropy label");
    }
    for token in label.split(['-', '_']) {
        let switches = token
            .as_bytes()
            .windows(2)
            .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
            .count();
        if token.len() >= 6 && switches >= MIN_SWITCHES {
            return Some("letters and digits interleaved like a generated name");
        }
        if token.len() >= MIN_LETTERS
            && token.bytes().all(|b| b.is_ascii_lowercase())
            && bigram_score(token) < BIGRAM_THRESHOLD
        {
            return Some("letters in an order no word has");
        }
    }
    None
}

/// Judges one name an agent resolved; `allowed` says whether the agent may
/// reach it (then it is not judged at all).
pub fn check(agent: &Agent, qname: &str, allowed: bool) -> Option<Finding> {
    check_in(agent, qname, registered_domain(qname)?, allowed)
}

/// [`check`] for a name whose registered domain the caller already knows.
pub fn check_in(agent: &Agent, qname: &str, domain: &str, allowed: bool) -> Option<Finding> {
    if allowed {
        return None;
    }
    // The labels the owner chose: everything left of the public suffix.
    let suffix_len = domain
        .split_once('.')
        .map_or(0, |(_, suffix)| suffix.len() + 1);
    let chosen = &qname[..qname.len() - suffix_len];
    let (label, why) = chosen
        .split('.')
        .find_map(|l| random_label(l).map(|why| (l, why)))?;
    let subject = Subject::Agent(agent);
    Some(Finding::new(
        &RULE,
        &subject,
        Some(domain),
        format!("{subject} resolved {qname}, whose label \"{label}\" looks random ({why})"),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::agent;
    use super::*;

    #[test]
    fn generated_and_dga_like_names_fire() {
        let a = agent("data_collector_v1");
        for (name, domain) in [
            ("data-xy78z4.example.com", "example.com"),
            ("xkqjzvbwpl.com", "xkqjzvbwpl.com"),
            ("qwxzvkjhtr.net", "qwxzvkjhtr.net"),
            (
                "mzxw6ytboi4dsnrrgq3tmmjsgiydanjt.exfil.example.org",
                "example.org",
            ),
        ] {
            let f = check(&a, name, false).unwrap_or_else(|| panic!("{name} must fire"));
            assert_eq!(f.incident, format!("0x8a3f/dns.high_entropy/{domain}"));
        }
    }

    #[test]
    fn cdn_and_cloud_names_do_not_fire_when_allowed() {
        let a = agent("data_collector_v1");
        for name in [
            "d3k8x9q2a7b1c0.cloudfront.net",
            "my-bucket-7f3a9c1e.s3.amazonaws.com",
            "internal-web-1234567890.us-east-1.elb.amazonaws.com",
        ] {
            assert!(check(&a, name, true).is_none(), "{name}");
        }
        assert!(
            check(&a, "d3k8x9q2a7b1c0.cloudfront.net", false).is_some(),
            "the same name, not allowed, is judged"
        );
    }

    #[test]
    fn ordinary_names_are_near_misses() {
        let a = agent("data_collector_v1");
        for name in [
            "api.internal.example.net",
            "en.wikipedia.org",
            "files.pythonhosted.org",
            "objects.githubusercontent.com",
            "www.googleapis.com",
            "us-east-1.console.aws.amazon.com",
            "telemetry.weather-service.example",
            "cdn77.example.com",
            "1.0.0.127.in-addr.arpa",
            "192.168.1.1",
        ] {
            assert!(
                check(&a, name, false).is_none(),
                "{name}: {:?}",
                check(&a, name, false)
            );
        }
    }
}
