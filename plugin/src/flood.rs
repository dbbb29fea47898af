//! Alert-flood limits, like Suricata's thresholds: in any minute of event
//! time, at most `max_new_incidents_per_minute` new incidents of one rule for
//! one subject (an agent, or an address no agent holds) and at most
//! `max_new_incidents_per_subnet_per_minute` for one subnet (/24, or /64 for
//! IPv6) of address subjects. What is held back opens no incident; each
//! window that held some back is said in one summary record when it ends.

use crate::bounded::BoundedMap;
use crate::name::Name;
use crate::rules::{Finding, RuleInfo};
use crate::text::{Decimal, ip_text};
use crate::time::{NANOS_PER_SEC, Timestamp};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::net::{IpAddr, Ipv4Addr};

const WINDOW_NANOS: i64 = 60 * NANOS_PER_SEC;

/// One minute of new incidents for one (rule, subject or subnet).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Window {
    start: Timestamp,
    opened: u32,
    suppressed: u64,
}

/// What was held back in one window, for its summary record.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppressed {
    pub rule: &'static RuleInfo,
    /// The agent, address or subnet the limit applied to.
    pub scope: String,
    pub count: u64,
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Suppressed {
    pub fn summary(&self) -> String {
        format!(
            "{} further incidents of rule {} suppressed in the last minute for {} (flood limit)",
            self.count, self.rule.id, self.scope
        )
    }
}

#[derive(Serialize, Deserialize)]
pub struct FloodLimits {
    per_subject: u32,
    per_subnet: u32,
    /// The current window, keyed by `rule id` + `\0` + scope.
    windows: BoundedMap<Name, Window>,
    /// Ended windows that held incidents back, waiting for their summary:
    /// keyed by `rule id` + `\0` + scope + `\0` + start (ns).
    ended: BoundedMap<Name, u64>,
}

crate::changes::apply_changes_by_field!(FloodLimits {
    per_subject,
    per_subnet,
    windows,
    ended
});

/// Whether a new incident may open; when not, and it is the first held back
/// in its window, the summary's key and when it comes due (the window's end).
pub enum Admission {
    Open,
    Held {
        summary_due: Option<(Name, Timestamp)>,
    },
}

impl FloodLimits {
    pub fn new(per_subject: u32, per_subnet: u32, cap: usize) -> FloodLimits {
        FloodLimits {
            per_subject,
            per_subnet,
            windows: BoundedMap::new(cap),
            ended: BoundedMap::new(cap),
        }
    }

    pub fn set_limits(&mut self, per_subject: u32, per_subnet: u32) {
        (self.per_subject, self.per_subnet) = (per_subject, per_subnet);
    }

    pub fn recap(&mut self, cap: usize) {
        self.windows.recap(cap);
        self.ended.recap(cap);
    }

    pub fn evictions(&self) -> u64 {
        self.windows.evictions() + self.ended.evictions()
    }

    /// Decides on a finding that would open a new incident at `t`.
    pub fn admit(&mut self, finding: &Finding, t: Timestamp) -> Admission {
        let subject = finding.incident.split('/').next().unwrap_or_default();
        // The subject's window, and its subnet's for an address: keys made once.
        let mut scopes = SmallVec::<[(Name, u32); 2]>::new();
        scopes.push((window_key(finding.rule, subject), self.per_subject));
        if let Ok(ip) = subject.parse::<IpAddr>() {
            scopes.push((window_key(finding.rule, &subnet_of(ip)), self.per_subnet));
        }
        for (key, limit) in &scopes {
            let window = self.windows.get_or_insert_with(key.clone(), || Window {
                start: t,
                opened: 0,
                suppressed: 0,
            });
            if t.0 >= window.start.0.saturating_add(WINDOW_NANOS) {
                let ended = std::mem::replace(
                    window,
                    Window {
                        start: t,
                        opened: 0,
                        suppressed: 0,
                    },
                );
                if ended.suppressed > 0 {
                    self.ended
                        .insert(summary_key(&key, ended.start), ended.suppressed);
                }
            }
            let window = self.windows.get_mut(key.as_ref()).expect("just inserted");
            if window.opened >= *limit {
                window.suppressed += 1;
                let first = window.suppressed == 1;
                let (start, end) = (
                    window.start,
                    Timestamp(window.start.0.saturating_add(WINDOW_NANOS)),
                );
                return Admission::Held {
                    summary_due: first.then(|| (summary_key(&key, start), end)),
                };
            }
        }
        for (key, _) in &scopes {
            if let Some(w) = self.windows.get_mut(key.as_ref()) {
                w.opened += 1;
            }
        }
        Admission::Open
    }

    /// The summary of a window that held incidents back (it has ended), taken once.
    pub fn take_summary(&mut self, summary: &str) -> Option<Suppressed> {
        let mut parts = summary.split('\0');
        let (rule_id, scope, start) = (parts.next()?, parts.next()?, parts.next()?);
        let start = Timestamp(start.parse().ok()?);
        let count = match self.ended.remove(summary) {
            Some(count) => count,
            None => {
                // Still the current window: nothing newer has reset it.
                let window = self
                    .windows
                    .get_mut(format!("{rule_id}\0{scope}").as_str())?;
                if window.start != start || window.suppressed == 0 {
                    return None;
                }
                std::mem::take(&mut window.suppressed)
            }
        };
        let rule = crate::rules::ALL.iter().find(|r| r.id == rule_id)?;
        Some(Suppressed {
            rule,
            scope: scope.to_string(),
            count,
            start,
            end: Timestamp(start.0.saturating_add(WINDOW_NANOS)),
        })
    }
}

// Keys and scopes are built by hand: `format!` cost more than the rest of admitting.
fn summary_key(window_key: &str, start: Timestamp) -> Name {
    let sign = if start.0 < 0 { "-" } else { "" };
    let digits = Decimal::new(start.0.unsigned_abs());
    Name::from([window_key, "\0", sign, digits.as_str()].concat())
}

fn window_key(rule: &RuleInfo, scope: &str) -> Name {
    Name::from([rule.id, "\0", scope].concat())
}

fn subnet_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            let mut subnet = ip_text(Ipv4Addr::new(a, b, c, 0).into());
            subnet.push_str("/24");
            subnet
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_scopes_read_as_written() {
        let rule = &crate::rules::egress_not_allowed::RULE;
        let window = window_key(rule, "10.20.3.0/24");
        assert_eq!(&*window, "egress.not_allowed\u{0}10.20.3.0/24");
        assert_eq!(
            &*summary_key(&window, Timestamp(1_795_532_021_996_817_087)),
            "egress.not_allowed\u{0}10.20.3.0/24\u{0}1795532021996817087"
        );
        assert_eq!(&*summary_key("r\u{0}s", Timestamp(-5)), "r\u{0}s\u{0}-5");
        assert_eq!(subnet_of("10.20.3.4".parse().unwrap()), "10.20.3.0/24");
        assert_eq!(subnet_of("0.0.0.0".parse().unwrap()), "0.0.0.0/24");
        assert_eq!(
            subnet_of("2001:db8:1:2:3::9".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }
}
