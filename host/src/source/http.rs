//! The HTTP source: NDJSON batches POSTed by Vector's `http` sink (or any
//! client), each answered `200` only once its records are safely out
//! downstream, so the sender retries anything a crash or a restart lost.
//!
//! `POST /` reads records by their shape; `POST /FORMAT` (e.g. `/pmacct`)
//! reads them as that format. A gzip body (`Content-Encoding: gzip`) is
//! expanded within the connection budget. What a request holds is bounded by
//! the same budget as a forward connection's, and it must arrive whole within
//! the message deadline.

use super::budget::{Budget, gunzip_within};
use super::lines::{BatchLimits, Splitter};
use super::listener::Limits;
use super::{Ack, Batch, Chunk};
use crate::metrics;
use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Serves HTTP on `addr` until interrupted; requests in flight then finish.
pub async fn serve(
    addr: &str,
    tx: &mpsc::Sender<Chunk>,
    limits: &Limits,
    batch: &BatchLimits,
    metrics: &metrics::Shared,
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for HTTP on {addr}"))?;
    eprintln!("clawwatch: listening on {} (HTTP)", listener.local_addr()?);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut refusing = false;
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => break,
            (stream, peer) = super::listener::accept_resiliently(&listener, "HTTP listener") => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    metrics.lock().expect("metrics lock").connections_refused += 1;
                    if !refusing {
                        eprintln!("clawwatch: {} HTTP connections open (--max-connections): closing new ones until some end", limits.max_connections);
                        refusing = true;
                    }
                    continue;
                };
                refusing = false;
                let request = Requests {
                    tx: tx.clone(),
                    budget: limits.budget.clone(),
                    batch: batch.clone(),
                    metrics: metrics.clone(),
                };
                let mut stop = stop_rx.clone();
                let stopped = async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                };
                connections.spawn(async move {
                    let _slot = slot;
                    let service = hyper::service::service_fn(move |req| {
                        let request = request.clone();
                        async move { Ok::<_, std::convert::Infallible>(request.answer(req).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Some(std::time::Duration::from_secs(30)))
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        ended = connection.as_mut() => {
                            if let Err(e) = ended {
                                tracing::debug!(%peer, error = %e, "HTTP connection ended");
                            }
                        }
                        () = stopped => {
                            // Finish the request in flight, take no more.
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// What every request of a listener shares.
#[derive(Clone)]
struct Requests {
    tx: mpsc::Sender<Chunk>,
    budget: Budget,
    batch: BatchLimits,
    metrics: metrics::Shared,
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, text: impl Into<String>) -> Answer {
    let mut body = text.into();
    body.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

impl Requests {
    async fn answer(self, req: Request<Incoming>) -> Answer {
        let path = req.uri().path().trim_matches('/').to_string();
        match (req.method(), path.as_str()) {
            (&hyper::Method::GET, "health") => return answer(StatusCode::OK, "ok"),
            (&hyper::Method::POST, _) => {}
            _ => {
                return answer(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "POST NDJSON records to / (or /FORMAT); GET /health",
                );
            }
        }
        let tag = if path.is_empty() {
            "clawwatch.http".to_string()
        } else if clawwatch_plugin::record::FORMAT_NAMES.contains(&path.as_str()) {
            format!("clawwatch.{path}")
        } else {
            return answer(
                StatusCode::NOT_FOUND,
                format!(
                    "`/{path}` names no input format; POST to / or to one of /{}",
                    clawwatch_plugin::record::FORMAT_NAMES.join(", /")
                ),
            );
        };
        let gzip = match req.headers().get(hyper::header::CONTENT_ENCODING) {
            None => false,
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"gzip") => true,
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"identity") => false,
            Some(v) => {
                return answer(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Content-Encoding {v:?} is not read: send gzip or none"),
                );
            }
        };
        let body = match self.read_body(req, gzip).await {
            Ok(body) => body,
            Err((status, why)) => {
                if status != StatusCode::BAD_REQUEST {
                    self.metrics.lock().expect("metrics lock").connections_cut += 1;
                }
                return answer(status, why);
            }
        };
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return answer(
                StatusCode::BAD_REQUEST,
                "the body is a JSON array: send one record per line (Vector: framing.method = \"newline_delimited\")",
            );
        }
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if self.hand_on(&body, tag, done_tx).await.is_err() {
            return answer(StatusCode::SERVICE_UNAVAILABLE, "clawwatch is stopping");
        }
        match done_rx.await {
            Ok(()) => answer(StatusCode::OK, "delivered"),
            // The run stopped before the records were out: the sender retries.
            Err(_) => answer(StatusCode::SERVICE_UNAVAILABLE, "clawwatch is stopping"),
        }
    }

    /// The whole body, within the budget and the message deadline.
    async fn read_body(
        &self,
        req: Request<Incoming>,
        gzip: bool,
    ) -> Result<Vec<u8>, (StatusCode, String)> {
        let too_large = |n: usize| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "a body of {n} bytes or more is over the {}-byte budget (--connection-budget-mib): send smaller batches",
                    self.budget.per_connection
                ),
            )
        };
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if let Some(n) = declared.filter(|n| *n > self.budget.per_connection) {
            return Err(too_large(n));
        }
        let deadline = tokio::time::Instant::now() + self.budget.message_deadline;
        let mut holding = self.budget.holding();
        let mut body = Vec::new();
        let mut incoming = req.into_body();
        loop {
            let frame = match tokio::time::timeout_at(deadline, incoming.frame()).await {
                Err(_) => {
                    return Err((
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the body did not arrive within {} s",
                            self.budget.message_deadline.as_secs_f64()
                        ),
                    ));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err((StatusCode::BAD_REQUEST, e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                body.extend_from_slice(&data);
                holding
                    .cover(body.len(), deadline)
                    .await
                    .map_err(|_| too_large(body.len()))?;
            }
        }
        if gzip {
            body = gunzip_within(&body, self.budget.per_connection)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e:#}")))?;
        }
        Ok(body)
    }

    /// Cuts the body into batches (oversized lines pass through tagged, as
    /// on every NDJSON input) and hands them on; the last carries the ack.
    async fn hand_on(
        &self,
        body: &[u8],
        tag: String,
        done: tokio::sync::oneshot::Sender<()>,
    ) -> Result<(), ()> {
        let mut splitter = Splitter::new(self.batch.clone());
        let mut chunks = Vec::new();
        splitter.push(body, &mut chunks);
        splitter.end_of_input(&mut chunks);
        splitter.flush(&mut chunks);
        self.metrics.lock().expect("metrics lock").oversized_lines += splitter.oversized_lines;
        let epoch = crate::stage::reload::policy_epoch();
        let acked = |ndjson: Vec<u8>, ack: Option<Ack>| {
            Chunk::Acked(Batch {
                tag: tag.clone(),
                times: Vec::new(),
                ndjson,
                ack,
                epoch,
            })
        };
        let mut last = None;
        for chunk in chunks {
            let chunk = match chunk {
                Chunk::Batch { bytes, .. } => acked(bytes, None),
                other => other,
            };
            if let Some(previous) = last.replace(chunk) {
                self.tx.send(previous).await.map_err(|_| ())?;
            }
        }
        let last = match last {
            Some(Chunk::Acked(mut batch)) => {
                batch.ack = Some(Ack::Http(done));
                Chunk::Acked(batch)
            }
            // An empty body, or one ending in a passed-through line: an empty
            // batch carries the ack behind it.
            other => {
                if let Some(chunk) = other {
                    self.tx.send(chunk).await.map_err(|_| ())?;
                }
                acked(Vec::new(), Some(Ack::Http(done)))
            }
        };
        self.tx.send(last).await.map_err(|_| ())
    }
}
