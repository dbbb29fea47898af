//! `clawwatch run --kafka-changelog`: one of several instances sharing the
//! work through a Kafka consumer group (DESIGN §8), never a cluster of
//! clawwatch's own.
//!
//! - `clawwatch route` keys traffic by its agent-side address and puts a
//!   copy of every control record (spawns, plans, heartbeats, approvals…)
//!   into every partition, in input order among the traffic. The group
//!   splits the partitions among the instances, and each assigned
//!   partition gets an engine of its own, so its state can move with it.
//! - An engine reads its partition as one engine reads a file: it knows
//!   every agent, meets a spawn before the agent's flows and a heartbeat
//!   after the flows of its window, however late or bunched the records
//!   arrive. Only the engine of the agent's partition writes a control
//!   record's output ([`clawwatch_plugin::route::Partition`]), so each
//!   input record is written once.
//! - Each partition's state and the offsets it covers are saved to a
//!   compacted changelog topic every `--snapshot-secs` and when the
//!   partition is revoked; the next owner restores it and reads on from
//!   exactly where the state ends. Offsets are committed only with a save,
//!   after the output is acked: a crash re-reads (and re-writes, with the
//!   same `clawwatch.source` header) what came after the last save: at
//!   least once.

pub mod changelog;

use crate::component::{FieldSet, Limits, Monitor, Runtime, Stream};
use crate::sink::kafka::{KafkaOutput, Produce, agent_of, partition_count, produce_all};
use anyhow::{Context, Result};
use changelog::{Changelog, SaveMark};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct GroupOptions {
    pub group: String,
    /// Keyed by agent-side address, control copied into every partition;
    /// all with one partition count.
    pub data_topics: Vec<String>,
    /// Compacted: each partition's saved state.
    pub changelog_topic: String,
    pub output: KafkaOutput,
    pub policy_name: String,
    pub policy_text: String,
    pub component: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
    pub field_set: FieldSet,
    pub batch_records: usize,
    pub snapshot_every: Duration,
    pub progress_every: Duration,
}

/// One partition's engine and the input its state covers.
struct PartitionEngine {
    monitor: Monitor,
    data_next: BTreeMap<String, i64>,
    saved: Option<SaveMark>,
    /// Learnt something since the last save.
    dirty: bool,
}

/// Output gathered before it is produced (and its acknowledgement awaited):
/// a broker round trip per this many records rather than per batch.
const PRODUCE_RECORDS: usize = 16_384;
/// How long output may wait to be gathered.
const PRODUCE_AFTER: Duration = Duration::from_millis(200);

/// A record read from Kafka.
struct Read {
    topic: String,
    partition: i32,
    offset: i64,
    /// One record or several NDJSON lines, ending in `\n`.
    ndjson: Vec<u8>,
}

impl Read {
    fn of(message: &rdkafka::message::BorrowedMessage<'_>) -> Read {
        let mut ndjson = message.payload().unwrap_or_default().to_vec();
        if ndjson.last() != Some(&b'\n') {
            ndjson.push(b'\n');
        }
        Read {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            ndjson,
        }
    }

    fn lines(&self) -> usize {
        memchr::memchr_iter(b'\n', &self.ndjson).count()
    }

    /// The `clawwatch.source` of its `line`th line.
    fn source(&self, line: usize) -> String {
        match line {
            0 => format!("{}/{}/{}", self.topic, self.partition, self.offset),
            n => format!("{}/{}/{}/{n}", self.topic, self.partition, self.offset),
        }
    }
}

/// An output record waiting to be produced.
struct Written {
    incident: bool,
    line: Vec<u8>,
    source: String,
}

