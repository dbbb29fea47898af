//! Each partition's learnt state in a compacted Kafka topic, as Kafka
//! Streams keeps a store's changelog: whichever instance is assigned the
//! partition next restores it from there, so state follows its partition.
//!
//! A partition's state is a chain of pieces: a snapshot, then the changes
//! the engine exported after it, each following the one before. A save
//! writes only the pieces the changelog does not hold yet (usually one
//! small set of changes), cut into chunks (a snapshot can outgrow the
//! broker's record size limit), then a manifest naming every piece of the
//! chain with its SHA-256, and the input offsets the state covers. All of a
//! partition's records go to one changelog partition, in that order, so a
//! reader that sees a manifest has seen its chunks. Chunks are keyed by
//! their piece; when the engine starts a new chain (a fresh snapshot, once
//! the changes have grown), the old chain's chunks are tombstoned after the
//! new manifest is in: compaction keeps one chain per partition.

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
/// 3: a chain of pieces (2 held one snapshot; 1 read control records from
/// a control topic, with offsets of their own).
const VERSION: u32 = 3;
/// How long reading the changelog up to its end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// One partition's state and the input it covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Saved {
    /// The engine's snapshot and the changes after it, in order.
    pub chain: Vec<Vec<u8>>,
    /// Next offset to read, per input topic, for this partition.
    pub data_next: BTreeMap<String, i64>,
}

/// One piece of a chain as the changelog holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// Its SHA-256, in hex: names its chunks.
    pub sha256: String,
    pub chunks: usize,
}

/// A save as the changelog holds it: what the next save adds to, or
/// tombstones.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveMark {
    pub pieces: Vec<Piece>,
}

pub struct Changelog {
    pub topic: String,
    /// The changelog topic's partition count.
    pub partitions: i32,
}

fn manifest_key(partition: u32) -> String {
    format!("partition/{partition}")
}

fn chunk_key(partition: u32, piece: &str, i: usize) -> String {
    format!("partition/{partition}/{piece}/{i}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Piece {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"sha256": self.sha256, "chunks": self.chunks})
    }

    fn from_json(v: &serde_json::Value) -> Option<Piece> {
        Some(Piece {
            sha256: v["sha256"].as_str()?.to_string(),
            chunks: v["chunks"].as_u64()? as usize,
        })
    }
}

impl Changelog {
    fn home(&self, partition: u32) -> i32 {
        (partition % self.partitions.max(1) as u32) as i32
    }

