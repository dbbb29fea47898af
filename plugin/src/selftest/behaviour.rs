//! How much and how long the agent acts, against what it declared: volume
//! over its threshold, a retry loop, outliving its lifetime, an action its plan
//! lacks, a connection its heartbeat hides.

use super::agent::{Reachable, TestAgent};
use super::{Expect, Trial};
use super::{line, rfc3339, ts};
use serde_json::json;

/// `first`: an allowed destination the mutations return to.
pub(super) fn trials(agent: &TestAgent, first: &Reachable, out: &mut Vec<Trial>) {
    let p = agent.profile;
    // Volume just over baseline × multiplier within an hour.
    if let Some(base) = p.baseline_connections_per_hour {
        let multiplier = p
            .volume_anomaly_threshold_multiplier
            .unwrap_or(crate::rules::volume_anomaly::DEFAULT_MULTIPLIER);
        let count = (base as f64 * multiplier).floor() as i64 + 1;
        let spacing = (3000 / count.max(1)).max(1);
        out.push(agent.trial(
            "volume_over_threshold",
            format!("{count} connections in an hour (baseline {base} × {multiplier} + 1)"),
            Expect::Alert,
            &["volume.anomaly"],
            |rec| {
                for i in 0..count {
                    agent.reach(rec, 10 + i * spacing, first);
                }
                10 + count * spacing
            },
        ));
    }
    // A retry loop: one destination past the sane rate.
    let rate = p.max_requests_per_minute as i64 + 1;
    out.push(agent.trial(
        "retry_loop",
        format!("{rate} connections to one destination within a minute"),
        Expect::Alert,
        &["rate.runaway", "volume.anomaly"],
        |rec| {
            if let Some(name) = &first.name {
                agent.dns(rec, 5, name, Some(first.ip));
            }
            for i in 0..rate {
                agent.flow(rec, 10 + i * 50 / rate, first.ip, first.port, first.proto);
            }
            60
        },
    ));
    // Active past spawn + lifetime + variance, by a minute.
    if let Some(lifetime) = p.expected_lifetime_minutes {
        let at = (lifetime as i64) * 60 + p.variance_secs() + 60;
        out.push(agent.trial(
            "outlives_lifetime",
            format!(
                "a connection {} minutes after spawn (lifetime {lifetime} + variance {} + 1)",
                at / 60,
                p.variance_secs() / 60
            ),
            Expect::Alert,
            &["lifetime.exceeded"],
            |rec| {
                agent.reach(rec, at, first);
                at
            },
        ));
    }
    // An action the declared plan does not contain.
    let planned = agent.fresh_ip(650);
    out.push(agent.trial(
        "undeclared_action",
        format!("a plan that declares only {planned}:443, then a call to {}", first.name.clone().unwrap_or(first.ip.to_string())),
        Expect::Alert,
        &["plan.undeclared"],
        |rec| {
            line(
                rec,
                json!({
                    "type": "agent.plan", "ts": rfc3339(ts(5)), "agent_id": agent.id,
                    "actions": [{"id": "declared", "dest": planned.to_string(), "port": 443, "proto": "tcp",
                                 "not_before": rfc3339(ts(0)), "not_after": rfc3339(ts(3600))}],
                }),
            );
            agent.reach(rec, 10, first);
            10
        },
    ));
    // A connection the agent's heartbeat does not report.
    out.push(agent.trial(
        "hidden_connection",
        format!(
            "a heartbeat that reports nothing while {} was reached",
            first.name.clone().unwrap_or(first.ip.to_string())
        ),
        Expect::Alert,
        &["heartbeat.mismatch"],
        |rec| {
            agent.reach(rec, 30, first);
            line(
                rec,
                json!({
                    "type": "agent.heartbeat", "ts": rfc3339(ts(300)), "agent_id": agent.id,
                    "window_start": rfc3339(ts(0)), "window_end": rfc3339(ts(300)),
                    "connections": [],
                }),
            );
            300
        },
    ));
}
