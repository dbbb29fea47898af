//! `dns.high_entropy`: an agent resolves random-looking names: labels whose
//! letters follow no word's pattern (scored against a letter-bigram model of
//! English and host-name words), that interleave letters and digits like a
//! generator (`data-xy78z4`), or that are long and high-entropy (encoded data).
//!
//! A domain generator registers random *domains*: the label judged is the
//! one left of the public suffix (random labels below a fixed domain are a
//! subdomain scheme, for `dns.tunneling`). One odd domain is not a generator:
//! the rule fires once an agent has resolved [`BURST_DOMAINS`] random-looking
//! domains within [`BURST_SECS`], and a burst of hundreds is one incident per
//! agent. CDN and cloud hosts look random too (`d3k8x9q2a7b1c0.cloudfront.net`),
//! so a name the agent is allowed to reach (its `allowed_outbound`, the
//! approvals allow-list, a live grant) is never judged.

use super::activity::Activity;
use super::letter_bigrams::LOG10_P;
use super::{Finding, RuleInfo, Severity, Subject};
use crate::registry::Agent;
use crate::time::{NANOS_PER_SEC, Timestamp};
use std::hash::{Hash, Hasher};

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

/// Random-looking registered domains an agent must resolve within
/// [`BURST_SECS`] before it reads as a generator: one odd name is not a DGA.
pub const BURST_DOMAINS: usize = 3;
pub const BURST_SECS: i64 = 10 * 60;

/// Why the name's registered domain looks machine-made, with its label.
pub fn random_domain<'n>(qname: &'n str, domain: &str) -> Option<(&'n str, &'static str)> {
    // The label the owner registered: left of the public suffix. Random
    // labels below it are a subdomain scheme (CDN shards, tunnels), which
    // `dns.tunneling` judges by volume.
    let label = domain.split('.').next()?;
    let at = qname.len().checked_sub(domain.len())?;
    let label = qname.get(at..at + label.len())?;
    random_label(label).map(|why| (label, why))
}

/// Judges one name an agent resolved at `t`; `allowed` says whether the agent
/// may reach it (then it is not judged at all). The agent's activity holds
/// the random registered domains it resolved lately (at most
/// [`BURST_DOMAINS`]). One incident per agent: a generator's burst of
/// hundreds of domains is one alert.
pub fn check_in(
    agent: &Agent,
    activity: &mut Activity,
    qname: &str,
    domain: &str,
    allowed: bool,
    t: Timestamp,
) -> Option<Finding> {
    if allowed {
        return None;
    }
    let (label, why) = random_domain(qname, domain)?;
    let hash = {
        let mut h = rustc_hash::FxHasher::default();
        domain.hash(&mut h);
        h.finish()
    };
    let recent = activity.random_domains_mut();
    recent.retain(|(_, at)| (t.0 - at.0).abs() <= BURST_SECS * NANOS_PER_SEC);
    if !recent.iter().any(|(h, _)| *h == hash) {
        if recent.len() >= BURST_DOMAINS {
            recent.remove(0);
        }
        recent.push((hash, t));
    }
    if recent.len() < BURST_DOMAINS {
        return None;
    }
    let subject = Subject::Agent(agent);
    Some(Finding::new(
        &RULE,
        &subject,
        None,
        format!(
            "{subject} resolved {qname}, whose domain label \"{label}\" looks random ({why}), with at least {BURST_DOMAINS} such domains within {} minutes",
            BURST_SECS / 60
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::registered_domain;
    use super::super::test_support::{agent, ts};
    use super::*;

    fn judge(names: &[&str], allowed: bool) -> Vec<Option<Finding>> {
        let a = agent("data_collector_v1");
        let mut activity = Activity::default();
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let domain = registered_domain(name).expect("a registered domain");
                let t = ts("2026-11-24T14:00:00Z").plus_secs(i as i64 * 20);
                check_in(&a, &mut activity, name, domain, allowed, t)
            })
            .collect()
    }

    #[test]
    fn a_burst_of_generated_domains_fires_once_keyed_by_the_agent() {
        let burst = [
            "xkqjzvbwpl.com",
            "qwxzvkjhtr.net",
            "www.pzkqxvrtwm.org",
            "zqxjkvbtrw.info",
        ];
        let found = judge(&burst, false);
        assert!(found[0].is_none() && found[1].is_none(), "not yet a burst");
        let f = found[2].as_ref().expect("the third random domain fires");
        assert_eq!(f.incident, "0x8a3f/dns.high_entropy");
        assert_eq!(
            found[3].as_ref().map(|f| f.incident.as_str()),
            Some("0x8a3f/dns.high_entropy"),
            "later ones join the same incident"
        );
    }

    #[test]
    fn the_same_random_domain_again_is_no_burst() {
        let found = judge(
            &["xkqjzvbwpl.com", "www.xkqjzvbwpl.com", "api.xkqjzvbwpl.com"],
            false,
        );
        assert!(found.iter().all(Option::is_none), "{found:?}");
    }

    #[test]
    fn random_subdomains_of_a_plain_domain_are_not_a_generator() {
        let found = judge(
            &[
                "data-xy78z4.example.com",
                "mzxw6ytboi4dsnrrgq3tmmjsgiydanjt.exfil.example.org",
                "a7f3k9x2m1.cdn.example.net",
            ],
            false,
        );
        assert!(found.iter().all(Option::is_none), "{found:?}");
    }

    #[test]
    fn cdn_and_cloud_names_do_not_fire_when_allowed() {
        let names = [
            "d3k8x9q2a7b1c0.cloudfront.net",
            "my-bucket-7f3a9c1e.s3.amazonaws.com",
            "d9x8k7q2p3m4n1.cloudfront.net",
        ];
        assert!(judge(&names, true).iter().all(Option::is_none));
        assert!(
            judge(&names, false)[2].is_some(),
            "the same names, not allowed, are judged"
        );
    }

    #[test]
    fn ordinary_names_are_near_misses() {
        for name in [
            "api.internal.example.net",
            "en.wikipedia.org",
            "files.pythonhosted.org",
            "objects.githubusercontent.com",
            "www.googleapis.com",
            "us-east-1.console.aws.amazon.com",
            "telemetry.weather-service.example",
            "cdn77.example.com",
            "ip-10-20-0-15.ec2.internal.example.net",
        ] {
            let domain = registered_domain(name).unwrap();
            assert!(random_domain(name, domain).is_none(), "{name}");
        }
    }
}
