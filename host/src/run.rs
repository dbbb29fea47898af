//! `clawwatch run`: records in (stdin or files), enriched records out (stdout),
//! through the engine component, in input order.
//!
//! Three stages joined by small bounded channels (backpressure, and reading
//! overlaps judging): a reader cutting batches, the engine on a blocking
//! thread, and a writer.

use crate::component::{Limits, Monitor, RestoreError, Runtime};
use crate::forward::Origin;
use crate::lines::{self, BatchLimits, Chunk, Splitter};
use crate::metrics;
use crate::state::StateFile;
use anyhow::{Context, Result};
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Where records come from.
pub enum Input {
    Stdin,
    File(PathBuf),
    /// Records built into the binary (the bundled sample).
    Embedded(&'static [u8]),
    /// NDJSON over TCP (e.g. Vector's `socket` sink), from any number of
    /// connections, until interrupted (Ctrl-C / SIGINT / SIGTERM).
    Listen(String),
    /// The Fluent forward protocol (Fluent Bit's or Fluentd's `forward`
    /// output), until interrupted; chunks are acked once safely out.
    Forward(String),
}

/// Where enriched records go.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stdout,
    /// NDJSON over TCP (e.g. Vector's `socket` source): reconnects and resends
    /// the batch in flight, so a restart downstream loses nothing (a batch may
    /// arrive twice).
    Tcp(String),
    /// The Fluent forward protocol (a `forward` input of Fluent Bit, Fluentd or
    /// Vector's `fluent` source), each chunk resent until acked.
    Forward(String),
}

impl std::str::FromStr for Output {
    type Err = String;
    fn from_str(s: &str) -> Result<Output, String> {
        match s {
            "-" | "stdout" => Ok(Output::Stdout),
            _ => match (s.strip_prefix("tcp://"), s.strip_prefix("forward://")) {
                (Some(addr), _) if addr.contains(':') => Ok(Output::Tcp(addr.to_string())),
                (_, Some(addr)) if addr.contains(':') => Ok(Output::Forward(addr.to_string())),
                _ => Err(format!(
                    "`{s}` is not an output: use \"-\" (stdout), tcp://HOST:PORT or forward://HOST:PORT"
                )),
            },
        }
    }
}

