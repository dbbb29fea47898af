//! What a run has done, for the operator: records by stream and verdict,
//! findings by rule, open incidents, evictions, batch latency, engine restarts
//! and policy reloads. Served in Prometheus' text format on `--metrics-listen`
//! and summarised on stderr when the run ends.
//!
//! Counters start at zero with the process (Prometheus' convention), even when
//! the engine's state, and so its own totals, were restored from a snapshot.

use crate::component::Stats;
use anyhow::Result;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Records passed on tagged `error` because the engine failed on their batch.
    pub unjudged_records: u64,
    /// One line per alerting incident opened in this run (the first
    /// [`MAX_LISTED_INCIDENTS`]), for the summary.
    opened: Vec<String>,
    /// Alerting incidents opened beyond the listed ones.
    opened_unlisted: u64,
}

/// Incidents the end-of-run summary lists one per line.
const MAX_LISTED_INCIDENTS: usize = 50;

pub type Shared = Arc<Mutex<Metrics>>;

/// The totals of a run as the client library's collector sees them.
#[derive(Debug)]
struct Exposed(Metrics);

impl Collector for Exposed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        self.0.encode_families(&mut encoder)
    }
}

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
                    c.stream.as_str().to_string(),
                    c.verdict.as_str().to_string(),
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

    /// The OpenMetrics text exposition (what Prometheus scrapes), written by
    /// the Prometheus project's client library from these totals.
    pub fn render(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Exposed(self.clone())));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String");
        out
    }

    /// Every metric family, from the totals of this run.
    fn encode_families(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64| {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(family)
        };
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64| {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(family)
        };
        let mut family = encoder.encode_descriptor(
            "clawwatch_records",
            "Records judged by stream and verdict, and incident/audit records written.",
            None,
            MetricType::Counter,
        )?;
        for (stream, verdict, n) in self.records_by_stream() {
            let labels = [("stream", stream.as_str()), ("verdict", verdict.as_str())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "clawwatch_findings",
            "Findings raised, by rule (repeats within an incident count).",
            None,
            MetricType::Counter,
        )?;
        for (rule, n) in self.findings_by_rule() {
            ConstCounter::new(n).encode(family.encode_family(&[("rule", rule.as_str())])?)?;
        }
        let counters: [(&str, &str, u64); 12] = [
            (
                "clawwatch_oversized_lines",
                "Lines over --max-line-bytes, passed through tagged `error`.",
                self.oversized_lines,
            ),
            (
                "clawwatch_connections_refused",
                "Connections closed at once: --max-connections were open.",
                self.connections_refused,
            ),
            (
                "clawwatch_connections_cut",
                "Connections cut off for what they sent (malformed, over a bound).",
                self.connections_cut,
            ),
            (
                "clawwatch_incidents_opened",
                "Incidents opened.",
                self.engine_counter(|s| s.incidents_opened),
            ),
            (
                "clawwatch_incidents_closed",
                "Incidents closed after their quiet period.",
                self.engine_counter(|s| s.incidents_closed),
            ),
            (
                "clawwatch_evictions",
                "Entries dropped from bounded state to stay within its caps.",
                self.engine_counter(|s| s.evictions),
            ),
            (
                "clawwatch_engine_restarts",
                "Times the engine was re-created after a trap or a resource limit.",
                self.engine_restarts,
            ),
            (
                "clawwatch_policy_reloads",
                "Policy reloads applied.",
                self.reloads_applied,
            ),
            (
                "clawwatch_policy_reloads_rejected",
                "Policy reloads rejected (the running policy stayed).",
                self.reloads_rejected,
            ),
            (
                "clawwatch_state_snapshots",
                "State snapshots saved.",
                self.snapshots_saved,
            ),
            (
                "clawwatch_state_snapshot_failures",
                "State snapshots (or journal writes) that could not be saved.",
                self.snapshots_failed,
            ),
            (
                "clawwatch_unjudged_records",
                "Records passed on without the engine's judgement (their batch failed).",
                self.unjudged_records,
            ),
        ];
        for (name, help, value) in counters {
            counter(encoder, name, help, value)?;
        }
        let gauges: [(&str, &str, u64); 3] = [
            (
                "clawwatch_incidents_open",
                "Incidents open now.",
                self.engine_gauge(|s| s.incidents_open),
            ),
            (
                "clawwatch_agents",
                "Agents known now (live or recently terminated).",
                self.engine_gauge(|s| s.agents),
            ),
            (
                "clawwatch_dns_entries",
                "Address-to-name entries held from DNS answers.",
                self.engine_gauge(|s| s.dns_entries),
            ),
        ];
        for (name, help, value) in gauges {
            gauge(encoder, name, help, value)?;
        }
        let mut family = encoder.encode_descriptor(
            "clawwatch_batch_seconds",
            "Time the engine took per batch.",
            None,
            MetricType::Histogram,
        )?;
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::MAX]);
        let buckets: Vec<(f64, u64)> = bounds.zip(self.latency_counts).collect();
        family.encode_histogram::<NoLabelSet>(self.latency_sum, self.batches(), &buckets, None)
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
        // Lines the engine never saw (too long, or in a batch it failed on) were passed on tagged `error`.
        let unseen = self.oversized_lines + self.unjudged_records;
        if unseen > 0 {
            add(&mut verdicts, "error", unseen);
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

/// Serves `GET /metrics` (OpenMetrics text) until the process ends; anything
/// else gets a 404.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Shared) -> Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    eprintln!(
        "clawwatch: metrics on http://{}/metrics",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = crate::source::listener::accept_resiliently(&listener, "metrics").await;
        let metrics = metrics.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let wanted = req.method() == hyper::Method::GET
                        && matches!(req.uri().path(), "/metrics" | "/");
                    let mut response = if wanted {
                        let body = metrics.lock().map(|m| m.render()).unwrap_or_default();
                        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static(
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            ),
                        );
                        response
                    } else {
                        let mut response = hyper::Response::new(Full::new(Bytes::from(
                            "only GET /metrics is served\n",
                        )));
                        *response.status_mut() = hyper::StatusCode::NOT_FOUND;
                        response
                    };
                    response.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Some(Duration::from_secs(5)))
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
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
                stream: crate::component::Stream::Flow,
                verdict: crate::component::Verdict::Alert,
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
                partition: None,
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
    fn counters_count_this_run_only_and_render_as_openmetrics_text() {
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
        assert!(
            text.contains("# TYPE clawwatch_records counter\n"),
            "{text}"
        );
        assert!(
            text.ends_with("# EOF\n"),
            "OpenMetrics ends with EOF: {text}"
        );
        // Every sample line belongs to a family declared before it.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = name
                    .trim_end_matches("_total")
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