/// Everything the instance holds; the rebalance callback reaches it too.
struct Instance {
    opts: GroupOptions,
    runtime: Arc<Runtime>,
    /// The input topics' partition count: what agents' keys are hashed over.
    count: u32,
    producer: FutureProducer,
    tokio: tokio::runtime::Runtime,
    changelog: Changelog,
    engines: BTreeMap<u32, PartitionEngine>,
    /// Engines of revoked partitions, saved; taken back if reassigned here
    /// and nobody saved a newer state since.
    parked: BTreeMap<u32, PartitionEngine>,
    pending: Vec<Written>,
    /// When the oldest of `pending` was judged.
    pending_since: Option<Instant>,
    /// A failure inside the rebalance callback, for the loop to end on.
    failure: Option<anyhow::Error>,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    /// Assignments and revocations so far.
    rebalances: u64,
    read: u64,
    written: u64,
    saves: u64,
    restored: u64,
}

struct Rebalancer {
    instance: Arc<Mutex<Instance>>,
}

impl ClientContext for Rebalancer {
    fn error(&self, error: KafkaError, reason: &str) {
        client_error(error, reason);
    }
}

/// A reader told when it reaches a partition's end (the changelog's): that
/// is news, not an error to log.
pub struct Reader;

impl ClientContext for Reader {
    fn error(&self, error: KafkaError, reason: &str) {
        client_error(error, reason);
    }
}

impl ConsumerContext for Reader {}

fn client_error(error: KafkaError, reason: &str) {
    let end = matches!(error, KafkaError::PartitionEOF(_))
        || error.rdkafka_error_code() == Some(rdkafka::error::RDKafkaErrorCode::PartitionEOF);
    if !end {
        tracing::error!("Kafka client: {error}: {reason}");
    }
}

impl ConsumerContext for Rebalancer {
    /// Eager rebalancing: everything is revoked, then the new assignment
    /// given. Revoked partitions are saved (and their offsets committed)
    /// before another member can take them; assigned ones are restored
    /// before their first record is read, and read on from exactly where
    /// their saved state ends.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut instance = self.instance.lock().expect("instance lock");
        instance.counts.rebalances += 1;
        let outcome = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => instance
                .assign(tpl)
                .and_then(|()| consumer.assign(tpl).context("taking the assignment")),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let saved = instance.save_all(consumer);
                instance.park_all();
                saved.and_then(|()| consumer.unassign().context("giving up the assignment"))
            }
            other => {
                tracing::error!(error = ?other, "Kafka rebalance failed");
                consumer.unassign().context("giving up the assignment")
            }
        };
        if let Err(e) = outcome {
            instance.failure.get_or_insert(e);
        }
    }
}

