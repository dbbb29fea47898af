//! What a run has done, for the operator: records by stream and verdict,
//! findings by rule, open incidents, evictions, batch latency, engine restarts
//! and policy reloads. Served in Prometheus' text format on `--metrics-listen`
//! and summarised on stderr when the run ends.
//!
//! Counters start at zero with the process (Prometheus' convention), even when
//! the engine's state, and so its own totals, were restored from a snapshot.

use crate::component::Stats;
use anyhow::Result;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bounds of the batch latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// The engine's totals when the run started (restored state), subtracted.
    baseline: Option<Stats>,
    /// The engine's latest totals.
    engine: Option<Stats>,
    /// Lines passed through without reaching the engine (over --max-line-bytes).
    pub oversized_lines: u64,
    /// Batches per latency bucket; the last slot counts those above every bound.
    latency_counts: [u64; LATENCY_BUCKETS.len() + 1],
    latency_sum: f64,
    pub engine_restarts: u64,
    pub reloads_applied: u64,
    pub reloads_rejected: u64,
    pub snapshots_saved: u64,
    pub snapshots_failed: u64,
    /// Connections closed at once because --max-connections were open.
    pub connections_refused: u64,
    /// Connections cut off for what they sent (malformed, over a bound).
    pub connections_cut: u64,
    /// One line per alerting incident opened in this run (the first
    /// [`MAX_LISTED_INCIDENTS`]), for the summary.
    opened: Vec<String>,
    /// Alerting incidents opened beyond the listed ones.
    opened_unlisted: u64,
}

/// Incidents the end-of-run summary lists one per line.
const MAX_LISTED_INCIDENTS: usize = 50;

pub type Shared = Arc<Mutex<Metrics>>;

impl Metrics {
    /// The engine's totals at the start of the run (after any restore).
    pub fn set_baseline(&mut self, stats: Stats) {
        self.baseline = Some(stats);
    }

    pub fn set_engine(&mut self, stats: Stats) {
        self.engine = Some(stats);
    }

    /// Notes the alerting incidents a batch's output opened.
    pub fn note_incidents(&mut self, out: &crate::component::Judged) {
        use crate::component::{Stream, Verdict};
        let alerting = out
            .each_line()
            .filter(|(_, l)| l.stream == Stream::Incident && l.verdict == Verdict::Alert);
        for (line, _) in alerting {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            let cw = &v["clawwatch"];
            let i = &cw["incident"];
            if cw["stream"] != "incident" || i["status"] != "open" || cw["verdict"] != "alert" {
                continue;
            }
            if self.opened.len() >= MAX_LISTED_INCIDENTS {
                self.opened_unlisted += 1;
                continue;
            }
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
            self.opened.push(format!(
                "{} {:<6} {} {}: {}",
                text(&i["first_seen"]),
                text(&i["severity"]),
                text(&i["rule"]),
                text(&i["id"]),
                text(&i["summary"])
            ));
        }
    }

    pub fn observe_batch(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_counts[slot] += 1;
        self.latency_sum += secs;
    }

    fn batches(&self) -> u64 {
        self.latency_counts.iter().sum()
    }

    /// The smallest bucket bound below which `q` of batches finished.
    fn latency_quantile(&self, q: f64) -> Option<f64> {
        let total = self.batches();
        if total == 0 {
            return None;
        }
        let wanted = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, count) in self.latency_counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Some(LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        None
    }

    /// Engine counters for this run: (stream, verdict, records).
    fn records_by_stream(&self) -> Vec<(String, String, u64)> {
        let Some(now) = &self.engine else {
            return Vec::new();
        };
        now.records_by_stream
            .iter()
            .map(|c| {
                let before = self.baseline.as_ref().map_or(0, |b| {
                    b.records_by_stream
                        .iter()
                        .find(|o| o.stream == c.stream && o.verdict == c.verdict)
                        .map_or(0, |o| o.records)
                });
                (
                    c.stream.clone(),
                    c.verdict.clone(),
                    c.records.saturating_sub(before),
                )
            })
            .collect()
    }

    fn findings_by_rule(&self) -> Vec<(String, u64)> {
        let Some(now) = &self.engine else {
            return Vec::new();
        };
        now.findings_by_rule
            .iter()
            .map(|c| {
                let before = self.baseline.as_ref().map_or(0, |b| {
                    b.findings_by_rule
                        .iter()
                        .find(|o| o.rule == c.rule)
                        .map_or(0, |o| o.findings)
                });
                (c.rule.clone(), c.findings.saturating_sub(before))
            })
            .collect()
    }

