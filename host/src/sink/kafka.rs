//! Kafka as a sink: each enriched record is produced to the output topic
//! keyed by its agent, so one agent's records stay in one partition, in
//! order (incident and audit records to their own topic when one is named).
//! A delivery's source hears its records are safely out (a Kafka source then
//! commits their offsets) only once the broker acknowledged every one; a
//! record the broker refused for a passing reason is produced again until it
//! is acknowledged. A line too long for the engine, passed through in pieces,
//! is one record ([`super::Records`]). `clawwatch route` produces through the
//! same path.

use crate::stage::Delivery;
use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use tokio::sync::mpsc;

/// Where to produce to.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaOutput {
    pub connection: Connection,
    pub topic: String,
    /// Incident and audit records go here when set (else with the rest).
    pub incidents: Option<String>,
}

/// One record to produce.
pub struct Produce<'a> {
    pub topic: &'a str,
    /// `None`: the partitioner picks it from the key.
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone (a compacted topic forgets the key).
    pub payload: Option<&'a [u8]>,
    /// Where the record came from (`clawwatch.source` header): `topic/partition/offset`.
    pub source: Option<&'a str>,
    /// Which copy of a control record this is (`clawwatch.copy` header):
    /// `k/n`, the copy for partition k of n.
    pub copy: Option<&'a str>,
}

/// The header naming the input record an output record was judged from.
pub const SOURCE_HEADER: &str = "clawwatch.source";
pub const COPY_HEADER: &str = "clawwatch.copy";

/// Backoff between attempts at a record the broker refused, or while the
/// producer's queue is full.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The brokers and how to talk to them: what every Kafka client of one
/// run shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// Bootstrap brokers, `HOST:PORT[,HOST:PORT…]`.
    pub brokers: String,
    /// librdkafka properties (`--kafka-option`: security, timeouts,
    /// batching), over clawwatch's defaults.
    pub options: Vec<(String, String)>,
}

impl Connection {
    /// A client configuration for these brokers with the operator's properties.
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.options {
            config.set(key, value);
        }
        config
    }

    /// A producer whose keys hash as Java clients' and Kafka Streams' do, so
    /// any of them finds an agent's partition the same way.
    pub fn producer(&self) -> Result<FutureProducer> {
        self.client()
            .set("partitioner", "murmur2_random")
            .set("enable.idempotence", "true")
            .create()
            .with_context(|| format!("creating a Kafka producer for {}", self.brokers))
    }
}

/// How many partitions `topic` has on `brokers` (an error if it does not exist).
pub fn partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    brokers: &str,
    topic: &str,
) -> Result<usize> {
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading topic {topic}'s metadata from {brokers}"))?;
    let partitions = (metadata.topics().first())
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    anyhow::ensure!(
        partitions > 0,
        "topic {topic} does not exist on {brokers} (create it first: clawwatch does not create topics)"
    );
    Ok(partitions)
}

/// Produces every record and returns once the broker acknowledged each. A
/// refusal that may pass (a full queue, a broker away) is retried; one that
/// cannot (a record over the broker's size limit) is an error naming it.
pub async fn produce_all(producer: &FutureProducer, records: &[Produce<'_>]) -> Result<()> {
    fn record<'r>(r: &Produce<'r>) -> FutureRecord<'r, [u8], [u8]> {
        let mut record = FutureRecord::to(r.topic);
        if let Some(payload) = r.payload {
            record = record.payload(payload);
        }
        if let Some(key) = r.key {
            record = record.key(key);
        }
        if let Some(partition) = r.partition {
            record = record.partition(partition);
        }
        let headers: Vec<(&str, &str)> = [(SOURCE_HEADER, r.source), (COPY_HEADER, r.copy)]
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?)))
            .collect();
        if !headers.is_empty() {
            let owned = (headers.into_iter()).fold(OwnedHeaders::new(), |all, (key, value)| {
                all.insert(Header {
                    key,
                    value: Some(value),
                })
            });
            record = record.headers(owned);
        }
        record
    }
    let mut waiting = Vec::with_capacity(records.len());
    for r in records {
        loop {
            match producer.send_result(record(r)) {
                Ok(delivery) => break waiting.push((r, delivery)),
                Err((e, _)) if passing(&e) => tokio::time::sleep(RETRY_AFTER).await,
                Err((e, _)) => return Err(refused(e, r)),
            }
        }
    }
    for (r, delivery) in waiting {
        let mut outcome = delivery
            .await
            .map_err(|_| KafkaError::Canceled)
            .and_then(|d| d.map(drop).map_err(|(e, _)| e));
        while let Err(e) = outcome {
            if !passing(&e) {
                return Err(refused(e, r));
            }
            tracing::warn!(error = %e, topic = r.topic, "the Kafka broker did not take a record; producing it again");
            tokio::time::sleep(RETRY_AFTER).await;
            outcome = producer
                .send(record(r), rdkafka::util::Timeout::Never)
                .await
                .map(drop)
                .map_err(|(e, _)| e);
        }
    }
    Ok(())
}

/// Whether a refusal may pass by itself.
fn passing(e: &KafkaError) -> bool {
    !matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::InvalidConfig
        )
    )
}

fn refused(e: KafkaError, r: &Produce<'_>) -> anyhow::Error {
    anyhow::anyhow!(
        "Kafka refused a {}-byte record for topic {}: {e} (a record over the broker's message.max.bytes, a topic that does not exist, or no right to write it)",
        r.payload.map_or(0, <[u8]>::len),
        r.topic
    )
}

pub async fn write(output: &KafkaOutput, out_rx: &mut mpsc::Receiver<Delivery>) -> Result<()> {
    let producer = output.connection.producer()?;
    let mut whole = super::Records::default();
    while let Some(Delivery {
        output: judged,
        origin,
    }) = out_rx.recv().await
    {
        let lines = whole.of(&judged);
        let records: Vec<Produce<'_>> = (lines.iter())
            .map(|(line, incident)| Produce {
                topic: match (&output.incidents, *incident) {
                    (Some(incidents), true) => incidents,
                    _ => &output.topic,
                },
                partition: None,
                key: agent_of(line),
                payload: Some(line),
                source: None,
                copy: None,
            })
            .collect();
        produce_all(&producer, &records).await?;
        if let Some(origin) = origin {
            origin.acknowledge().await;
        }
    }
    Ok(())
}

/// The agent a record belongs to, as clawwatch's note names it: the key
/// that keeps one agent's records together.
pub fn agent_of(line: &[u8]) -> Option<&[u8]> {
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
