//! `approval.granted`: an unplanned call (outside `allowed_outbound` or the
//! declared plan) that matched the `[approvals]` allow-list or a live
//! `approval.grant`. An audit record, not an alert: it says who allowed this
//! agent to reach that host, when and why.

use super::{Finding, RuleInfo, Severity, Subject, endpoint};
use crate::policy::Rule;
use crate::record::{Flow, Grant};
use crate::registry::Agent;

pub const RULE: RuleInfo = RuleInfo {
    id: "approval.granted",
    description: "An unplanned call matched the approvals allow-list or a live grant: audit record, not an alert.",
    severity: Severity::Info,
    tags: &["approval", "audit"],
};

/// What approved a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Approval<'a> {
    AllowList(&'a Rule),
    Grant(&'a Grant),
}

impl Approval<'_> {
    pub fn describe(&self) -> String {
        match self {
            Approval::AllowList(rule) => format!("the [approvals] allow-list entry {rule}"),
            Approval::Grant(g) => {
                let mut s = format!(
                    "a grant by {} at {}",
                    g.approver.as_deref().unwrap_or("an unnamed approver"),
                    g.ts.to_rfc3339()
                );
                if let Some(reason) = &g.reason {
                    s.push_str(&format!(" (\"{reason}\")"));
                }
                if let Some(expires) = g.expires {
                    s.push_str(&format!(", expiring {}", expires.to_rfc3339()));
                }
                s
            }
        }
    }
}

fn grant_covers(g: &Grant, flow: &Flow, names: &[&str]) -> bool {
    g.ts <= flow.ts
        && g.expires.is_none_or(|e| flow.ts < e)
        && g.port.is_none_or(|p| p == flow.dst_port)
        && g.proto.is_none_or(|p| p == flow.proto)
        && (g.dest.matches_ip(flow.dst)
            || (g.dest.is_name() && names.iter().any(|n| g.dest.matches_name(n))))
}

/// The allow-list entry or live grant that approves the flow, grants first
/// (they name a person and a reason).
pub fn find<'a>(
    allow_list: &'a crate::net::RuleSet,
    grants: &'a [Grant],
    flow: &Flow,
    names: &[&str],
) -> Option<Approval<'a>> {
    grants
        .iter()
        .rev()
        .find(|g| grant_covers(g, flow, names))
        .map(Approval::Grant)
        .or_else(|| {
            allow_list
                .first_allowing(flow.proto, flow.dst_port, flow.dst, names)
                .map(Approval::AllowList)
        })
}

/// The audit finding for an approved call; `unplanned` says what it was outside of.
pub fn finding(
    agent: &Agent,
    flow: &Flow,
    names: &[&str],
    approval: &Approval,
    unplanned: &str,
) -> Finding {
    let subject = Subject::Agent(agent);
    let target = endpoint(
        names.first().copied().unwrap_or(&flow.dst.to_string()),
        flow.dst_port,
    );
    Finding::new(
        &RULE,
        &subject,
        Some(&target),
        format!(
            "{subject} connected to {target}/{} ({unplanned}), approved by {}",
            flow.proto,
            approval.describe()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{agent, flow, policy, ts};
    use super::*;
    use crate::net::Destination;
    use crate::net::Proto;

    fn grant(expires: &str) -> Grant {
        Grant {
            ts: ts("2026-11-24T14:30:00Z"),
            agent_id: "0x8a3f".into(),
            dest: Destination::parse("files.pythonhosted.org").unwrap(),
            port: Some(443),
            proto: None,
            expires: Some(ts(expires)),
            approver: Some("oncall@example.com".into()),
            reason: Some("install requests".into()),
        }
    }

    #[test]
    fn allow_list_and_live_grants_approve() {
        let p = policy();
        let a = agent("data_collector_v1");
        let f = flow("10.20.0.15", "151.101.0.223", 443, Proto::Tcp);
        let approval = find(&p.approvals, &[], &f, &["pypi.org"]).expect("allow-listed");
        let finding = finding(&a, &f, &["pypi.org"], &approval, "not in allowed_outbound");
        assert!(!finding.alerting);
        assert_eq!(finding.severity, Severity::Info);
        assert!(
            finding
                .summary
                .contains("allow-list entry pypi.org:443/tcp"),
            "{}",
            finding.summary
        );
        let grants = [grant("2026-11-24T15:30:00Z")];
        let approval =
            find(&p.approvals, &grants, &f, &["files.pythonhosted.org"]).expect("granted");
        assert!(approval.describe().contains("oncall@example.com"));
        assert!(approval.describe().contains("install requests"));
    }

    #[test]
    fn expired_grants_other_ports_and_other_hosts_do_not_approve() {
        let p = policy();
        let f = flow("10.20.0.15", "151.101.0.223", 443, Proto::Tcp); // at 14:31
        assert!(
            find(
                &p.approvals,
                &[grant("2026-11-24T14:31:00Z")],
                &f,
                &["files.pythonhosted.org"]
            )
            .is_none(),
            "expired at the flow's start"
        );
        assert!(
            find(
                &p.approvals,
                &[grant("2026-11-24T15:30:00Z")],
                &f,
                &["evil.example"]
            )
            .is_none()
        );
        let f80 = flow("10.20.0.15", "151.101.0.223", 80, Proto::Tcp);
        assert!(
            find(
                &p.approvals,
                &[grant("2026-11-24T15:30:00Z")],
                &f80,
                &["files.pythonhosted.org", "pypi.org"]
            )
            .is_none()
        );
    }
}
