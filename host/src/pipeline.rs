//! `clawwatch run`: sources → engine stage → sink, in input order.
//!
//! Three stages joined by small bounded channels (backpressure, and reading
//! overlaps judging): the sources cutting batches, the engine on a blocking
//! thread, and the sink. A sender hears its records are safe only once the
//! sink's carrier confirmed them.

use crate::component::{Limits, Monitor, Runtime};
use crate::metrics;
use crate::sink::{self, Output};
use crate::source::lines::{self, BatchLimits, IdlePolicy, Splitter};
use crate::source::listener::{self, Protocol};
use crate::source::{Chunk, Input};
use crate::stage::state::StateFile;
use crate::stage::{Delivery, Stage, reload};
use anyhow::{Context, Result};
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub struct RunOptions {
    pub policy_name: String,
    pub policy_text: String,
    /// The policy file, watched for changes and re-read on SIGHUP.
    pub policy_path: Option<PathBuf>,
    pub inputs: Vec<Input>,
    /// An OpenClaw gateway followed live, beside the inputs, until interrupted.
    pub openclaw: Option<crate::source::openclaw_gateway::GatewayOptions>,
    /// Write only records whose verdict is `alert` (the demo's digest view).
    pub alerts_only: bool,
    /// The input format, when the operator named it.
    pub stream: Option<String>,
    pub output: Output,
    pub component: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
    pub batch: BatchLimits,
    pub idle: IdlePolicy,
    /// Connections a listener serves at once.
    pub max_connections: usize,
    /// Memory connections may hold unfinished.
    pub budget: crate::source::budget::Budget,
    pub progress_every: Duration,
    /// Where the engine's state is restored from and saved to, and how often.
    pub state: Option<(StateFile, Duration)>,
    /// Serve Prometheus metrics on this address.
    pub metrics_listen: Option<String>,
    /// The fields records leave with.
    pub field_set: crate::component::FieldSet,
}