    /// Writes `saved` for `partition` and returns once the broker has it:
    /// the pieces of its chain that `previous` does not hold, then the
    /// manifest; then forgets what of `previous` the chain no longer has.
    pub async fn write(
        &self,
        producer: &FutureProducer,
        partition: u32,
        count: u32,
        (chain, data_next): (&[Vec<u8>], &BTreeMap<String, i64>),
        previous: Option<&SaveMark>,
    ) -> Result<SaveMark> {
        let home = Some(self.home(partition));
        let pieces: Vec<Piece> = (chain.iter())
            .map(|bytes| Piece {
                sha256: hex(&Sha256::digest(bytes)),
                chunks: bytes.len().div_ceil(CHUNK_BYTES).max(1),
            })
            .collect();
        let held: &[Piece] = previous.map_or(&[], |p| &p.pieces);
        // The chain grew from what is held: only the new pieces go out.
        let from = if pieces.starts_with(held) {
            held.len()
        } else {
            0
        };
        let mut keys = Vec::new();
        let mut payloads: Vec<&[u8]> = Vec::new();
        for (piece, bytes) in pieces.iter().zip(chain).skip(from) {
            let mut chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
            if chunks.is_empty() {
                chunks.push(&[]);
            }
            for (i, chunk) in chunks.into_iter().enumerate() {
                keys.push(chunk_key(partition, &piece.sha256, i));
                payloads.push(chunk);
            }
        }
        let chunks: Vec<Produce<'_>> = (keys.iter().zip(&payloads))
            .map(|(key, payload)| Produce {
                topic: &self.topic,
                partition: home,
                key: Some(key.as_bytes()),
                payload: Some(payload),
                source: None,
                copy: None,
            })
            .collect();
        produce_all(producer, &chunks).await?;
        let manifest = serde_json::json!({
            "format": FORMAT,
            "version": VERSION,
            "pieces": pieces.iter().map(Piece::to_json).collect::<Vec<_>>(),
            "bytes": chain.iter().map(Vec::len).sum::<usize>(),
            "partition": partition,
            "partitions": count,
            "data": data_next,
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
                copy: None,
            }],
        )
        .await?;
        let keys: Vec<String> = (held.iter())
            .filter(|old| !pieces.contains(old))
            .flat_map(|old| (0..old.chunks).map(|i| chunk_key(partition, &old.sha256, i)))
            .collect();
        let tombstones: Vec<Produce<'_>> = (keys.iter())
            .map(|key| Produce {
                topic: &self.topic,
                partition: home,
                key: Some(key.as_bytes()),
                payload: None,
                source: None,
                copy: None,
            })
            .collect();
        produce_all(producer, &tombstones).await?;
        Ok(SaveMark { pieces })
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
    let pieces: Vec<Piece> = (m["pieces"].as_array().into_iter().flatten())
        .map(Piece::from_json)
        .collect::<Option<_>>()
        .context("the manifest's pieces are not {sha256, chunks}")?;
    anyhow::ensure!(!pieces.is_empty(), "the manifest names no piece");
    let mut chain = Vec::with_capacity(pieces.len());
    for (n, piece) in pieces.iter().enumerate() {
        let mut bytes = Vec::new();
        for i in 0..piece.chunks {
            match latest.get(&chunk_key(partition, &piece.sha256, i)) {
                Some(Some(chunk)) => bytes.extend_from_slice(chunk),
                _ => anyhow::bail!(
                    "chunk {i} of {} of piece {n} ({}) is missing",
                    piece.chunks,
                    piece.sha256
                ),
            }
        }
        anyhow::ensure!(
            hex(&Sha256::digest(&bytes)) == piece.sha256,
            "piece {n} ({}) does not match its checksum",
            piece.sha256
        );
        chain.push(bytes);
    }
    let data_next = (m["data"].as_object().into_iter().flatten())
        .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
        .collect();
    Ok((Saved { chain, data_next }, SaveMark { pieces }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records a save of `chain` for partition 3 of 12 leaves in the changelog.
    fn saved(chain: &[Vec<u8>]) -> (Vec<u8>, HashMap<String, Option<Vec<u8>>>) {
        let mut chunks = HashMap::new();
        let mut pieces = Vec::new();
        for bytes in chain {
            let sha256 = hex(&Sha256::digest(bytes));
            let cut: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
            for (i, chunk) in cut.iter().enumerate() {
                chunks.insert(chunk_key(3, &sha256, i), Some(chunk.to_vec()));
            }
            pieces.push(Piece {
                sha256,
                chunks: cut.len(),
            });
        }
        let manifest = serde_json::json!({
            "format": FORMAT, "version": VERSION,
            "pieces": pieces.iter().map(Piece::to_json).collect::<Vec<_>>(),
            "partition": 3, "partitions": 12, "data": {"agents.traffic": 42},
        })
        .to_string()
        .into_bytes();
        (manifest, chunks)
    }

    fn snapshot_and_changes() -> Vec<Vec<u8>> {
        let snapshot: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        vec![snapshot, b"changes one".to_vec(), b"changes two".to_vec()]
    }

    #[test]
    fn a_chain_in_chunks_comes_back_whole_in_order_with_its_offsets() {
        let chain = snapshot_and_changes();
        let (manifest, chunks) = saved(&chain);
        assert_eq!(chunks.len(), 5);
        let (back, mark) = assemble(3, 12, &manifest, &chunks).unwrap();
        assert_eq!(back.chain, chain);
        assert_eq!(back.data_next["agents.traffic"], 42);
        assert_eq!(
            mark.pieces.iter().map(|p| p.chunks).collect::<Vec<_>>(),
            [3, 1, 1]
        );
    }

    #[test]
    fn a_chain_that_does_not_add_up_is_refused_with_the_reason() {
        let chain = snapshot_and_changes();
        let (manifest, chunks) = saved(&chain);
        let refusal = |chunks: &HashMap<String, Option<Vec<u8>>>, count: u32| {
            format!("{:#}", assemble(3, count, &manifest, chunks).unwrap_err())
        };
        // A chunk tombstoned or not yet read: of the snapshot, of the changes.
        let snapshot = hex(&Sha256::digest(&chain[0]));
        let mut missing = chunks.clone();
        missing.insert(chunk_key(3, &snapshot, 1), None);
        assert!(refusal(&missing, 12).contains("chunk 1 of 3 of piece 0"));
        let changes = hex(&Sha256::digest(&chain[2]));
        let mut missing = chunks.clone();
        missing.remove(&chunk_key(3, &changes, 0));
        assert!(refusal(&missing, 12).contains("chunk 0 of 1 of piece 2"));
        // A chunk altered.
        let mut altered = chunks.clone();
        if let Some(Some(chunk)) = altered.get_mut(&chunk_key(3, &changes, 0)) {
            chunk[0] ^= 1;
        }
        assert!(refusal(&altered, 12).contains("piece 2"));
        assert!(refusal(&altered, 12).contains("checksum"));
        // The traffic topic's partitions changed: agents moved between partitions.
        assert!(refusal(&chunks, 24).contains("the input topics now have 24"));
    }
}