    /// An engine counter for this run.
    fn engine_counter(&self, field: impl Fn(&Stats) -> u64) -> u64 {
        let now = self.engine.as_ref().map_or(0, &field);
        now.saturating_sub(self.baseline.as_ref().map_or(0, field))
    }

    fn engine_gauge(&self, field: impl Fn(&Stats) -> u64) -> u64 {
        self.engine.as_ref().map_or(0, field)
    }

    /// Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP clawwatch_records_total Records judged by stream and verdict, and incident/audit records written.\n# TYPE clawwatch_records_total counter"
        );
        for (stream, verdict, n) in self.records_by_stream() {
            let _ = writeln!(
                out,
                "clawwatch_records_total{{stream=\"{stream}\",verdict=\"{verdict}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP clawwatch_oversized_lines_total Lines over --max-line-bytes, passed through tagged `error`.\n# TYPE clawwatch_oversized_lines_total counter\nclawwatch_oversized_lines_total {}",
            self.oversized_lines
        );
        let _ = writeln!(
            out,
            "# HELP clawwatch_connections_refused_total Connections closed at once: --max-connections were open.\n# TYPE clawwatch_connections_refused_total counter\nclawwatch_connections_refused_total {}",
            self.connections_refused
        );
        let _ = writeln!(
            out,
            "# HELP clawwatch_connections_cut_total Connections cut off for what they sent (malformed, over a bound).\n# TYPE clawwatch_connections_cut_total counter\nclawwatch_connections_cut_total {}",
            self.connections_cut
        );
        let _ = writeln!(
            out,
            "# HELP clawwatch_findings_total Findings raised, by rule (repeats within an incident count).\n# TYPE clawwatch_findings_total counter"
        );
        for (rule, n) in self.findings_by_rule() {
            let _ = writeln!(out, "clawwatch_findings_total{{rule=\"{rule}\"}} {n}");
        }
        let simple: [(&str, &str, &str, u64); 11] = [
            (
                "clawwatch_incidents_opened_total",
                "counter",
                "Incidents opened.",
                self.engine_counter(|s| s.incidents_opened),
            ),
            (
                "clawwatch_incidents_closed_total",
                "counter",
                "Incidents closed after their quiet period.",
                self.engine_counter(|s| s.incidents_closed),
            ),
            (
                "clawwatch_incidents_open",
                "gauge",
                "Incidents open now.",
                self.engine_gauge(|s| s.incidents_open),
            ),
            (
                "clawwatch_evictions_total",
                "counter",
                "Entries dropped from bounded state to stay within its caps.",
                self.engine_counter(|s| s.evictions),
            ),
            (
                "clawwatch_agents",
                "gauge",
                "Agents known now (live or recently terminated).",
                self.engine_gauge(|s| s.agents),
            ),
            (
                "clawwatch_dns_entries",
                "gauge",
                "Address-to-name entries held from DNS answers.",
                self.engine_gauge(|s| s.dns_entries),
            ),
            (
                "clawwatch_engine_restarts_total",
                "counter",
                "Times the engine was re-created after a trap or a resource limit.",
                self.engine_restarts,
            ),
            (
                "clawwatch_policy_reloads_total",
                "counter",
                "Policy reloads applied.",
                self.reloads_applied,
            ),
            (
                "clawwatch_policy_reloads_rejected_total",
                "counter",
                "Policy reloads rejected (the running policy stayed).",
                self.reloads_rejected,
            ),
            (
                "clawwatch_state_snapshots_total",
                "counter",
                "State snapshots saved.",
                self.snapshots_saved,
            ),
            (
                "clawwatch_state_snapshot_failures_total",
                "counter",
                "State snapshots that could not be saved.",
                self.snapshots_failed,
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP clawwatch_batch_seconds Time the engine took per batch.\n# TYPE clawwatch_batch_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(self.latency_counts) {
            cumulative += count;
            let _ = writeln!(
                out,
                "clawwatch_batch_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "clawwatch_batch_seconds_bucket{{le=\"+Inf\"}} {}\nclawwatch_batch_seconds_sum {}\nclawwatch_batch_seconds_count {}",
            self.batches(),
            self.latency_sum,
            self.batches()
        );
        out
    }

    /// The end-of-run summary, a few lines for stderr.
    pub fn summary(&self, elapsed: Duration) -> String {
        /// Adds `n` to `key`'s total, keeping first-seen order.
        fn add(totals: &mut Vec<(String, u64)>, key: &str, n: u64) {
            match totals.iter_mut().find(|(k, _)| k == key) {
                Some((_, total)) => *total += n,
                None => totals.push((key.to_string(), n)),
            }
        }
        let by_stream = self.records_by_stream();
        let (mut verdicts, mut streams) = (Vec::new(), Vec::new());
        for (stream, verdict, n) in &by_stream {
            add(&mut streams, stream, *n);
            // Incident and audit records are written by clawwatch, not judged.
            if stream != "incident" && stream != "audit" {
                add(&mut verdicts, verdict, *n);
            }
        }
        if self.oversized_lines > 0 {
            add(&mut verdicts, "error", self.oversized_lines);
        }
        let judged: u64 = verdicts.iter().map(|(_, n)| n).sum();
        let list = |items: Vec<String>| {
            if items.is_empty() {
                "none".to_string()
            } else {
                items.join(", ")
            }
        };
        let mut out = format!(
            "clawwatch: {judged} records in {:.2}s: {}\n",
            elapsed.as_secs_f64(),
            list(verdicts.iter().map(|(v, n)| format!("{n} {v}")).collect())
        );
        let streams: Vec<String> = streams
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        let _ = writeln!(out, "  by stream: {}", list(streams));
        let findings: Vec<String> = self
            .findings_by_rule()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let _ = writeln!(out, "  findings: {}", list(findings));
        let listed = self.opened.len() as u64 + self.opened_unlisted;
        let _ = writeln!(
            out,
            "  alerts: {}",
            match listed {
                0 => "none: no incident opened".to_string(),
                1 => "1 incident opened".to_string(),
                n => format!("{n} incidents opened"),
            }
        );
        for line in &self.opened {
            let _ = writeln!(out, "    {line}");
        }
        if self.opened_unlisted > 0 {
            let _ = writeln!(out, "    ... and {} more", self.opened_unlisted);
        }
        let _ = writeln!(
            out,
            "  incidents: {} opened, {} closed, {} open; {} agents known; {} entries evicted",
            self.engine_counter(|s| s.incidents_opened),
            self.engine_counter(|s| s.incidents_closed),
            self.engine_gauge(|s| s.incidents_open),
            self.engine_gauge(|s| s.agents),
            self.engine_counter(|s| s.evictions),
        );
        if let (Some(p50), Some(p99)) = (self.latency_quantile(0.5), self.latency_quantile(0.99)) {
            let bound = |q: f64| match q {
                q if q.is_finite() => format!("≤ {} ms", q * 1000.0),
                _ => format!(
                    "> {} ms",
                    LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1] * 1000.0
                ),
            };
            let _ = writeln!(
                out,
                "  batches: {}, mean {:.2} ms, p50 {}, p99 {}",
                self.batches(),
                self.latency_sum * 1000.0 / self.batches() as f64,
                bound(p50),
                bound(p99)
            );
        }
        let mut extra = Vec::new();
        if self.engine_restarts > 0 {
            extra.push(format!(
                "engine re-created {} times after failures",
                self.engine_restarts
            ));
        }
        if self.reloads_applied + self.reloads_rejected > 0 {
            extra.push(format!(
                "policy reloads: {} applied, {} rejected",
                self.reloads_applied, self.reloads_rejected
            ));
        }
        if self.snapshots_saved + self.snapshots_failed > 0 {
            extra.push(format!(
                "state snapshots: {} saved, {} failed",
                self.snapshots_saved, self.snapshots_failed
            ));
        }
        if !extra.is_empty() {
            let _ = writeln!(out, "  {}", extra.join("; "));
        }
        out.pop();
        out
    }
}

/// Serves `GET /metrics` until the process ends. Anything else gets a 404;
/// requests are read up to a small bound, so a client cannot make it buffer.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Shared) -> Result<()> {
    eprintln!(
        "clawwatch: metrics on http://{}/metrics",
        listener.local_addr()?
    );
    loop {
        let (mut stream, _) =
            crate::source::listener::accept_resiliently(&listener, "metrics").await;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let wanted = head.starts_with(b"GET /metrics ") || head.starts_with(b"GET / ");
            let (status, body) = if wanted {
                let body = metrics.lock().map(|m| m.render()).unwrap_or_default();
                ("200 OK", body)
            } else {
                ("404 Not Found", "only GET /metrics is served\n".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{RuleCount, StreamCount};

    fn stats(flow_alerts: u64, egress: u64) -> Stats {
        Stats {
            records: flow_alerts,
            allowed: 0,
            alerts: flow_alerts,
            approved: 0,
            unattributed: 0,
            not_applicable: 0,
            errors: 0,
            findings: egress,
            incidents_opened: 1,
            incidents_closed: 0,
            evictions: 0,
            agents: 3,
            dns_entries: 0,
            records_by_stream: vec![StreamCount {
                stream: "flow".into(),
                verdict: "alert".into(),
                records: flow_alerts,
            }],
            findings_by_rule: vec![RuleCount {
                rule: "egress.not_allowed".into(),
                findings: egress,
            }],
            incidents_open: 1,
        }
    }

    #[test]
    fn the_summary_lists_each_alerting_incident_opened_on_a_line() {
        let mut m = Metrics::default();
        m.set_engine(stats(1, 1));
        let out = concat!(
            r#"{"type":"flow","clawwatch":{"stream":"flow","verdict":"alert"}}"#,
            "\n",
            r#"{"clawwatch":{"stream":"incident","verdict":"alert","incident":{"id":"w-1/egress.not_allowed/203.0.113.9:8443","rule":"egress.not_allowed","severity":"high","status":"open","count":1,"first_seen":"2026-11-24T14:01:00Z","last_seen":"2026-11-24T14:01:00Z","summary":"worker w-1 connected to 203.0.113.9:8443/tcp, not in allowed_outbound"}}}"#,
            "\n",
            r#"{"clawwatch":{"stream":"incident","verdict":"alert","incident":{"id":"w-1/egress.not_allowed/203.0.113.9:8443","rule":"egress.not_allowed","severity":"high","status":"closed","count":4}}}"#,
            "\n",
            r#"{"clawwatch":{"stream":"audit","verdict":"approved","incident":{"id":"w-1/approval.granted/pypi.org:443","rule":"approval.granted","severity":"info","status":"open"}}}"#,
            "\n",
        );
        use crate::component::{Judged, OutputLine, Stream, Verdict};
        let kinds = [
            (Stream::Flow, Verdict::Alert),
            (Stream::Incident, Verdict::Alert),
            (Stream::Incident, Verdict::Alert),
            (Stream::Audit, Verdict::Approved),
        ];
        let lines = out
            .split_inclusive('\n')
            .zip(kinds)
            .map(|(line, (stream, verdict))| OutputLine {
                length: line.len() as u32,
                stream,
                verdict,
            })
            .collect();
        m.note_incidents(&Judged {
            ndjson: out.as_bytes().to_vec(),
            lines,
        });
        let summary = m.summary(Duration::from_secs(1));
        assert!(summary.contains("  alerts: 1 incident opened\n    2026-11-24T14:01:00Z high   egress.not_allowed w-1/egress.not_allowed/203.0.113.9:8443: worker w-1 connected to 203.0.113.9:8443/tcp, not in allowed_outbound\n"), "{summary}");
        let quiet = Metrics::default().summary(Duration::from_secs(1));
        assert!(
            quiet.contains("  alerts: none: no incident opened\n"),
            "{quiet}"
        );
    }

    #[test]
    fn counters_count_this_run_only_and_render_as_prometheus_text() {
        let mut m = Metrics::default();
        m.set_baseline(stats(5, 5));
        m.set_engine(stats(12, 9));
        m.observe_batch(Duration::from_micros(700));
        m.observe_batch(Duration::from_secs(10));
        let text = m.render();
        assert!(
            text.contains("clawwatch_records_total{stream=\"flow\",verdict=\"alert\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("clawwatch_findings_total{rule=\"egress.not_allowed\"} 4\n"));
        assert!(text.contains("clawwatch_incidents_opened_total 0\n"));
        assert!(text.contains("clawwatch_incidents_open 1\n"));
        assert!(text.contains("clawwatch_agents 3\n"));
        assert!(text.contains("clawwatch_batch_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(text.contains("clawwatch_batch_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("clawwatch_batch_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("clawwatch_batch_seconds_count 2\n"));
        // Every sample line belongs to a family declared before it.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                assert!(declared.iter().any(|d| d == name || d == family), "{line}");
            }
        }
        let summary = m.summary(Duration::from_secs(1));
        assert!(
            summary.starts_with("clawwatch: 7 records in 1.00s: 7 alert"),
            "{summary}"
        );
        assert!(
            summary.contains("findings: egress.not_allowed 4"),
            "{summary}"
        );
        assert!(summary.contains("p50 ≤ 1 ms, p99 > 5000 ms"), "{summary}");
    }
}