pub fn run(opts: GroupOptions) -> Result<()> {
    let started = Instant::now();
    let runtime = Arc::new(Runtime::load(
        opts.component.as_deref(),
        opts.cache_dir.as_deref(),
        opts.limits.batch_timeout.is_some(),
    )?);
    // A policy that does not load is said before joining the group.
    Monitor::new(runtime.clone(), &opts.policy_text, opts.limits.clone())
        .map_err(|e| e.explain(&opts.policy_name))?;
    let (connection, group) = (opts.output.connection.clone(), opts.group.clone());
    let brokers = &connection.brokers;
    let client = |suffix: &str| {
        let mut config = connection.client();
        config
            .set("group.id", format!("{group}{suffix}"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        config
    };
    let metadata: BaseConsumer<Reader> = client(".metadata")
        .create_with_context(Reader)
        .context("creating a Kafka client")?;
    let partitions_of = |topic: &str| partition_count(metadata.client(), brokers, topic);
    let mut count = None;
    for topic in &opts.data_topics {
        let n = partitions_of(topic)? as u32;
        match count {
            Some(c) if c != n => anyhow::bail!(
                "the --kafka-input topics must have one partition count (an agent's partition is its key's hash modulo that count): {topic} has {n}, the first has {c}"
            ),
            _ => count = Some(n),
        }
    }
    let count = count.context("--kafka-changelog needs at least one --kafka-input topic")?;
    let changelog = Changelog {
        partitions: partitions_of(&opts.changelog_topic)? as i32,
        topic: opts.changelog_topic.clone(),
    };
    let producer = opts.output.connection.producer()?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let data_topics = opts.data_topics.clone();
    let instance = Arc::new(Mutex::new(Instance {
        opts,
        runtime,
        count,
        producer,
        tokio,
        changelog,
        engines: BTreeMap::new(),
        parked: BTreeMap::new(),
        pending: Vec::new(),
        pending_since: None,
        failure: None,
        counts: Counts::default(),
    }));
    let data: BaseConsumer<Rebalancer> = client("")
        // Same-numbered partitions of every input topic to one member: one
        // engine holds partition p of them all.
        .set("partition.assignment.strategy", "range")
        // A member that stops heartbeating loses its partitions within 10 s
        // (librdkafka's default is 45 s).
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .create_with_context(Rebalancer {
            instance: instance.clone(),
        })
        .context("creating the Kafka consumer")?;
    let topics: Vec<&str> = data_topics.iter().map(String::as_str).collect();
    data.subscribe(&topics)
        .with_context(|| format!("subscribing to {}", data_topics.join(", ")))?;
    tracing::info!(%brokers, %group, partitions = count, topics = %data_topics.join(","), "sharing the work in a Kafka consumer group");

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(crate::pipeline::interrupted());
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    let (batch, progress_every, snapshot_every) = {
        let i = instance.lock().expect("instance lock");
        let o = &i.opts;
        (o.batch_records.max(1), o.progress_every, o.snapshot_every)
    };
    let mut last_save = Instant::now();
    let mut last_progress = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        // Rebalances are handled inside poll, on this thread.
        let mut read = Vec::new();
        let mut wait = Duration::from_millis(50);
        while read.len() < batch {
            let rebalances = instance.lock().expect("instance lock").counts.rebalances;
            let polled = data.poll(wait);
            if instance.lock().expect("instance lock").counts.rebalances != rebalances {
                // Read under the previous assignment: each partition now
                // starts where its (perhaps older) saved state ends, and
                // its records come again from there.
                read.clear();
            }
            match polled {
                None => break,
                Some(Ok(message)) => read.push(Read::of(&message)),
                Some(Err(e)) => tracing::warn!(error = %e, "reading from Kafka"),
            }
            wait = Duration::ZERO;
        }
        let mut i = instance.lock().expect("instance lock");
        if let Some(e) = i.failure.take() {
            return Err(e);
        }
        let idle = read.is_empty();
        i.judge_read(read);
        i.produce_when_due(idle)?;
        if last_save.elapsed() >= snapshot_every {
            i.save_all(&data)?;
            last_save = Instant::now();
        }
        if last_progress.elapsed() >= progress_every {
            let partitions: Vec<u32> = i.engines.keys().copied().collect();
            tracing::info!(
                ?partitions,
                read = i.counts.read,
                written = i.counts.written,
                "progress"
            );
            last_progress = Instant::now();
        }
    }
    let mut i = instance.lock().expect("instance lock");
    i.save_all(&data)?;
    let Counts {
        rebalances,
        read,
        written,
        saves,
        restored,
    } = i.counts;
    let partitions: Vec<u32> = i.engines.keys().copied().collect();
    drop(i);
    eprintln!(
        "clawwatch: {read} records read in {:.2}s, {written} written; partitions {partitions:?} at the end, {restored} restored from and {saves} saves to the changelog, {rebalances} assignments and revocations",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

impl Instance {
    fn engine(&self) -> Result<Monitor> {
        Monitor::new(
            self.runtime.clone(),
            &self.opts.policy_text,
            self.opts.limits.clone(),
        )
        .map_err(|e| e.explain(&self.opts.policy_name))
    }

    /// Restores each newly assigned partition (or takes back its parked
    /// engine) and sets the assignment to start where each partition's
    /// state ends.
    fn assign(&mut self, tpl: &mut TopicPartitionList) -> Result<()> {
        let wanted: BTreeSet<u32> = tpl
            .elements()
            .iter()
            .map(|e| e.partition() as u32)
            .collect();
        let client = self.opts.output.connection.client();
        let mut saves = self
            .changelog
            .read(client, &self.opts.group, &wanted, self.count)?;
        for p in &wanted {
            let latest = saves.remove(p);
            let parked = self.parked.remove(p);
            let mut engine = match (parked, latest) {
                // Nobody saved it since we did: ours is current.
                (Some(parked), Some((_, mark))) if parked.saved.as_ref() == Some(&mark) => parked,
                (_, Some((saved, mark))) => {
                    let mut monitor = self.engine()?;
                    monitor
                        .restore_chain(&saved.chain)
                        .map_err(|e| anyhow::anyhow!("restoring partition {p}'s state: {e}"))?;
                    self.counts.restored += 1;
                    tracing::info!(
                        partition = p,
                        bytes = saved.chain.iter().map(Vec::len).sum::<usize>(),
                        pieces = saved.chain.len(),
                        "restored from the changelog"
                    );
                    PartitionEngine {
                        monitor,
                        data_next: saved.data_next,
                        saved: Some(mark),
                        dirty: false,
                    }
                }
                (_, None) => PartitionEngine {
                    monitor: self.engine()?,
                    data_next: BTreeMap::new(),
                    saved: None,
                    dirty: false,
                },
            };
            engine.monitor.set_field_set(self.opts.field_set)?;
            engine.monitor.set_partition(*p, self.count)?;
            self.engines.insert(*p, engine);
        }
        // Someone else's now.
        self.parked.clear();
        let assigned: Vec<(String, i32)> = (tpl.elements().iter())
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, p) in assigned {
            if let Some(next) = self.engines[&(p as u32)].data_next.get(&topic) {
                tpl.set_partition_offset(&topic, p, Offset::Offset(*next))?;
            }
        }
        let partitions: Vec<u32> = self.engines.keys().copied().collect();
        tracing::info!(?partitions, "assigned");
        Ok(())
    }

    /// Each partition's engine judges what was read of it, in order.
    fn judge_read(&mut self, read: Vec<Read>) {
        self.counts.read += read.len() as u64;
        let mut by_partition: BTreeMap<u32, Vec<Read>> = BTreeMap::new();
        for r in read {
            by_partition.entry(r.partition as u32).or_default().push(r);
        }
        for (p, records) in by_partition {
            self.judge_partition(p, &records);
        }
    }

    /// Engine `p` judges records of its partition: traffic is all its own;
    /// a control record's output is kept from the engine of the agent it
    /// names, as every partition holds a copy.
    fn judge_partition(&mut self, p: u32, taken: &[Read]) {
        let Some(engine) = self.engines.get_mut(&p) else {
            // Read before a revocation took the partition: its next owner
            // reads it again from the saved offsets.
            return;
        };
        // Per topic, so a topic named for a format says how to read it.
        let mut at = 0;
        while at < taken.len() {
            let topic = taken[at].topic.clone();
            let end = (at..taken.len())
                .find(|&k| taken[k].topic != topic)
                .unwrap_or(taken.len());
            let next = engine.data_next.get(&topic).copied();
            // Already in the state (read again after a restore): not again.
            let records: Vec<&Read> = taken[at..end]
                .iter()
                .filter(|r| next.is_none_or(|n| r.offset >= n))
                .collect();
            at = end;
            let (Some(first), Some(last)) = (records.first(), records.last()) else {
                continue;
            };
            if let Some(n) = next
                && first.offset > n
            {
                tracing::warn!(
                    topic,
                    partition = p,
                    expected = n,
                    got = first.offset,
                    "records missing between this partition's saved state and what Kafka gave (deleted by retention?)"
                );
            }
            engine.data_next.insert(topic.clone(), last.offset + 1);
            let stream = clawwatch_plugin::record::InputFormat::named_in_tag(&topic)
                .map(|format| format.name().to_string());
            engine.monitor.set_stream(stream);
            judge(engine, &records, &mut self.pending, |line| {
                line.partition.is_none_or(|owner| owner == p)
            });
        }
    }

    /// [`Instance::produce`] once enough output has gathered, or it has
    /// waited long enough, or no more input is coming in.
    fn produce_when_due(&mut self, idle: bool) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let since = *self.pending_since.get_or_insert_with(Instant::now);
        if idle || self.pending.len() >= PRODUCE_RECORDS || since.elapsed() >= PRODUCE_AFTER {
            self.produce()?;
        }
        Ok(())
    }

    /// Produces what was judged and returns once the broker has all of it.
    fn produce(&mut self) -> Result<()> {
        self.pending_since = None;
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let output = &self.opts.output;
        let records: Vec<Produce<'_>> = (pending.iter())
            .map(|w| Produce {
                topic: match (&output.incidents, w.incident) {
                    (Some(incidents), true) => incidents,
                    _ => &output.topic,
                },
                partition: None,
                key: agent_of(&w.line),
                payload: Some(&w.line),
                source: Some(&w.source),
                copy: None,
            })
            .collect();
        self.tokio.block_on(produce_all(&self.producer, &records))?;
        self.counts.written += records.len() as u64;
        Ok(())
    }

    /// Saves every engine that learnt something to the changelog, then
    /// commits the offsets the saves cover (what was produced is acked).
    fn save_all(&mut self, consumer: &BaseConsumer<Rebalancer>) -> Result<()> {
        self.produce()?;
        let mut commit = TopicPartitionList::new();
        let count = self.count;
        for (&p, engine) in &mut self.engines {
            if !engine.dirty {
                continue;
            }
            let chain = engine.monitor.save_chain()?;
            let (pieces, bytes) = (chain.len(), chain.iter().map(Vec::len).sum::<usize>());
            let mark = self.tokio.block_on(self.changelog.write(
                &self.producer,
                p,
                count,
                (chain, &engine.data_next),
                engine.saved.as_ref(),
            ))?;
            tracing::debug!(partition = p, pieces, bytes, "saved to the changelog");
            engine.saved = Some(mark);
            engine.dirty = false;
            self.counts.saves += 1;
            for (topic, next) in &engine.data_next {
                commit.add_partition_offset(topic, p as i32, Offset::Offset(*next))?;
            }
        }
        if commit.count() > 0
            && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
        {
            // The state is saved with its offsets: the next owner starts there anyway.
            tracing::warn!(error = %e, "committing Kafka offsets failed");
        }
        Ok(())
    }

    /// On revocation, after saving: engines wait in case their partitions
    /// come back.
    fn park_all(&mut self) {
        self.parked.append(&mut self.engines);
    }
}

/// One engine judges `records` as one batch; its lines go to `pending`,
/// each record's own line only if `keep` says so, incident and audit lines
/// (filed only by the engine owning their subject) always.
fn judge(
    engine: &mut PartitionEngine,
    records: &[&Read],
    pending: &mut Vec<Written>,
    keep: impl Fn(&crate::component::OutputLine) -> bool,
) {
    if records.is_empty() {
        return;
    }
    let ndjson: Vec<u8> = records
        .iter()
        .flat_map(|r| r.ndjson.iter().copied())
        .collect();
    let judged = engine.monitor.process(&ndjson);
    engine.dirty = true;
    let mut sources = records
        .iter()
        .flat_map(|r| (0..r.lines()).map(move |line| (*r, line)));
    let mut last: Option<(&Read, usize)> = None;
    for (bytes, line) in judged.each_line() {
        let incident = matches!(line.stream, Stream::Incident | Stream::Audit);
        if !incident {
            last = sources.next().or(last);
        }
        let Some((r, n)) = last else { continue };
        if incident || keep(line) {
            pending.push(Written {
                incident,
                line: bytes.strip_suffix(b"\n").unwrap_or(bytes).to_vec(),
                source: r.source(n),
            });
        }
    }
}
