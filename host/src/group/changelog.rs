//! Each partition's learnt state in a compacted Kafka topic, as Kafka
//! Streams keeps a store's changelog: whichever instance is assigned the
//! partition next restores it from there, so state follows its partition.
//!
//! A save is the engine's snapshot cut into chunks (a snapshot can outgrow
//! the broker's record size limit), then a manifest naming them, the input
//! offsets the state covers and the snapshot's SHA-256. All of a
//! partition's records go to one changelog partition, in that order, so a
//! reader that sees a manifest has seen its chunks. Chunks are keyed by
//! their save, and the previous save's chunks are tombstoned once the new
//! manifest is in: compaction keeps one save per partition, and a reader
//! never mixes chunks of two saves.

use crate::sink::kafka::{Produce, produce_all};
use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Chunk size: well under Kafka's default `message.max.bytes` (1 MB).
const CHUNK_BYTES: usize = 512 << 10;
const FORMAT: &str = "clawwatch-partition-state";
/// 2: control records travel in the partitions (version 1 read them from
/// a control topic, with offsets of their own).
const VERSION: u32 = 2;
/// How long reading the changelog up to its end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// One partition's state and the input it covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Saved {
    /// The engine's snapshot.
    pub state: Vec<u8>,
    /// Next offset to read, per input topic, for this partition.
    pub data_next: BTreeMap<String, i64>,
}

/// A save as the changelog holds it: what a later save tombstones.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveMark {
    pub save: String,
    pub chunks: usize,
}

pub struct Changelog {
    pub topic: String,
    /// The changelog topic's partition count.
    pub partitions: i32,
}

fn manifest_key(partition: u32) -> String {
    format!("partition/{partition}")
}

fn chunk_key(partition: u32, save: &str, i: usize) -> String {
    format!("partition/{partition}/{save}/{i}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Changelog {
    fn home(&self, partition: u32) -> i32 {
        (partition % self.partitions.max(1) as u32) as i32
    }

    /// Writes `saved` for `partition` and returns once the broker has it;
    /// then forgets `previous` (its chunks).
    pub async fn write(
        &self,
        producer: &FutureProducer,
        partition: u32,
        count: u32,
        saved: &Saved,
        previous: Option<&SaveMark>,
    ) -> Result<SaveMark> {
        let save = hex(&Sha256::digest(&saved.state));
        let home = Some(self.home(partition));
        let pieces: Vec<&[u8]> = saved.state.chunks(CHUNK_BYTES).collect();
        let keys: Vec<String> = (0..pieces.len())
            .map(|i| chunk_key(partition, &save, i))
            .collect();
        let chunks: Vec<Produce<'_>> = (pieces.iter().zip(&keys))
            .map(|(piece, key)| Produce {
                topic: &self.topic,
                partition: home,
                key: Some(key.as_bytes()),
                payload: Some(piece),
                source: None,
            })
            .collect();
        produce_all(producer, &chunks).await?;
        let manifest = serde_json::json!({
            "format": FORMAT,
            "version": VERSION,
            "save": save,
            "chunks": pieces.len(),
            "bytes": saved.state.len(),
            "partition": partition,
            "partitions": count,
            "data": saved.data_next,
        })
        .to_string();
        let key = manifest_key(partition);
        produce_all(
            producer,
            &[Produce {
                topic: &self.topic,
                partition: home,
                key: Some(key.as_bytes()),
                payload: Some(manifest.as_bytes()),
                source: None,
            }],
        )
        .await?;
        if let Some(old) = previous.filter(|old| old.save != save) {
            let keys: Vec<String> = (0..old.chunks)
                .map(|i| chunk_key(partition, &old.save, i))
                .collect();
            let tombstones: Vec<Produce<'_>> = (keys.iter())
                .map(|key| Produce {
                    topic: &self.topic,
                    partition: home,
                    key: Some(key.as_bytes()),
                    payload: None,
                    source: None,
                })
                .collect();
            produce_all(producer, &tombstones).await?;
        }
        Ok(SaveMark {
            save,
            chunks: pieces.len(),
        })
    }

    /// The latest save of each of `wanted` that the changelog holds, read
    /// up to its end as it stood when asked. A save that does not add up
    /// (a chunk missing, a checksum off) is reported and left out: that
    /// partition's state starts over from its first record.
    pub fn read(
        &self,
        mut client: ClientConfig,
        group: &str,
        wanted: &BTreeSet<u32>,
        count: u32,
    ) -> Result<BTreeMap<u32, (Saved, SaveMark)>> {
        let consumer: BaseConsumer<super::Reader> = client
            .set("group.id", format!("{group}.changelog-reader"))
            .set("enable.auto.commit", "false")
            // The end is where the broker says the partition ends as it is
            // read (not a watermark asked for beforehand: some brokers
            // answer those by batch, not by record).
            .set("enable.partition.eof", "true")
            .create_with_context(super::Reader)
            .context("creating a Kafka consumer for the changelog")?;
        let mut homes: BTreeSet<i32> = wanted.iter().map(|p| self.home(*p)).collect();
        let mut list = TopicPartitionList::new();
        for home in &homes {
            list.add_partition_offset(&self.topic, *home, Offset::Beginning)?;
        }
        let mut latest: HashMap<String, Option<Vec<u8>>> = HashMap::new();
        if !homes.is_empty() {
            consumer.assign(&list)?;
            let started = Instant::now();
            while !homes.is_empty() {
                anyhow::ensure!(
                    started.elapsed() < READ_TIMEOUT,
                    "reading changelog {} took over {}s",
                    self.topic,
                    READ_TIMEOUT.as_secs()
                );
                let message = match consumer.poll(Duration::from_millis(200)) {
                    None => continue,
                    Some(Err(KafkaError::PartitionEOF(home))) => {
                        homes.remove(&home);
                        continue;
                    }
                    Some(message) => message.context("reading the changelog")?,
                };
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                let mine = key
                    .strip_prefix("partition/")
                    .and_then(|rest| rest.split('/').next())
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|p| wanted.contains(&p));
                if mine {
                    latest.insert(key, message.payload().map(<[u8]>::to_vec));
                }
            }
        }
        let mut saves = BTreeMap::new();
        for partition in wanted {
            let Some(Some(manifest)) = latest.get(&manifest_key(*partition)) else {
                continue;
            };
            match assemble(*partition, count, manifest, &latest) {
                Ok(found) => {
                    saves.insert(*partition, found);
                }
                Err(e) => tracing::error!(
                    partition,
                    changelog = %self.topic,
                    error = %format!("{e:#}"),
                    "a saved state could not be used; this partition's state starts over from its first record"
                ),
            }
        }
        Ok(saves)
    }
}