pub struct RunOptions {
    pub policy_name: String,
    pub policy_text: String,
    /// The policy file, watched for changes and re-read on SIGHUP.
    pub policy_path: Option<PathBuf>,
    pub inputs: Vec<Input>,
    /// An OpenClaw gateway followed live, beside the inputs, until interrupted.
    pub openclaw: Option<crate::openclaw_gateway::GatewayOptions>,
    /// Write only records whose verdict is `alert` (the demo's digest view).
    pub alerts_only: bool,
    /// The input format, when the operator named it.
    pub stream: Option<String>,
    pub output: Output,
    pub component: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
    pub batch: BatchLimits,
    pub idle: lines::IdlePolicy,
    /// Connections a listener serves at once.
    pub max_connections: usize,
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
    monitor.set_stream(opts.stream.clone());
    monitor.set_field_set(opts.field_set)?;
    let mut durable = None;
    let mut snapshot_every = None;
    if let Some((file, every)) = opts.state.take() {
        // None: saving would overwrite the one snapshot that holds the state.
        if let Some(covered_from) = restore(&mut monitor, &file) {
            let shown = file.path().display().to_string();
            match crate::state::Durable::start(file, &mut monitor, covered_from) {
                Ok((started, replayed)) => {
                    if replayed > 0 {
                        eprintln!(
                            "clawwatch: {replayed} journaled steps replayed from beside {shown}"
                        );
                    }
                    durable = Some(started);
                    snapshot_every = Some(every);
                }
                // Asked to keep state and unable to: a setup error, said before any record is read.
                Err(e) => return Err(e).with_context(|| format!("keeping state at {shown}")),
            }
            monitor.set_stream(opts.stream.clone());
        }
    }
    let metrics = metrics::Shared::default();
    {
        let baseline = monitor.stats().context("reading engine stats")?;
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

    let (in_tx, mut in_rx) = mpsc::channel::<Chunk>(4);
    let (out_tx, mut out_rx) = mpsc::channel::<(Vec<u8>, Option<Origin>)>(4);
    let progress_every = opts.progress_every;
    let alerts_only = opts.alerts_only;
    let monitor_stream = opts.stream.clone();

    let judge_metrics = metrics.clone();
    // Engine totals are read at most this often for the metrics endpoint.
    let stats_every = if opts.metrics_listen.is_some() {
        Duration::from_millis(500)
    } else {
        Duration::MAX
    };
    let judge = tokio::task::spawn_blocking(move || {
        let metrics = judge_metrics;
        let count = |outcome: Option<Result<()>>| {
            let mut m = metrics.lock().expect("metrics lock");
            match outcome {
                Some(Ok(())) => m.snapshots_saved += 1,
                Some(Err(e)) => {
                    m.snapshots_failed += 1;
                    // The previous snapshot stays; the next attempt may succeed.
                    eprintln!("clawwatch: state not saved: {e}");
                }
                None => {}
            }
        };
        let save = |monitor: &mut Monitor, durable: &mut Option<crate::state::Durable>| {
            if let Some(durable) = durable.as_mut() {
                count(durable.save(monitor));
            }
        };
        // A step that changed the engine, journaled (synced) before its output leaves.
        let record = |step: crate::journal::Step, durable: &mut Option<crate::state::Durable>| {
            if let Some(Err(e)) = durable.as_mut().map(|d| d.record(&step)) {
                metrics.lock().expect("metrics lock").snapshots_failed += 1;
                eprintln!("clawwatch: journal not written: {e:#}");
            }
        };
        let mut last_stats = Instant::now();
        let mut last_report = Instant::now();
        let mut records = 0u64;
        let default_stream = monitor_stream.clone();
        let mut pending_reload: Option<(u64, String)> = None;
        while let Some(chunk) = in_rx.blocking_recv() {
            let read_in = match &chunk {
                Chunk::Batch { epoch, .. } => Some(*epoch),
                Chunk::Forward(batch) => Some(batch.epoch),
                _ => None,
            };
            if let Some(read_in) = read_in {
                if pending_reload.as_ref().is_some_and(|(e, _)| *e <= read_in) {
                    let (_, text) = pending_reload.take().expect("checked");
                    if apply_reload(&mut monitor, &text, &metrics) {
                        record(crate::journal::Step::Reload(text), &mut durable);
                    }
                }
            }
            let mut origin = None;
            let began = Instant::now();
            let judged = matches!(chunk, Chunk::Batch { .. } | Chunk::Forward(_));
            let out = match chunk {
                Chunk::Reload { text, epoch } => {
                    // Applied before the first records read after its signal:
                    // those read before it are judged by the running policy.
                    pending_reload = Some((epoch, text));
                    Vec::new()
                }
                Chunk::ApplyReload { epoch } => {
                    if pending_reload.as_ref().is_some_and(|(e, _)| *e <= epoch) {
                        let (_, text) = pending_reload.take().expect("checked");
                        if apply_reload(&mut monitor, &text, &metrics) {
                            record(crate::journal::Step::Reload(text), &mut durable);
                        }
                    }
                    Vec::new()
                }
                Chunk::Forward(batch) => {
                    records += batch.times.len() as u64;
                    // A format named in the tag (`agents.pmacct`) says how to read the records.
                    let stream = clawwatch_plugin::record::format_named_in_tag(&batch.tag)
                        .map(str::to_string)
                        .or(default_stream.clone());
                    monitor.set_stream(stream.clone());
                    let out = monitor.process(&batch.ndjson);
                    monitor.set_stream(default_stream.clone());
                    if !monitor.last_failed() {
                        record(
                            crate::journal::Step::Batch {
                                bytes: batch.ndjson,
                                stream,
                            },
                            &mut durable,
                        );
                    }
                    origin = Some(Origin {
                        tag: batch.tag,
                        times: batch.times,
                        ack: batch.ack,
                    });
                    out
                }
                Chunk::Batch {
                    bytes, records: n, ..
                } => {
                    records += n as u64;
                    let out = monitor.process(&bytes);
                    if !monitor.last_failed() {
                        record(
                            crate::journal::Step::Batch {
                                bytes,
                                stream: default_stream.clone(),
                            },
                            &mut durable,
                        );
                    }
                    if alerts_only { keep_alerts(&out) } else { out }
                }
                Chunk::Snapshot => {
                    save(&mut monitor, &mut durable);
                    Vec::new()
                }
                Chunk::Passthrough(bytes) if !alerts_only => bytes,
                Chunk::Passthrough(_) => Vec::new(),
                Chunk::Idle => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as i64);
                    let out = monitor.advance_to(now);
                    record(crate::journal::Step::Advance(now), &mut durable);
                    if alerts_only { keep_alerts(&out) } else { out }
                }
            };
            if judged {
                let mut m = metrics.lock().expect("metrics lock");
                m.observe_batch(began.elapsed());
                m.engine_restarts = monitor.restarts();
            }
            if !out.is_empty() {
                metrics.lock().expect("metrics lock").note_incidents(&out);
            }
            if last_stats.elapsed() >= stats_every {
                if let Ok(stats) = monitor.stats() {
                    metrics.lock().expect("metrics lock").set_engine(stats);
                }
                last_stats = Instant::now();
            }
            if out_tx.blocking_send((out, origin)).is_err() {
                break;
            }
            if last_report.elapsed() >= progress_every {
                tracing::info!(records, "progress");
                last_report = Instant::now();
            }
        }
        let failed_before = metrics.lock().expect("metrics lock").snapshots_failed;
        save(&mut monitor, &mut durable);
        if let Some(durable) = durable.as_mut() {
            count(durable.finish());
        }
        let final_save_failed =
            metrics.lock().expect("metrics lock").snapshots_failed > failed_before;
        (monitor, final_save_failed)
    });

    let output = opts.output.clone();
    let writer = tokio::spawn(async move {
        match output {
            Output::Tcp(addr) => write_tcp(&addr, &mut out_rx).await,
            Output::Forward(addr) => {
                write_forward(&addr, &mut out_rx).await;
                Ok(())
            }
            Output::Stdout => {
                let mut stdout = tokio::io::BufWriter::with_capacity(1 << 20, tokio::io::stdout());
                while let Some((buf, origin)) = out_rx.recv().await {
                    stdout.write_all(&buf).await?;
                    // Each batch goes out at once: downstream pipelines see records promptly.
                    stdout.flush().await?;
                    if let Some(origin) = origin {
                        origin.acknowledge().await;
                    }
                }
                stdout.flush().await
            }
        }
    });

    let max_latency = opts.idle.max_latency;
    let watcher = match opts.policy_path.clone() {
        Some(path) => tokio::spawn(watch_policy(path, in_tx.clone(), max_latency)),
        None => tokio::spawn(ignore_hangups()),
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
        tokio::spawn(crate::openclaw_gateway::follow(
            options,
            in_tx.clone(),
            stopped(),
        ))
    });
    let mut splitter = Splitter::new(opts.batch.clone());
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
                    listen(
                        addr,
                        Protocol::Ndjson(opts.batch.clone(), opts.idle),
                        &in_tx,
                        (opts.max_connections, &metrics),
                        stopped(),
                    )
                    .await?
                }
                Input::Forward(addr) => {
                    listen(
                        addr,
                        Protocol::Forward,
                        &in_tx,
                        (opts.max_connections, &metrics),
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
        Err(e) => return Err(e).context("writing to stdout"),
        Ok(()) => {}
    }
    read_result?;

    let stats = monitor.stats().context("reading engine stats")?;
    let summary = {
        let mut m = metrics.lock().expect("metrics lock");
        m.set_engine(stats);
        m.oversized_lines = splitter.oversized_lines;
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

/// Resumes from the saved state, if any; returns the first journal the
/// snapshot does not cover (0 without one). A snapshot that cannot be used is
/// reported and set aside; the run starts empty rather than not at all. One
/// the engine could not load within its limits is kept where it is, and the
/// run, started empty, says what to raise and keeps no state (`None`), so
/// nothing is saved over it.
fn restore(monitor: &mut Monitor, file: &StateFile) -> Option<u64> {
    let shown = file.path().display();
    match file.load() {
        Ok(None) => eprintln!("clawwatch: no saved state at {shown}; starting empty"),
        Ok(Some((covered_from, snapshot))) => match monitor.restore_state(&snapshot) {
            Ok(()) => {
                let agents = monitor.stats().map_or(0, |s| s.agents);
                eprintln!("clawwatch: state restored from {shown} ({agents} agents)");
                return Some(covered_from);
            }
            Err(RestoreError::Runtime(e)) => {
                eprintln!(
                    "clawwatch: saved state {shown} could not be loaded within the engine's limits ({}): \
                     it is kept as it is and nothing will be saved over it in this run; raise \
                     --guest-memory-mib or --batch-timeout-ms and start again to resume from it. Starting empty.",
                    e.root_cause()
                );
                return None;
            }
            Err(e) => {
                let aside = file.set_aside();
                eprintln!(
                    "clawwatch: saved state {shown} not used: {e}; starting empty{}",
                    aside.map_or(String::new(), |p| format!(" (moved to {})", p.display()))
                );
                // Its journal still holds what came after it.
                return Some(covered_from);
            }
        },
        Err(e) => eprintln!("clawwatch: {e:#}; starting empty"),
    }
    Some(0)
}

/// The lines of an enriched batch whose verdict is `alert`.
fn keep_alerts(out: &[u8]) -> Vec<u8> {
    let mut kept = Vec::new();
    for line in out.split_inclusive(|b| *b == b'\n') {
        // The note is the last member, so its verdict is near the end.
        let tail = &line[line.len().saturating_sub(4096)..];
        const NEEDLE: &[u8] = b"\"verdict\":\"alert\"";
        if tail.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            kept.extend_from_slice(line);
        }
    }
    kept
}

/// What a listener speaks.
#[derive(Clone)]
enum Protocol {
    Ndjson(BatchLimits, lines::IdlePolicy),
    Forward,
}

/// Accepts connections until interrupted. Each connection is read on its own
/// (NDJSON: its own splitter, so lines from different senders never mix);
/// the bounded channel makes a busy engine slow the senders down (TCP
/// backpressure). On interrupt every connection sends what it has read.
/// Serves one listener until interrupted: at most `max_connections` at once
/// (more are closed at once and counted), each cut off and counted when what
/// it sends breaks the protocol or a bound.
async fn listen(
    addr: &str,
    protocol: Protocol,
    tx: &mpsc::Sender<Chunk>,
    (max_connections, metrics): (usize, &metrics::Shared),
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let mut refusing = false;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    if let Protocol::Forward = protocol {
        // Forward senders may send heartbeats over UDP to the same port.
        match tokio::net::UdpSocket::bind(local).await {
            Ok(socket) => {
                tokio::spawn(crate::forward::answer_heartbeats(socket));
            }
            Err(e) => tracing::warn!(error = %e, "cannot answer forward heartbeats over UDP"),
        }
    }
    eprintln!("clawwatch: listening on {local}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => break,
            (stream, peer) = crate::accept::accept_resiliently(&listener, "listener") => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    metrics.lock().expect("metrics lock").connections_refused += 1;
                    if !refusing {
                        eprintln!("clawwatch: {max_connections} connections open (--max-connections): closing new ones until some end");
                        refusing = true;
                    }
                    drop(stream);
                    continue;
                };
                refusing = false;
                tracing::info!(%peer, "connection");
                let (tx, protocol, mut stop) = (tx.clone(), protocol.clone(), stop_rx.clone());
                let metrics = metrics.clone();
                connections.spawn(async move {
                    let _slot = slot;
                    let stopped = async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    };
                    let ended = match protocol {
                        Protocol::Ndjson(limits, idle) => lines::read_input_until(stream, &mut Splitter::new(limits), &tx, idle, stopped).await,
                        Protocol::Forward => crate::forward::serve_connection(stream, tx, stopped).await,
                    };
                    if let Err(e) = ended {
                        metrics.lock().expect("metrics lock").connections_cut += 1;
                        tracing::warn!(%peer, error = %format!("{e:#}"), "connection cut off");
                    }
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn interrupted() {
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

/// Writes batches to a TCP receiver, reconnecting with backoff; a batch whose
/// write failed is sent again in full, so nothing is lost.
async fn write_tcp(
    addr: &str,
    out_rx: &mut mpsc::Receiver<(Vec<u8>, Option<Origin>)>,
) -> std::io::Result<()> {
    let mut conn: Option<tokio::net::TcpStream> = None;
    let mut backoff = Duration::from_millis(100);
    while let Some((buf, origin)) = out_rx.recv().await {
        loop {
            if conn.is_none() {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(stream) => {
                        conn = Some(stream);
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        tracing::warn!(addr, error = %e, "output unreachable; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            match conn.as_mut().expect("connected").write_all(&buf).await {
                Ok(()) => {
                    if let Some(origin) = origin {
                        origin.acknowledge().await;
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(addr, error = %e, "output connection lost; reconnecting");
                    conn = None;
                }
            }
        }
    }
    if let Some(mut c) = conn {
        c.shutdown().await?;
    }
    Ok(())
}

/// Forwards enriched records with their tags and times; incident and audit
/// records go under the tag `clawwatch.incident`. The sender's chunk is acked
/// once the receiver acked ours.
async fn write_forward(addr: &str, out_rx: &mut mpsc::Receiver<(Vec<u8>, Option<Origin>)>) {
    let mut sender = crate::forward::Sender::new(addr);
    while let Some((buf, origin)) = out_rx.recv().await {
        let (tag, times) = origin.as_ref().map_or(("clawwatch.records", &[][..]), |o| {
            (o.tag.as_str(), &o.times[..])
        });
        let (mut records, mut incidents) = (Vec::new(), Vec::new());
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let json = serde_json::from_slice::<serde_json::Value>(line)
                .unwrap_or_else(|e| crate::forward::uncarried(line, &e));
            let record = crate::forward::json_to_record(&json);
            // OCSF findings keep the note under `unmapped`.
            let stream = json["clawwatch"]["stream"]
                .as_str()
                .or(json["unmapped"]["clawwatch"]["stream"].as_str());
            if matches!(stream, Some("incident" | "audit")) {
                incidents.push((crate::forward::EventTime::now(), record));
            } else {
                let time = times
                    .get(records.len())
                    .copied()
                    .unwrap_or_else(crate::forward::EventTime::now);
                records.push((time, record));
            }
        }
        sender.send(tag, &records).await;
        sender.send("clawwatch.incident", &incidents).await;
        if let Some(origin) = origin {
            origin.acknowledge().await;
        }
    }
}

/// Applies a policy text, saying so; a policy that does not load changes
/// nothing. Whether it applied.
fn apply_reload(monitor: &mut Monitor, text: &str, metrics: &metrics::Shared) -> bool {
    let reloaded = monitor.reload(text);
    let mut m = metrics.lock().expect("metrics lock");
    match reloaded {
        Ok(()) => {
            m.reloads_applied += 1;
            eprintln!("clawwatch: policy reloaded");
            true
        }
        Err(e) => {
            m.reloads_rejected += 1;
            eprintln!("clawwatch: policy reload rejected, the running policy stays: {e}");
            false
        }
    }
}

/// Without a policy file there is nothing to re-read: SIGHUP (whose default
/// would end the process) is ignored, saying so.
async fn ignore_hangups() {
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        while hup.recv().await.is_some() {
            eprintln!("clawwatch: SIGHUP ignored: no --policy file to re-read");
        }
    }
}

/// Re-reads the policy on SIGHUP and when the file changes (checked every
/// two seconds), and hands the text to the engine in order with the records:
/// it applies from the first record read after the signal, or once every
/// reader has handed on what it read before it (within `max_latency`).
async fn watch_policy(path: PathBuf, tx: mpsc::Sender<Chunk>, max_latency: Duration) {
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = modified(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hup.as_mut() {
                Some(h) => h.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<bool>();
        let reason = tokio::select! {
            _ = signalled => "SIGHUP",
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                let now = modified(&path);
                if now == last {
                    continue;
                }
                "file changed"
            }
        };
        last = modified(&path);
        let epoch = crate::lines::next_policy_epoch();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                tracing::info!(reason, path = %path.display(), "reloading the policy");
                if tx.send(Chunk::Reload { text, epoch }).await.is_err() {
                    return;
                }
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(max_latency + Duration::from_millis(100)).await;
                    let _ = tx.send(Chunk::ApplyReload { epoch }).await;
                });
            }
            Err(e) => eprintln!(
                "clawwatch: cannot re-read policy {}: {e}; the running policy stays",
                path.display()
            ),
        }
    }
}
