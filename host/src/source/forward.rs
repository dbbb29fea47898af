//! The forward source: Fluent Bit's or Fluentd's `forward` output connects
//! and sends messages; their chunks are acked only once their records were
//! written or forwarded (and acked) downstream, so a sender retries what was
//! lost.

use super::budget::Budget;
use super::{Ack, Batch, Chunk};
use crate::forward_codec::{decode_message, encode_ack, record_to_json, take_value};
use anyhow::{Result, anyhow};

/// Serves one forward connection: messages in, acks out on the same socket.
/// What it holds unfinished is bounded by `budget`, and a message must arrive
/// whole within the budget's deadline of its first byte.
pub async fn serve_connection(
    stream: tokio::net::TcpStream,
    tx: tokio::sync::mpsc::Sender<Chunk>,
    budget: &Budget,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut reader, mut writer) = stream.into_split();
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<String>(64);
    let acks = tokio::spawn(async move {
        while let Some(chunk) = ack_rx.recv().await {
            if writer.write_all(&encode_ack(&chunk)).await.is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut holding = budget.holding();
    // When the unfinished message in `buf` must be whole by.
    let mut deadline: Option<tokio::time::Instant> = None;
    tokio::pin!(stop);
    let result = loop {
        let read = tokio::select! {
            biased;
            _ = &mut stop => break Ok(()),
            read = async {
                match deadline {
                    Some(at) => tokio::time::timeout_at(at, reader.read_buf(&mut buf)).await.ok(),
                    None => Some(reader.read_buf(&mut buf).await),
                }
            } => read,
        };
        match read {
            None => {
                break Err(anyhow!(
                    "a message still unfinished {} s after its first byte; refusing the connection",
                    budget.message_deadline.as_secs_f64()
                ));
            }
            Some(Ok(0)) => break Ok(()),
            Some(Ok(_)) => {}
            Some(Err(e)) => break Err(e.into()),
        }
        let mut failed = None;
        let unread = buf.len();
        loop {
            match take_value(&mut buf) {
                Ok(Some(v)) => match decode_message(v) {
                    Ok(m) => {
                        let mut ndjson = Vec::new();
                        let mut times = Vec::with_capacity(m.entries.len());
                        for (time, record) in &m.entries {
                            serde_json::to_writer(&mut ndjson, &record_to_json(record))
                                .expect("writing to a Vec");
                            ndjson.push(b'\n');
                            times.push(*time);
                        }
                        let ack = m.chunk.map(|chunk| Ack::Forward {
                            chunk,
                            to: ack_tx.clone(),
                        });
                        if tx
                            .send(Chunk::Acked(Batch {
                                tag: m.tag,
                                times,
                                ndjson,
                                ack,
                                epoch: crate::stage::reload::policy_epoch(),
                            }))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            break Err(e.context("refusing the connection"));
        }
        if buf.len() < unread {
            // A message was taken whole: the next one has its own deadline.
            deadline = None;
        }
        deadline = match (buf.is_empty(), deadline) {
            (true, _) => None,
            (false, None) => Some(tokio::time::Instant::now() + budget.message_deadline),
            (false, Some(at)) => Some(at),
        };
        let by = deadline.unwrap_or_else(tokio::time::Instant::now);
        if let Err(e) = holding.cover(buf.len(), by).await {
            break Err(e.context("refusing the connection"));
        }
    };
    drop(ack_tx);
    let _ = acks.await;
    result
}

/// Answers forward heartbeats (UDP, same port) with the same bytes.
pub async fn answer_heartbeats(socket: tokio::net::UdpSocket) {
    let mut buf = [0u8; 64];
    while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
        let _ = socket.send_to(&buf[..n], peer).await;
    }
}
