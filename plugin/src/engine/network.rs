//! Network records: flows (an agent's own calls, services answering, replies
//! never seen) and egress proxy logs.

use super::*;

impl Engine {
    pub(super) fn judge_flow(&mut self, flow: &Flow) -> (Note, Vec<Finding>) {
        let mut note = Note::new(Stream::Flow, Verdict::Unattributed);
        let mut findings: Vec<Finding> = Vec::new();
        // A flow to an agent is its inbound or return traffic, never judged
        // against allowed_outbound; between two agents it is also the
        // caller's call. A peer's connection settles a waiting answer.
        let to_agent = match self.learnt.registry.agent_at(flow.dst, flow.ts) {
            Some(agent) => {
                let declared = agent
                    .info
                    .profile_in(&self.policy)
                    .and_then(|p| p.serves(flow.proto, flow.dst_port));
                Some((
                    agent.info.id.clone(),
                    self.learnt.conversations.to_agent(flow, declared),
                ))
            }
            None => None,
        };
        let holder = self
            .learnt
            .registry
            .agent_at(flow.src, flow.ts)
            .map(|a| a.info.id.clone());
        let Some(holder) = holder else {
            let monitor = &self.policy.monitor;
            // Attributed to the agent it reached only now that no agent sent it.
            if let Some((id, side)) = to_agent {
                if let Some(agent) = self.learnt.registry.peek_agent(&id) {
                    note.attribute(agent);
                }
                note.verdict = Verdict::Allow;
                note.direction = Some(match side {
                    ToAgent::Inbound => "inbound",
                    ToAgent::Return => "return",
                });
            } else {
                let seen = Seen {
                    subject: Subject::Address(flow.src),
                    profile: None,
                    monitor,
                    event: Observed::Flow { flow, names: &[] },
                };
                rules::inspect(&seen, &mut findings);
            }
            return (note, findings);
        };
        let (id, shared) = self.attribute_shared(holder, flow);
        note.note = shared;
        let Some(agent) = self.learnt.registry.agent(&id) else {
            return (note, findings);
        };
        note.attribute(agent);
        note.verdict = Verdict::Allow;
        let profile = agent.info.profile_in(&self.policy);
        let declared = profile.and_then(|p| p.serves(flow.proto, flow.src_port));
        match self.learnt.conversations.from_agent(flow, declared) {
            FromAgent::Reply => {
                note.direction = Some("return");
                return (note, findings);
            }
            FromAgent::Provisional => {
                note.direction = Some("return");
                note.note = Some(format!(
                    "an answer from its port {} to {}: judged as its own call if no connection from that peer turns up within lateness_minutes",
                    flow.src_port,
                    crate::net::endpoint(&flow.dst.to_string(), flow.dst_port)
                ));
                let id = agent.info.id.clone();
                if let Some(forced) = self.learnt.conversations.hold(id, flow) {
                    self.judge_unanswered(forced);
                }
                return (note, findings);
            }
            FromAgent::ServiceCall => {
                note.direction = Some("outbound");
                let id = agent.info.id.clone();
                findings.extend(self.judge_as_service_call(&id, flow));
                return (note, findings);
            }
            FromAgent::Call => {}
        }
        note.direction = Some("outbound");
        let monitor = &self.policy.monitor;
        let end = flow.end.map_or(flow.ts, |e| e.max(flow.ts));
        let names = self
            .learnt
            .dns
            .names_for_connection(flow.src, flow.dst, flow.ts, end);
        let activity = self
            .learnt
            .activities
            .get_or_insert_with(agent.info.id.clone(), Activity::default);
        // DNS is infrastructure, never an action of a plan nor expected in a
        // heartbeat (a foreign resolver is dns.foreign_resolver's incident);
        // to a corporate resolver it is not volume either.
        let dns = matches!(flow.dst_port, 53 | 853);
        let corp_dns = flow.dst_port == 53 && monitor.is_corp_resolver(flow.dst);
        let shape = if dns {
            Shape::Infrastructure
        } else {
            Shape::Call
        };
        for finding in
            crate::egress::judge(&self.policy, agent, profile, activity, flow, &names, shape)
        {
            if finding.rule.id != schedule_deviation::RULE.id {
                findings.push(finding);
            } else if !activity.holds_deviation() {
                // Judged once its minute is complete, when a retry loop has shown itself.
                let at = volume_anomaly::judged_at(flow.ts);
                activity.hold_deviation(flow.ts, finding);
                self.learnt
                    .deadlines
                    .schedule(at, Due::Schedule(agent.info.id.clone()));
            }
        }
        let seen = Seen {
            subject: Subject::Agent(agent),
            profile,
            monitor,
            event: Observed::Flow {
                flow,
                names: &names,
            },
        };
        rules::inspect(&seen, &mut findings);
        if !dns {
            activity.observe(flow);
        }
        if !corp_dns {
            let (hour, completed) = activity.volume.add(flow.ts, flow.bytes);
            if let Some(profile) = profile {
                if let Some(done) = completed {
                    self.learnt
                        .baselines
                        .learn(profile, done, monitor.baseline_max_drift);
                }
                let runaway = self
                    .learnt
                    .rates
                    .check(agent, profile, flow, names.first().copied());
                if runaway.is_some() {
                    activity.ran_away_at(flow.ts);
                }
                findings.extend(runaway);
                // The hour's volume is judged once this minute's late flows
                // are in, so a retry loop is seen as one before it is counted.
                if activity.volume_due.get().is_none()
                    && volume_anomaly::exceeds(profile, &self.learnt.baselines, hour)
                {
                    let at = volume_anomaly::judged_at(flow.ts);
                    activity.volume_due = OptionalTimestamp::from(at);
                    self.learnt
                        .deadlines
                        .schedule(at, Due::Volume(agent.info.id.clone()));
                }
            }
        }
        (note, findings)
    }

