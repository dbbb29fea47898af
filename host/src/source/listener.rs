//! TCP listeners (NDJSON, forward): accepting that survives a full file
//! descriptor table, a connection limit, and each connection read on its own
//! (NDJSON: its own splitter, so lines from different senders never mix). The
//! bounded channel makes a busy engine slow the senders down (TCP
//! backpressure); on interrupt every connection sends what it has read.

use super::Chunk;
use super::budget::Budget;
use super::lines::{self, BatchLimits, Splitter};
use crate::metrics;
use anyhow::{Context, Result};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a listener speaks.
#[derive(Clone)]
pub enum Protocol {
    Ndjson(BatchLimits, lines::IdlePolicy),
    Forward,
}

/// The bounds every listener keeps.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; more are closed at once and counted.
    pub max_connections: usize,
    /// Memory connections may hold unfinished.
    pub budget: Budget,
}

/// Serves one listener until interrupted: at most `max_connections` at once
/// (more are closed at once and counted), each cut off and counted when what
/// it sends breaks the protocol or a bound.
pub async fn listen(
    addr: &str,
    protocol: Protocol,
    tx: &mpsc::Sender<Chunk>,
    limits: &Limits,
    metrics: &metrics::Shared,
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let max_connections = limits.max_connections;
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
                tokio::spawn(super::forward::answer_heartbeats(socket));
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
            (stream, peer) = accept_resiliently(&listener, "listener") => {
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
                let budget = limits.budget.clone();
                connections.spawn(async move {
                    let _slot = slot;
                    let stopped = async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    };
                    let ended = match protocol {
                        Protocol::Ndjson(limits, idle) => {
                            let mut splitter = Splitter::new(limits);
                            let ended = lines::read_input_until(stream, &mut splitter, &tx, idle, stopped).await;
                            metrics.lock().expect("metrics lock").oversized_lines += splitter.oversized_lines;
                            ended
                        }
                        Protocol::Forward => super::forward::serve_connection(stream, tx, &budget, stopped).await,
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

/// Accepts the next connection, riding out failures that pass (a full file
/// descriptor table, `EMFILE`; a connection reset before it was taken) with
/// a backoff, said once per episode: a listener never dies of them.
pub async fn accept_resiliently(
    listener: &tokio::net::TcpListener,
    what: &str,
) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    let mut backoff = std::time::Duration::from_millis(10);
    let mut said = false;
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                if said {
                    eprintln!("clawwatch: {what}: accepting connections again");
                }
                return accepted;
            }
            Err(e) => {
                if !said {
                    eprintln!(
                        "clawwatch: {what}: cannot accept a connection ({e}); retrying, open connections go on"
                    );
                    said = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
            }
        }
    }
}