fn assemble(
    partition: u32,
    count: u32,
    manifest: &[u8],
    latest: &HashMap<String, Option<Vec<u8>>>,
) -> Result<(Saved, SaveMark)> {
    let m: serde_json::Value = serde_json::from_slice(manifest).context("the manifest")?;
    anyhow::ensure!(
        m["format"] == FORMAT && m["version"] == VERSION,
        "not a version {VERSION} {FORMAT} manifest"
    );
    anyhow::ensure!(
        m["partitions"] == count,
        "saved for {} partitions, the input topics now have {count}: an agent's partition moved",
        m["partitions"]
    );
    let save = m["save"].as_str().context("no save id")?.to_string();
    let chunks = m["chunks"].as_u64().context("no chunk count")? as usize;
    let mut state = Vec::new();
    for i in 0..chunks {
        match latest.get(&chunk_key(partition, &save, i)) {
            Some(Some(chunk)) => state.extend_from_slice(chunk),
            _ => anyhow::bail!("chunk {i} of {chunks} of save {save} is missing"),
        }
    }
    anyhow::ensure!(
        hex(&Sha256::digest(&state)) == save,
        "save {save} does not match its checksum"
    );
    let offsets = |field: &str| -> BTreeMap<String, i64> {
        (m[field].as_object().into_iter().flatten())
            .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
            .collect()
    };
    Ok((
        Saved {
            state,
            data_next: offsets("data"),
        },
        SaveMark { save, chunks },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records a save of `state` for partition 3 of 12 leaves in the changelog.
    fn saved(state: &[u8]) -> (Vec<u8>, HashMap<String, Option<Vec<u8>>>) {
        let save = hex(&Sha256::digest(state));
        let pieces: Vec<&[u8]> = state.chunks(CHUNK_BYTES).collect();
        let manifest = serde_json::json!({
            "format": FORMAT, "version": VERSION, "save": save, "chunks": pieces.len(),
            "bytes": state.len(), "partition": 3, "partitions": 12,
            "data": {"agents.traffic": 42},
        })
        .to_string()
        .into_bytes();
        let chunks = (pieces.iter().enumerate())
            .map(|(i, piece)| (chunk_key(3, &save, i), Some(piece.to_vec())))
            .collect();
        (manifest, chunks)
    }

    #[test]
    fn a_save_in_chunks_comes_back_whole_with_its_offsets() {
        let state: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let (manifest, chunks) = saved(&state);
        assert_eq!(chunks.len(), 3);
        let (back, mark) = assemble(3, 12, &manifest, &chunks).unwrap();
        assert_eq!(back.state, state);
        assert_eq!(back.data_next["agents.traffic"], 42);
        assert_eq!(mark.chunks, 3);
    }

    #[test]
    fn a_save_that_does_not_add_up_is_refused_with_the_reason() {
        let state = vec![7u8; CHUNK_BYTES + 1];
        let (manifest, chunks) = saved(&state);
        let refusal = |chunks: &HashMap<String, Option<Vec<u8>>>, count: u32| {
            format!("{:#}", assemble(3, count, &manifest, chunks).unwrap_err())
        };
        // A chunk tombstoned or not yet read.
        let mut missing = chunks.clone();
        let key = missing.keys().find(|k| k.ends_with("/1")).unwrap().clone();
        missing.insert(key, None);
        assert!(refusal(&missing, 12).contains("chunk 1 of 2"));
        // A chunk altered.
        let mut altered = chunks.clone();
        for chunk in altered.values_mut().flatten() {
            chunk[0] ^= 1;
        }
        assert!(refusal(&altered, 12).contains("checksum"));
        // The traffic topic's partitions changed: agents moved between partitions.
        assert!(refusal(&chunks, 24).contains("the input topics now have 24"));
    }
}
