//! Kafka as a sink: each enriched record is produced to the output topic
//! keyed by its agent, so one agent's records stay in one partition, in
//! order (incident and audit records to their own topic when one is named).
//! A delivery's source hears its records are safely out (a Kafka source then
//! commits their offsets) only once the broker acknowledged every one;
//! a record the broker refused is produced again until it is acknowledged.

use crate::component::{OutputLine, Stream};
use crate::stage::Delivery;
use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use tokio::sync::mpsc;

/// Where to produce to.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaOutput {
    /// Bootstrap brokers, `HOST:PORT[,HOST:PORT…]`.
    pub brokers: String,
    pub topic: String,
    /// Incident and audit records go here when set (else with the rest).
    pub incidents: Option<String>,
}

/// Backoff between attempts at a record the broker refused.
const RETRY_AFTER: Duration = Duration::from_millis(500);

pub async fn write(output: &KafkaOutput, out_rx: &mut mpsc::Receiver<Delivery>) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &output.brokers)
        // Keys hash as Java clients and Kafka Streams hash them.
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .create()
        .with_context(|| format!("creating a Kafka producer for {}", output.brokers))?;
    while let Some(Delivery {
        output: judged,
        origin,
    }) = out_rx.recv().await
    {
        let lines = split_lines(&judged.ndjson, &judged.lines);
        let mut waiting = Vec::with_capacity(lines.len());
        for (line, incident) in &lines {
            waiting.push((*line, *incident, send(&producer, output, line, *incident)));
        }
        for (line, incident, delivered) in waiting {
            let mut delivered = delivered.await;
            while let Err(e) = delivered {
                tracing::warn!(error = %e, "the Kafka broker did not take a record; producing it again");
                tokio::time::sleep(RETRY_AFTER).await;
                delivered = send(&producer, output, line, incident).await;
            }
        }
        if let Some(origin) = origin {
            origin.acknowledge().await;
        }
    }
    Ok(())
}

fn send<'a>(
    producer: &'a FutureProducer,
    output: &'a KafkaOutput,
    line: &'a [u8],
    incident: bool,
) -> impl std::future::Future<Output = Result<(), String>> + 'a {
    let topic = match (&output.incidents, incident) {
        (Some(incidents), true) => incidents.as_str(),
        _ => output.topic.as_str(),
    };
    let key = agent_of(line);
    async move {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(line);
        if let Some(key) = key {
            record = record.key(key);
        }
        producer
            .send(record, rdkafka::util::Timeout::Never)
            .await
            .map(drop)
            .map_err(|(e, _)| e.to_string())
    }
}

/// The output's lines without their `\n`, each with whether it is an
/// incident or audit record (by the engine's description of it when there
/// is one; passed-through lines have none and are records).
fn split_lines<'a>(ndjson: &'a [u8], described: &[OutputLine]) -> Vec<(&'a [u8], bool)> {
    let mut lines = Vec::new();
    let mut rest = ndjson;
    let mut described = described.iter();
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let (line, next) = rest.split_at(end);
        let incident = described
            .next()
            .is_some_and(|d| matches!(d.stream, Stream::Incident | Stream::Audit));
        lines.push((line.strip_suffix(b"\n").unwrap_or(line), incident));
        rest = next;
    }
    lines
}

/// The agent a record belongs to, as clawwatch's note names it: the key
/// that keeps one agent's records together.
fn agent_of(line: &[u8]) -> Option<&[u8]> {
    const MARK: &[u8] = b"\"agent\":{\"id\":\"";
    // The note is written after the record's own fields: the last mark is its.
    let at = memchr::memmem::rfind(line, MARK)? + MARK.len();
    let len = memchr::memchr2(b'"', b'\\', &line[at..])?;
    (line[at + len] == b'"').then(|| &line[at..at + len])
}

#[cfg(test)]
mod tests {
    use super::agent_of;

    #[test]
    fn the_key_is_the_agent_clawwatch_named() {
        let line = br#"{"agent":{"id":"spoofed"},"clawwatch":{"verdict":"allow","agent":{"id":"0x8a3f","type":"data_collector_v1"}}}"#;
        assert_eq!(agent_of(line), Some(&b"0x8a3f"[..]));
        assert_eq!(
            agent_of(br#"{"clawwatch":{"verdict":"unattributed"}}"#),
            None
        );
        // An id with an escape is not cut short: no key rather than a wrong one.
        assert_eq!(agent_of(br#"{"clawwatch":{"agent":{"id":"a\"b"}}}"#), None);
    }
}