    /// Judges a flow from an agent's service port that answered no peer as
    /// the agent's own call, keyed by the peer.
    pub(super) fn judge_as_service_call(&mut self, agent_id: &str, flow: &Flow) -> Vec<Finding> {
        let Some(agent) = self.learnt.registry.agent(agent_id) else {
            return Vec::new();
        };
        let profile = agent.info.profile_in(&self.policy);
        let empty = Activity::default();
        let activity = self
            .learnt
            .activities
            .peek(&agent.info.id)
            .unwrap_or(&empty);
        crate::egress::judge(
            &self.policy,
            agent,
            profile,
            activity,
            flow,
            &[],
            Shape::UnansweredReply,
        )
    }

    /// Judges an answer no peer's connection explained, once it comes due.
    pub(super) fn judge_unanswered(&mut self, pending: PendingReply) {
        let findings = self.judge_as_service_call(&pending.agent_id, &pending.flow);
        let Some(agent) = self.learnt.registry.agent(&pending.agent_id) else {
            return;
        };
        let flow = &pending.flow;
        let info = agent.info.clone();
        // The incident's evidence is the answer that came due, not whatever record is current.
        let current = self.current.take();
        if self.field_set != FieldSet::Native {
            self.current = Some(Endpoints {
                // Judged as the agent's own call.
                direction: Some("outbound".into()),
                ..Endpoints::of(&Event::Flow(pending.flow.clone()))
            });
        }
        self.report(findings, Some(&info), flow.ts);
        self.current = current;
    }

    /// A connection asked for by name through an egress proxy: judged by name
    /// against the profile, the plan and the approvals, every name on its own.
    pub(super) fn judge_proxied(&mut self, call: &ProxiedCall) -> (Note, Vec<Finding>) {
        let found = match &call.agent {
            CallingAgent::Id(id) => self.learnt.registry.agent(id),
            CallingAgent::Address(ip) => self.learnt.registry.agent_at(*ip, call.ts),
        };
        let Some(agent) = found else {
            let mut note = Note::new(Stream::Proxy, Verdict::Unattributed);
            note.note = Some(match &call.agent {
                CallingAgent::Id(id) => format!(
                    "agent \"{id}\" is not known (never spawned, or forgotten under max_agents)"
                ),
                CallingAgent::Address(ip) => {
                    format!("no agent held {ip} (the proxy's client) at that time")
                }
            });
            return (note, Vec::new());
        };
        let mut note = Note::new(Stream::Proxy, Verdict::Allow);
        note.attribute(agent);
        note.direction = Some("outbound");
        let flow = Flow {
            ts: call.ts,
            end: None,
            src: agent
                .ips
                .first()
                .copied()
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            // No address: only name rules can admit it.
            dst: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_port: call.port,
            proto: crate::net::Proto::Tcp,
            bytes: 0,
            packets: 0,
            tcp_flags: None,
            src_initiated: true,
        };
        let profile = agent.info.profile_in(&self.policy);
        let activity = self
            .learnt
            .activities
            .get_or_insert_with(agent.info.id.clone(), Activity::default);
        let mut findings = Vec::new();
        for host in &call.hosts {
            findings.extend(crate::egress::judge(
                &self.policy,
                agent,
                profile,
                activity,
                &flow,
                &[host.as_str()],
                Shape::Call,
            ));
        }
        let seen = Seen {
            subject: Subject::Agent(agent),
            profile,
            monitor: &self.policy.monitor,
            event: Observed::ProxyCall {
                ts: call.ts,
                host: &call.hosts[0],
                port: call.port,
            },
        };
        rules::inspect(&seen, &mut findings);
        if let Some(by) = &call.rejected_by {
            note.note = Some(format!("the proxy refused it ({by})"));
        }
        (note, findings)
    }
}
