//! A Kafka consumer group as a source: records are read from the input
//! topics' partitions the group assigns this instance, cut into batches (one
//! topic each, so a topic named for its format, e.g. `flows.goflow2`, says
//! how to read its records), and each batch's offsets are committed only
//! once its output is acknowledged downstream (at least once, like the
//! forward and HTTP paths: a crash re-reads what was not yet safely out).

use super::lines::{BatchLimits, IdlePolicy};
use super::{Ack, Batch, Chunk};
use anyhow::{Context, Result};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::future::Future;
use tokio::sync::mpsc;

/// Where to consume from.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaInput {
    pub connection: crate::sink::kafka::Connection,
    pub group: String,
    pub topics: Vec<String>,
}

/// The offsets a batch's records end at: `(topic, partition, last offset)`.
pub type Offsets = Vec<(String, i32, i64)>;

/// Consumes until `stop`; each batch's offsets are committed once its output
/// is acknowledged.
pub async fn consume(
    input: &KafkaInput,
    tx: &mpsc::Sender<Chunk>,
    limits: &BatchLimits,
    idle: IdlePolicy,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let consumer: std::sync::Arc<StreamConsumer> = std::sync::Arc::new(
        input
            .connection
            .client()
            .set("group.id", &input.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .create()
            .with_context(|| {
                format!("creating a Kafka consumer for {}", input.connection.brokers)
            })?,
    );
    let topics: Vec<&str> = input.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("subscribing to {}", input.topics.join(", ")))?;
    tracing::info!(brokers = %input.connection.brokers, group = %input.group, topics = %input.topics.join(","), "consuming from Kafka");

    // Acknowledgements arrive in output order, which is input order per
    // partition, so committing each as it comes never moves an offset back.
    let (commit_tx, mut commit_rx) = mpsc::channel::<Offsets>(64);
    let committer = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            while let Some(offsets) = commit_rx.recv().await {
                let mut list = TopicPartitionList::new();
                for (topic, partition, offset) in &offsets {
                    let next = Offset::Offset(offset + 1);
                    if let Err(e) = list.add_partition_offset(topic, *partition, next) {
                        tracing::error!(error = %e, "an offset to commit was refused");
                    }
                }
                // After a rebalance a partition may be another member's: its
                // commit is refused and that member re-reads from the last one.
                let committed =
                    tokio::task::block_in_place(|| consumer.commit(&list, CommitMode::Sync));
                if let Err(e) = committed {
                    tracing::warn!(error = %e, "committing Kafka offsets failed; those records may be read again");
                }
            }
        })
    };

    let mut pending = Pending::default();
    tokio::pin!(stop);
    loop {
        let wait = match pending.started {
            Some(started) => idle.max_latency.saturating_sub(started.elapsed()),
            None => idle.max_latency,
        };
        tokio::select! {
            _ = &mut stop => break,
            received = tokio::time::timeout(wait, consumer.recv()) => match received {
                Err(_) => {
                    pending.flush(tx, &commit_tx).await?;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading from Kafka");
                }
                Ok(Ok(message)) => {
                    if pending.topic.as_deref().is_some_and(|t| t != message.topic()) {
                        pending.flush(tx, &commit_tx).await?;
                    }
                    pending.add(&message);
                    if pending.records >= limits.records || pending.bytes.len() >= limits.bytes {
                        pending.flush(tx, &commit_tx).await?;
                    }
                }
            }
        }
    }
    pending.flush(tx, &commit_tx).await?;
    drop(commit_tx);
    // What was read is committed as its output is acknowledged; the
    // committer ends once the last batch in flight was.
    committer.await.context("the Kafka offset committer")?;
    Ok(())
}

/// A batch being gathered from one topic.
#[derive(Default)]
struct Pending {
    topic: Option<String>,
    bytes: Vec<u8>,
    records: usize,
    offsets: Offsets,
    started: Option<std::time::Instant>,
}

impl Pending {
    fn add(&mut self, message: &rdkafka::message::BorrowedMessage<'_>) {
        let topic = message.topic();
        if self.topic.is_none() {
            self.topic = Some(topic.to_string());
            self.started = Some(std::time::Instant::now());
        }
        // A message is one record, or several NDJSON lines; an empty one is
        // still a record (passed through tagged), so nothing is dropped. Of
        // the copies of a control record `clawwatch route` puts in every
        // partition (for instances sharing the topic), one is judged here.
        if !is_other_copy(message) {
            let payload = message.payload().unwrap_or_default();
            self.bytes.extend_from_slice(payload);
            if payload.last() != Some(&b'\n') {
                self.bytes.push(b'\n');
            }
            self.records += 1;
        }
        let (partition, offset) = (message.partition(), message.offset());
        match self
            .offsets
            .iter_mut()
            .find(|(t, p, _)| t == topic && *p == partition)
        {
            Some(last) => last.2 = last.2.max(offset),
            None => self.offsets.push((topic.to_string(), partition, offset)),
        }
    }

    async fn flush(
        &mut self,
        tx: &mpsc::Sender<Chunk>,
        commit: &mpsc::Sender<Offsets>,
    ) -> Result<()> {
        let Some(topic) = self.topic.take() else {
            return Ok(());
        };
        let batch = Batch {
            tag: topic,
            times: Vec::new(),
            ndjson: std::mem::take(&mut self.bytes),
            ack: Some(Ack::Kafka {
                offsets: std::mem::take(&mut self.offsets),
                to: commit.clone(),
            }),
            epoch: crate::stage::reload::policy_epoch(),
        };
        self.records = 0;
        self.started = None;
        tx.send(Chunk::Acked(batch))
            .await
            .map_err(|_| anyhow::anyhow!("the engine stage stopped"))
    }
}

/// A copy of a control record other than the first (`clawwatch.copy` is
/// `k/n`, k not 0).
fn is_other_copy(message: &rdkafka::message::BorrowedMessage<'_>) -> bool {
    use rdkafka::message::Headers;
    (message.headers().into_iter())
        .flat_map(|headers| headers.iter())
        .find(|h| h.key == crate::sink::kafka::COPY_HEADER)
        .and_then(|h| h.value)
        .is_some_and(|copy| !copy.starts_with(b"0/"))
}
