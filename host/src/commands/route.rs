//! `clawwatch route`: keys records for clawwatch instances sharing a
//! partitioned log. Stateless, so a site runs as many as it needs: each
//! record is recognised; traffic is keyed by its agent-side address (so one
//! agent's traffic reaches one instance, in order); lifecycle and intent are
//! copied into every partition, so every partition's engine knows every
//! agent and meets each control record where it stood among the traffic
//! (a spawn before the agent's flows, a heartbeat after those of its
//! window), however the records are batched or delayed on the way: within
//! a partition Kafka keeps the producer's order. Every record is produced,
//! the unreadable ones unkeyed (the instance that takes them tags them),
//! and a batch counts as routed only once the broker acknowledged all of
//! it. It reads files, stdin, or a Kafka topic shippers write to unkeyed
//! (committing what it read only once what it produced is acked).

use crate::cli::RouteArgs;
use crate::sink::kafka::{Produce, partition_count, produce_all};
use anyhow::{Context, Result};
use clawwatch_plugin::route::{Route, route};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Records produced before waiting for the broker's acknowledgements.
const BATCH: usize = 1024;

pub fn run(args: RouteArgs) -> Result<()> {
    let (policy_name, policy_text) = crate::cli::load_policy(args.policy.as_deref())?;
    let policy = clawwatch_plugin::Policy::from_toml(&policy_text)
        .map_err(|e| anyhow::anyhow!("{policy_name}: {e}"))?;
    let connection = crate::sink::kafka::Connection {
        brokers: args.kafka_brokers.clone(),
        options: args.kafka_option.clone(),
    };
    let producer = connection.producer()?;
    let partitions = {
        use rdkafka::producer::Producer;
        // Every partition gets a copy of each control record.
        partition_count(producer.client(), &args.kafka_brokers, &args.kafka_output)? as i32
    };
    let mut router = Router {
        policy,
        hint: (args.format.as_deref()).and_then(clawwatch_plugin::record::InputFormat::from_name),
        partitions,
        topic: &args.kafka_output,
        producer,
        runtime: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?,
        batch: Vec::with_capacity(BATCH),
        counts: Counts::default(),
    };
    if args.kafka_input.is_empty() {
        route_lines(&args, &mut router)?;
    } else {
        route_topics(&args, &connection, &mut router)?;
    }
    let counts = &router.counts;
    eprintln!(
        "clawwatch route: {} records to {}: {} traffic ({} with no agent-side address, unkeyed), {} control, each copied into all {partitions} partitions",
        counts.data + counts.control,
        args.kafka_output,
        counts.data,
        counts.unkeyed,
        counts.control,
    );
    Ok(())
}

/// Files (or stdin), read in order to their end.
fn route_lines(args: &RouteArgs, router: &mut Router<'_>) -> Result<()> {
    let mut inputs: Vec<(String, Box<dyn BufRead>)> = Vec::new();
    if args.input.is_empty() {
        inputs.push(("stdin".into(), Box::new(std::io::stdin().lock())));
    }
    for path in &args.input {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening input {}", path.display()))?;
        inputs.push((
            path.display().to_string(),
            Box::new(std::io::BufReader::with_capacity(1 << 20, file)),
        ));
    }
    for (name, mut reader) in inputs {
        loop {
            let mut line = Vec::new();
            let read = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {name}"))?;
            if read == 0 {
                break;
            }
            router.take(line);
            if router.batch.len() >= BATCH {
                router.produce()?;
            }
        }
        router.produce()?;
    }
    Ok(())
}

/// `--kafka-input` topics, as a member of `--kafka-group`, until
/// interrupted; offsets are committed once what they became is acked.
fn route_topics(
    args: &RouteArgs,
    connection: &crate::sink::kafka::Connection,
    router: &mut Router<'_>,
) -> Result<()> {
    let consumer: BaseConsumer = connection
        .client()
        .set("group.id", &args.kafka_group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the Kafka consumer")?;
    let topics: Vec<&str> = args.kafka_input.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("subscribing to {}", topics.join(", ")))?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let handle = router.runtime.handle().clone();
        std::thread::spawn(move || {
            handle.block_on(crate::pipeline::interrupted());
            stop.store(true, Ordering::SeqCst);
        });
    }
    while !stop.load(Ordering::SeqCst) {
        let mut read = 0;
        let mut wait = Duration::from_millis(100);
        while read < BATCH {
            match consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    read += 1;
                    // A message is one record or several NDJSON lines; an
                    // empty one is an (unreadable) record too, as a blank line is.
                    let payload = message.payload().unwrap_or_default();
                    if payload.is_empty() {
                        router.take(Vec::new());
                    }
                    for line in payload.split_inclusive(|b| *b == b'\n') {
                        router.take(line.to_vec());
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "reading from Kafka"),
            }
            wait = Duration::ZERO;
        }
        if read > 0 {
            router.produce()?;
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                // At least once: uncommitted records are routed again.
                tracing::warn!(error = %e, "committing what was routed failed");
            }
        }
    }
    Ok(())
}

/// A record waiting to be produced: (partition, key, record, which copy).
type Routed = (Option<i32>, Option<Vec<u8>>, Vec<u8>, Option<String>);

/// Recognises records and produces them, keyed (traffic) or copied into
/// every partition (control).
struct Router<'a> {
    policy: clawwatch_plugin::Policy,
    hint: Option<clawwatch_plugin::record::InputFormat>,
    partitions: i32,
    topic: &'a str,
    producer: rdkafka::producer::FutureProducer,
    runtime: tokio::runtime::Runtime,
    batch: Vec<Routed>,
    counts: Counts,
}

impl Router<'_> {
    fn take(&mut self, mut line: Vec<u8>) {
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        match route(&line, &self.policy, self.hint) {
            Route::Data(address) => {
                self.counts.data += 1;
                self.counts.unkeyed += usize::from(address.is_none());
                let key = address.map(|a| a.to_string().into_bytes());
                self.batch.push((None, key, line, None));
            }
            Route::Control(agent) => {
                self.counts.control += 1;
                let key = agent.map(String::into_bytes);
                for p in 0..self.partitions {
                    // A single instance reading every partition judges copy 0 alone.
                    let copy = Some(format!("{p}/{}", self.partitions));
                    self.batch.push((Some(p), key.clone(), line.clone(), copy));
                }
            }
        }
    }

    /// Produces the batch and returns once the broker acknowledged all of it.
    fn produce(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let records: Vec<Produce<'_>> = (self.batch.iter())
            .map(|(partition, key, line, copy)| Produce {
                topic: self.topic,
                partition: *partition,
                key: key.as_deref(),
                payload: Some(line),
                source: None,
                copy: copy.as_deref(),
            })
            .collect();
        self.runtime
            .block_on(produce_all(&self.producer, &records))?;
        self.batch.clear();
        Ok(())
    }
}

#[derive(Default)]
struct Counts {
    data: usize,
    unkeyed: usize,
    control: usize,
}
