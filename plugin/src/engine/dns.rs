//! DNS records: what agents resolve, through which resolver, and what the
//! answers teach about addresses.

use super::*;

impl Engine {
    pub(super) fn judge_dns(&mut self, query: &DnsQuery) -> (Note, Vec<Finding>) {
        self.learnt.dns.learn(query);
        let mut note = Note::new(Stream::Dns, Verdict::Unattributed);
        let mut findings: Vec<Finding> = Vec::new();
        let monitor = &self.policy.monitor;
        if let Some(agent) = self.learnt.registry.agent_at(query.client, query.ts) {
            note.attribute(agent);
            note.verdict = Verdict::Allow;
            let profile = agent.info.profile_in(&self.policy);
            // Both DNS analytics work per registered domain: look it up once.
            if let Some(domain) = crate::net::registered_domain(&query.qname) {
                let activity = self
                    .learnt
                    .activities
                    .get_or_insert_with(agent.info.id.clone(), Activity::default);
                // A name the agent may reach is not judged for looking random (CDNs, cloud hosts).
                let names_it =
                    |d: &crate::policy::Destination| d.is_name() && d.matches_name(&query.qname);
                let allowed = profile
                    .is_some_and(|p| p.allowed_outbound.iter().any(|r| names_it(&r.destination)))
                    || self
                        .policy
                        .approvals
                        .iter()
                        .any(|r| names_it(&r.destination))
                    || activity
                        .grants()
                        .iter()
                        .any(|g| names_it(&g.dest) && g.expires.is_none_or(|e| query.ts < e));
                findings.extend(dns_high_entropy::check_in(
                    agent,
                    activity,
                    &query.qname,
                    domain,
                    allowed,
                    query.ts,
                ));
                findings.extend(self.learnt.tunnels.check_in(
                    agent,
                    &query.qname,
                    domain,
                    query.qtype.as_deref(),
                    query.ts,
                ));
            }
            let seen = Seen {
                subject: Subject::Agent(agent),
                profile,
                monitor,
                event: Observed::Dns(query),
            };
            rules::inspect(&seen, &mut findings);
        } else {
            let seen = Seen {
                subject: Subject::Address(query.client),
                profile: None,
                monitor,
                event: Observed::Dns(query),
            };
            rules::inspect(&seen, &mut findings);
        }
        (note, findings)
    }
}
