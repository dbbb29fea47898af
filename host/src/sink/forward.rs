//! The forward sink: enriched records to a forward receiver (Fluent Bit,
//! Fluentd, Vector's `fluent` source), each chunk resent until acked.

use crate::forward_codec::{EventTime, ack_of, encode_forward, take_value};
use crate::stage::Delivery;
use anyhow::bail;
use rmpv::Value;

/// Sends records to a forward receiver and waits for its ack, reconnecting and
/// resending until it comes: at least once, never lost.
pub struct Sender {
    addr: String,
    conn: Option<tokio::net::TcpStream>,
    next_chunk: u64,
}

impl Sender {
    pub fn new(addr: &str) -> Sender {
        Sender {
            addr: addr.to_string(),
            conn: None,
            next_chunk: 0,
        }
    }

    pub async fn send(&mut self, tag: &str, entries: &[(EventTime, Value)]) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if entries.is_empty() {
            return;
        }
        self.next_chunk += 1;
        let chunk = format!("clawwatch-{}-{}", std::process::id(), self.next_chunk);
        let message = encode_forward(tag, entries, &chunk);
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            let attempt = async {
                if self.conn.is_none() {
                    self.conn = Some(tokio::net::TcpStream::connect(&self.addr).await?);
                }
                let conn = self.conn.as_mut().expect("connected");
                conn.write_all(&message).await?;
                let mut buf = Vec::new();
                loop {
                    if let Some(v) = take_value(&mut buf)? {
                        if ack_of(&v) == Some(chunk.as_str()) {
                            return Ok::<(), anyhow::Error>(());
                        }
                        continue;
                    }
                    if conn.read_buf(&mut buf).await? == 0 {
                        bail!("the receiver closed the connection before acking");
                    }
                }
            };
            match tokio::time::timeout(std::time::Duration::from_secs(30), attempt).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => {
                    tracing::warn!(addr = %self.addr, error = %format!("{e:#}"), "forward output failed; resending")
                }
                Err(_) => tracing::warn!(addr = %self.addr, "no ack within 30 s; resending"),
            }
            self.conn = None;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
        }
    }
}

/// Forwards enriched records with their tags and times; incident and audit
/// records go under the tag `clawwatch.incident`, routed by the engine's
/// description of each line. A line too long for the engine arrives in
/// undescribed pieces: it is gathered whole and goes with the records. The
/// sender's chunk is acked once the receiver acked ours.
pub async fn write(addr: &str, out_rx: &mut tokio::sync::mpsc::Receiver<Delivery>) {
    use crate::forward_codec::{EventTime, json_to_record, uncarried};
    let mut sender = Sender::new(addr);
    let mut whole = super::Records::default();
    let encode = |line: &[u8]| {
        let json = serde_json::from_slice::<serde_json::Value>(line)
            .unwrap_or_else(|e| uncarried(line, &e));
        json_to_record(&json)
    };
    while let Some(Delivery { output, origin }) = out_rx.recv().await {
        let (tag, times) = origin.as_ref().map_or(("clawwatch.records", &[][..]), |o| {
            (o.tag.as_str(), &o.times[..])
        });
        let (mut records, mut incidents) = (Vec::new(), Vec::new());
        let add_record = |record: Value, records: &mut Vec<(EventTime, Value)>| {
            let time = times
                .get(records.len())
                .copied()
                .unwrap_or_else(EventTime::now);
            records.push((time, record));
        };
        for (line, incident) in whole.of(&output) {
            let record = encode(&line);
            if incident {
                incidents.push((EventTime::now(), record));
            } else {
                add_record(record, &mut records);
            }
        }
        sender.send(tag, &records).await;
        sender.send("clawwatch.incident", &incidents).await;
        if let Some(origin) = origin {
            origin.acknowledge().await;
        }
    }
}
