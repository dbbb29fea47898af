//! `clawwatch run` and `clawwatch demo`: the command line turned into a
//! pipeline's options.

use crate::cli::{DemoArgs, RunArgs};
use crate::pipeline::{self, RunOptions};
use crate::sink::Output;
use crate::source::budget::Budget;
use crate::source::lines::{BatchLimits, IdlePolicy};
use crate::source::{Input, openclaw_gateway};
use crate::stage::state::StateFile;
use anyhow::{Context, Result};
use std::time::Duration;

/// The sample scenario bundled with clawwatch (testdata/scenario/records.ndjson).
const SAMPLE_RECORDS: &[u8] = include_bytes!("../../../testdata/scenario/records.ndjson");

pub fn run(args: RunArgs) -> Result<()> {
    anyhow::ensure!(
        args.engine.batch_records > 0,
        "--batch-records must be at least 1"
    );
    let listeners = [&args.listen, &args.forward_listen, &args.http_listen];
    anyhow::ensure!(
        listeners.iter().filter(|l| l.is_some()).count() <= 1,
        "--listen, --forward-listen and --http-listen: run one clawwatch per listener"
    );
    let (policy_name, policy_text) = args.engine.policy()?;
    if let (Some(changelog), Some(output)) = (&args.kafka_changelog, &args.kafka_output) {
        return run_in_group(&args, changelog, output, policy_name, policy_text);
    }
    let mut inputs: Vec<Input> = args.input.iter().cloned().map(Input::File).collect();
    let openclaw = match &args.openclaw_gateway {
        Some(url) => Some(openclaw_gateway::GatewayOptions::new(
            url,
            args.openclaw_token_file.as_deref(),
            args.openclaw_device_key
                .clone()
                .unwrap_or_else(openclaw_gateway::default_device_key),
        )?),
        None => None,
    };
    if !args.kafka_input.is_empty() {
        inputs.push(Input::Kafka(crate::source::kafka::KafkaInput {
            connection: connection(&args),
            group: args.kafka_group.clone(),
            topics: args.kafka_input.clone(),
        }));
    }
    let output = match &args.kafka_output {
        Some(topic) => {
            anyhow::ensure!(
                args.output == Output::Stdout,
                "--kafka-output and --output: records go to one place"
            );
            Output::Kafka(crate::sink::kafka::KafkaOutput {
                connection: connection(&args),
                topic: topic.clone(),
                incidents: args.kafka_incidents.clone(),
            })
        }
        None => args.output.clone(),
    };
    match (&args.listen, &args.forward_listen, &args.http_listen) {
        (Some(addr), _, _) => inputs.push(Input::Listen(addr.clone())),
        (_, Some(addr), _) => inputs.push(Input::Forward(addr.clone())),
        (_, _, Some(addr)) => inputs.push(Input::Http(addr.clone())),
        // A live gateway alone is input enough; stdin is not read then.
        _ if inputs.is_empty() && openclaw.is_none() => inputs.push(Input::Stdin),
        _ => {}
    }
    let mib = |n: usize| n.max(1).saturating_mul(1 << 20);
    let opts = RunOptions {
        policy_name,
        policy_text,
        policy_path: args.engine.policy.clone(),
        inputs,
        openclaw,
        alerts_only: false,
        stream: args.format.clone(),
        output,
        component: args.engine.component.clone(),
        cache_dir: args.engine.cache_dir(),
        limits: args.engine.limits(),
        batch: BatchLimits {
            records: args.engine.batch_records,
            bytes: 4 << 20,
            line_bytes: args.max_line_bytes.max(1),
        },
        idle: IdlePolicy {
            max_latency: Duration::from_millis(args.max_latency_ms.max(1)),
            advance: (args.idle_advance_secs > 0)
                .then(|| Duration::from_secs(args.idle_advance_secs)),
        },
        progress_every: Duration::from_secs(args.progress_secs.max(1)),
        max_connections: args.max_connections,
        budget: Budget::new(
            mib(args.input_budget_mib),
            mib(args.connection_budget_mib),
            Duration::from_secs(args.message_deadline_secs.max(1)),
        ),
        metrics_listen: args.metrics_listen.clone(),
        field_set: args.fields.into(),
        state: args.state.clone().map(|path| {
            (
                StateFile::new(path),
                Duration::from_secs(args.snapshot_secs.max(1)),
            )
        }),
    };
    block_on(pipeline::run(opts))
}

/// The Kafka brokers and client properties the command line names.
fn connection(args: &RunArgs) -> crate::sink::kafka::Connection {
    crate::sink::kafka::Connection {
        brokers: args.kafka_brokers.clone().unwrap_or_default(),
        options: args.kafka_option.clone(),
    }
}

/// One of several instances sharing Kafka topics (`--kafka-changelog`).
fn run_in_group(
    args: &RunArgs,
    changelog: &str,
    output: &str,
    policy_name: String,
    policy_text: String,
) -> Result<()> {
    let alone = [
        (!args.input.is_empty(), "--input"),
        (args.listen.is_some(), "--listen"),
        (args.forward_listen.is_some(), "--forward-listen"),
        (args.http_listen.is_some(), "--http-listen"),
        (args.openclaw_gateway.is_some(), "--openclaw-gateway"),
        (args.state.is_some(), "--state"),
        (args.output != Output::Stdout, "--output"),
        (args.metrics_listen.is_some(), "--metrics-listen"),
    ];
    if let Some((_, flag)) = alone.iter().find(|(given, _)| *given) {
        anyhow::bail!(
            "{flag} with --kafka-changelog: an instance in a group reads only its Kafka topics, writes to --kafka-output and keeps its state in --kafka-changelog"
        );
    }
    crate::group::run(crate::group::GroupOptions {
        output: crate::sink::kafka::KafkaOutput {
            connection: connection(args),
            topic: output.to_string(),
            incidents: args.kafka_incidents.clone(),
        },
        group: args.kafka_group.clone(),
        data_topics: args.kafka_input.clone(),
        changelog_topic: changelog.to_string(),
        policy_name,
        policy_text,
        component: args.engine.component.clone(),
        cache_dir: args.engine.cache_dir(),
        limits: args.engine.limits(),
        field_set: args.fields.into(),
        batch_records: args.engine.batch_records,
        snapshot_every: Duration::from_secs(args.snapshot_secs.max(1)),
        progress_every: Duration::from_secs(args.progress_secs.max(1)),
    })
}

pub fn demo(args: DemoArgs) -> Result<()> {
    let (policy_name, policy_text) = args.engine.policy()?;
    eprintln!("clawwatch: running the bundled sample scenario (testdata/scenario/records.ndjson)");
    let opts = RunOptions {
        policy_name,
        policy_text,
        policy_path: None,
        inputs: vec![Input::Embedded(SAMPLE_RECORDS)],
        openclaw: None,
        alerts_only: args.alerts_only,
        stream: None,
        output: Output::Stdout,
        component: args.engine.component.clone(),
        cache_dir: args.engine.cache_dir(),
        limits: args.engine.limits(),
        batch: BatchLimits {
            records: args.engine.batch_records.max(1),
            bytes: 4 << 20,
            line_bytes: 1 << 20,
        },
        idle: IdlePolicy {
            max_latency: Duration::from_millis(200),
            advance: None,
        },
        progress_every: Duration::from_secs(10),
        max_connections: 1,
        budget: Budget::new(64 << 20, 64 << 20, Duration::from_secs(60)),
        state: None,
        metrics_listen: None,
        field_set: args.fields.into(),
    };
    block_on(pipeline::run(opts))
}

fn block_on(run: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run)
}
