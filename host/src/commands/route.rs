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
//! it.

use crate::cli::RouteArgs;
use crate::sink::kafka::{Produce, partition_count, produce_all};
use anyhow::{Context, Result};
use clawwatch_plugin::route::{Route, route};
use std::io::BufRead;

/// Records produced before waiting for the broker's acknowledgements.
const BATCH: usize = 1024;

pub fn run(args: RouteArgs) -> Result<()> {
    let (policy_name, policy_text) = crate::cli::load_policy(args.policy.as_deref())?;
    let policy = clawwatch_plugin::Policy::from_toml(&policy_text)
        .map_err(|e| anyhow::anyhow!("{policy_name}: {e}"))?;
    let hint = args
        .format
        .as_deref()
        .and_then(clawwatch_plugin::record::InputFormat::from_name);
    let producer = crate::sink::kafka::Connection {
        brokers: args.kafka_brokers.clone(),
        options: args.kafka_option.clone(),
    }
    .producer()?;
    let partitions = {
        use rdkafka::producer::Producer;
        // Every partition gets a copy of each control record.
        partition_count(producer.client(), &args.kafka_brokers, &args.kafka_output)? as i32
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut counts = Counts::default();
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
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let mut line = Vec::new();
            let read = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {name}"))?;
            if read > 0 {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                match route(&line, &policy, hint) {
                    Route::Data(address) => {
                        counts.data += 1;
                        counts.unkeyed += usize::from(address.is_none());
                        let key = address.map(|a| a.to_string().into_bytes());
                        batch.push((None, key, line));
                    }
                    Route::Control(agent) => {
                        counts.control += 1;
                        let key = agent.map(String::into_bytes);
                        for p in 0..partitions {
                            batch.push((Some(p), key.clone(), line.clone()));
                        }
                    }
                }
            }
            if batch.len() >= BATCH || (read == 0 && !batch.is_empty()) {
                let records: Vec<Produce<'_>> = (batch.iter())
                    .map(
                        |(partition, key, line): &(Option<i32>, Option<Vec<u8>>, Vec<u8>)| {
                            Produce {
                                topic: &args.kafka_output,
                                partition: *partition,
                                key: key.as_deref(),
                                payload: Some(line),
                                source: None,
                            }
                        },
                    )
                    .collect();
                runtime.block_on(produce_all(&producer, &records))?;
                batch.clear();
            }
            if read == 0 {
                break;
            }
        }
    }
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

#[derive(Default)]
struct Counts {
    data: usize,
    unkeyed: usize,
    control: usize,
}