pub async fn run(mut opts: RunOptions) -> Result<()> {
    let started = Instant::now();
    let (component, cache_dir) = (opts.component.clone(), opts.cache_dir.clone());
    let interruptible = opts.limits.batch_timeout.is_some();
    let runtime = tokio::task::spawn_blocking(move || {
        Runtime::load(component.as_deref(), cache_dir.as_deref(), interruptible)
    })
    .await??;
    let policy_name = opts.policy_name.clone();
    let mut monitor = Monitor::new(Arc::new(runtime), &opts.policy_text, opts.limits.clone())
        .map_err(|e| e.explain(&policy_name))?;
    monitor.set_field_set(opts.field_set)?;
    let metrics = metrics::Shared::default();
    // Engine totals are read at most this often for the metrics endpoint.
    let stats_every = if opts.metrics_listen.is_some() {
        Duration::from_millis(500)
    } else {
        Duration::MAX
    };
    let (mut stage, snapshot_every) = Stage::start(
        monitor,
        opts.state.take(),
        metrics.clone(),
        opts.alerts_only,
        opts.stream.clone(),
        stats_every,
    )?;
    {
        let baseline = stage.monitor().stats().context("reading engine stats")?;
        let mut m = metrics.lock().expect("metrics lock");
        m.set_baseline(baseline.clone());
        m.set_engine(baseline);
    }
    let metrics_server = match opts.metrics_listen.clone() {
        Some(addr) => {
            // Bind before reading input, so a wrong address fails the start.
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("serving metrics on {addr}"))?;
            Some(tokio::spawn(metrics::serve(listener, metrics.clone())))
        }
        None => None,
    };
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "engine ready"
    );

    let (in_tx, in_rx) = mpsc::channel::<Chunk>(4);
    let (out_tx, out_rx) = mpsc::channel::<Delivery>(4);
    let progress_every = opts.progress_every;
    let judge = tokio::task::spawn_blocking(move || stage.run(in_rx, out_tx, progress_every));
    let writer = tokio::spawn(sink::deliver(opts.output.clone(), out_rx));

    let max_latency = opts.idle.max_latency;
    let watcher = match opts.policy_path.clone() {
        Some(path) => tokio::spawn(reload::watch_policy(path, in_tx.clone(), max_latency)),
        None => tokio::spawn(reload::ignore_hangups()),
    };
    let snapshotter = snapshot_every.map(|every| {
        let tx = in_tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                if tx.send(Chunk::Snapshot).await.is_err() {
                    return;
                }
            }
        })
    });
    // Ctrl-C or SIGTERM ends every input after it hands on what it has read;
    // then the last batches are judged and written and the state saved.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        interrupted().await;
        let _ = stop_tx.send(true);
    });
    let stopped = || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    };
    let gateway = opts.openclaw.take().map(|options| {
        tokio::spawn(crate::source::openclaw_gateway::follow(
            options,
            in_tx.clone(),
            stopped(),
        ))
    });
    let mut splitter = Splitter::new(opts.batch.clone());
    let limits = listener::Limits {
        max_connections: opts.max_connections,
        budget: opts.budget.clone(),
    };
    let read_result = async {
        for input in &opts.inputs {
            if *stop.borrow() {
                break;
            }
            match input {
                Input::Stdin => lines::read_input_until(
                    tokio::io::stdin(),
                    &mut splitter,
                    &in_tx,
                    opts.idle,
                    stopped(),
                )
                .await
                .context("reading stdin")?,
                Input::Embedded(bytes) => {
                    lines::read_input_until(*bytes, &mut splitter, &in_tx, opts.idle, stopped())
                        .await?
                }
                Input::Listen(addr) => {
                    let protocol = Protocol::Ndjson(opts.batch.clone(), opts.idle);
                    listener::listen(addr, protocol, &in_tx, &limits, &metrics, stopped()).await?
                }
                Input::Forward(addr) => {
                    listener::listen(
                        addr,
                        Protocol::Forward,
                        &in_tx,
                        &limits,
                        &metrics,
                        stopped(),
                    )
                    .await?
                }
                Input::Kafka(kafka) => {
                    crate::source::kafka::consume(kafka, &in_tx, &opts.batch, opts.idle, stopped())
                        .await?
                }
                Input::Http(addr) => {
                    crate::source::http::serve(
                        addr,
                        &in_tx,
                        &limits,
                        &opts.batch,
                        &metrics,
                        stopped(),
                    )
                    .await?
                }
                Input::File(path) => {
                    let file = tokio::fs::File::open(path)
                        .await
                        .with_context(|| format!("opening input {}", path.display()))?;
                    lines::read_input_until(file, &mut splitter, &in_tx, opts.idle, stopped())
                        .await
                        .with_context(|| format!("reading input {}", path.display()))?;
                }
            }
        }
        // A gateway followed live goes on until interrupted (or refused).
        if let Some(gateway) = gateway {
            gateway.await.context("OpenClaw gateway task")??;
        }
        anyhow::Ok(())
    }
    .await;
    for task in std::iter::once(watcher).chain(snapshotter) {
        task.abort();
    }
    drop(in_tx);

    let (mut monitor, final_save_failed) = judge.await.context("engine thread")?;
    let write_result = writer.await.context("writer task")?;
    match write_result {
        // A closed stdout (`| head`) ends the run quietly, as for any Unix filter.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(e).context("writing the output"),
        Ok(()) => {}
    }
    read_result?;

    let stats = monitor.stats().context("reading engine stats")?;
    let summary = {
        let mut m = metrics.lock().expect("metrics lock");
        m.set_engine(stats);
        m.oversized_lines += splitter.oversized_lines;
        m.engine_restarts = monitor.restarts();
        m.summary(started.elapsed())
    };
    if let Some(server) = metrics_server {
        server.abort();
    }
    eprintln!("{summary}");
    anyhow::ensure!(
        !final_save_failed,
        "the state could not be saved at shutdown (said above); the previous snapshot, if any, stays"
    );
    Ok(())
}

pub async fn interrupted() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
