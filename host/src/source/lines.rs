//! Cuts an input byte stream into batches of whole NDJSON lines for the engine,
//! with bounded memory whatever the input.
//!
//! A line longer than the cap is never buffered whole: it streams straight to
//! the output as `{"raw_base64":"…","clawwatch":{…error…}}`, in order, so even
//! a gigabyte without a newline costs one read buffer and loses nothing.

use super::Chunk;
use crate::stage::reload::policy_epoch;
use base64::Engine as _;
use clawwatch_plugin::output::Note;
use clawwatch_plugin::record::Stream;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct BatchLimits {
    /// Lines per batch.
    pub records: usize,
    /// Bytes per batch (a batch closes at the first line that reaches it).
    pub bytes: usize,
    /// Longest line handed to the engine; longer ones pass through tagged.
    pub line_bytes: usize,
}

pub struct Splitter {
    limits: BatchLimits,
    batch: Vec<u8>,
    records: usize,
    /// Where the line in progress starts in `batch`.
    line_start: usize,
    /// The reload epoch of the whole lines in `batch`.
    epoch: u64,
    oversize: Option<Oversize>,
    /// Lines passed through because of their size.
    pub oversized_lines: u64,
}

struct Oversize {
    total: u64,
    /// Up to two bytes not yet encoded (base64 works in groups of three).
    carry: Vec<u8>,
}

impl Splitter {
    pub fn new(limits: BatchLimits) -> Splitter {
        Splitter {
            batch: Vec::with_capacity(limits.bytes + 4096),
            limits,
            records: 0,
            line_start: 0,
            epoch: policy_epoch(),
            oversize: None,
            oversized_lines: 0,
        }
    }

    /// Whether whole lines are waiting to be sent.
    pub fn has_pending(&self) -> bool {
        self.records > 0
    }

    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Chunk>) {
        // A reload was signalled since the waiting lines were read: they go
        // out as a batch of their own, judged by the policy of their time.
        let epoch = policy_epoch();
        if epoch != self.epoch {
            self.flush(out);
            self.epoch = epoch;
        }
        while !data.is_empty() {
            let newline = memchr::memchr(b'\n', data);
            if self.oversize.is_some() {
                let end = newline.unwrap_or(data.len());
                self.feed_oversize(&data[..end], out);
                if newline.is_some() {
                    self.finish_oversize(out);
                    data = &data[end + 1..];
                } else {
                    data = &[];
                }
                continue;
            }
            let pending = self.batch.len() - self.line_start;
            match newline {
                Some(i) if pending + i <= self.limits.line_bytes => {
                    self.batch.extend_from_slice(&data[..=i]);
                    self.records += 1;
                    self.line_start = self.batch.len();
                    data = &data[i + 1..];
                    if self.records >= self.limits.records || self.batch.len() >= self.limits.bytes
                    {
                        self.emit_batch(out);
                    }
                }
                Some(i) => {
                    self.begin_oversize(&data[..i], out);
                    self.finish_oversize(out);
                    data = &data[i + 1..];
                }
                None if pending + data.len() <= self.limits.line_bytes => {
                    self.batch.extend_from_slice(data);
                    data = &[];
                }
                None => {
                    self.begin_oversize(data, out);
                    data = &[];
                }
            }
        }
    }

    /// Sends the whole lines gathered so far (the line in progress stays).
    pub fn flush(&mut self, out: &mut Vec<Chunk>) {
        if self.records > 0 {
            self.emit_batch(out);
        }
    }

    /// End of one input: a last line without `\n` is a line too.
    pub fn end_of_input(&mut self, out: &mut Vec<Chunk>) {
        if self.oversize.is_some() {
            self.finish_oversize(out);
        } else if self.batch.len() > self.line_start {
            self.push(b"\n", out);
        }
    }

    fn emit_batch(&mut self, out: &mut Vec<Chunk>) {
        let partial = self.batch.split_off(self.line_start);
        let bytes = std::mem::replace(&mut self.batch, partial);
        self.batch.reserve(self.limits.bytes + 4096);
        out.push(Chunk::Batch {
            bytes,
            records: self.records,
            epoch: self.epoch,
        });
        self.records = 0;
        self.line_start = 0;
    }

    fn begin_oversize(&mut self, data: &[u8], out: &mut Vec<Chunk>) {
        self.flush(out);
        let partial = std::mem::take(&mut self.batch);
        self.line_start = 0;
        out.push(Chunk::Passthrough(b"{\"raw_base64\":\"".to_vec()));
        self.oversize = Some(Oversize {
            total: 0,
            carry: Vec::new(),
        });
        self.feed_oversize(&partial, out);
        self.feed_oversize(data, out);
    }

    fn feed_oversize(&mut self, data: &[u8], out: &mut Vec<Chunk>) {
        let o = self.oversize.as_mut().expect("in an oversized line");
        o.total += data.len() as u64;
        o.carry.extend_from_slice(data);
        let whole = o.carry.len() / 3 * 3;
        if whole > 0 {
            out.push(Chunk::Passthrough(
                base64::engine::general_purpose::STANDARD
                    .encode(&o.carry[..whole])
                    .into_bytes(),
            ));
            o.carry.drain(..whole);
        }
    }

    fn finish_oversize(&mut self, out: &mut Vec<Chunk>) {
        let o = self.oversize.take().expect("in an oversized line");
        let mut tail = base64::engine::general_purpose::STANDARD
            .encode(&o.carry)
            .into_bytes();
        tail.extend_from_slice(b"\",");
        let mut note = Note::new(Stream::Other, clawwatch_plugin::output::Verdict::Error);
        note.error = Some(format!(
            "line of {} bytes is over the {}-byte line limit (--max-line-bytes); original bytes in raw_base64",
            o.total, self.limits.line_bytes
        ));
        note.write_member(&mut tail);
        tail.extend_from_slice(b"}\n");
        out.push(Chunk::Passthrough(tail));
        self.oversized_lines += 1;
        if self.batch.capacity() < self.limits.bytes {
            self.batch.reserve(self.limits.bytes + 4096);
        }
    }
}

/// How long records may wait, and what happens when input goes quiet.
#[derive(Debug, Clone, Copy)]
pub struct IdlePolicy {
    /// A batch goes out when full or when its oldest record has waited this
    /// long, whatever the input rate: a trickle is not held back for a full batch.
    pub max_latency: Duration,
    /// After this long without input, an [`Chunk::Idle`] is sent (and again
    /// each time it passes), so event time can move on.
    pub advance: Option<Duration>,
}

/// Reads one input to its end through `splitter`, sending chunks as they
/// form; ends early, sending what it has read, when `stop` completes.
pub async fn read_input_until<R: AsyncRead + Unpin>(
    input: R,
    splitter: &mut Splitter,
    tx: &mpsc::Sender<Chunk>,
    idle: IdlePolicy,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut out = Vec::new();
    // When the oldest whole line waiting in the splitter was read.
    let mut oldest: Option<tokio::time::Instant> = None;
    tokio::pin!(stop);
    loop {
        let wait = match oldest.filter(|_| splitter.has_pending()) {
            Some(since) => Some(idle.max_latency.saturating_sub(since.elapsed())),
            None => idle.advance,
        };
        let read = tokio::select! {
            biased;
            _ = &mut stop => None,
            read = async {
                match wait {
                    Some(wait) => tokio::time::timeout(wait, reader.fill_buf()).await.ok(),
                    None => Some(reader.fill_buf().await),
                }
            } => Some(read),
        };
        let data = match read {
            // Stopped: what was read so far still goes out.
            None => {
                splitter.end_of_input(&mut out);
                splitter.flush(&mut out);
                send_all(&mut out, tx).await?;
                return Ok(());
            }
            Some(None) => {
                if splitter.has_pending() {
                    splitter.flush(&mut out);
                } else {
                    out.push(Chunk::Idle);
                }
                oldest = None;
                send_all(&mut out, tx).await?;
                continue;
            }
            Some(Some(read)) => read?,
        };
        if data.is_empty() {
            splitter.end_of_input(&mut out);
            splitter.flush(&mut out);
            send_all(&mut out, tx).await?;
            return Ok(());
        }
        let n = data.len();
        let had_pending = splitter.has_pending();
        splitter.push(data, &mut out);
        reader.consume(n);
        let emitted = out.iter().any(|c| matches!(c, Chunk::Batch { .. }));
        if !splitter.has_pending() {
            oldest = None;
        } else if emitted || !had_pending {
            // What waits now was read in this read.
            oldest = Some(tokio::time::Instant::now());
        }
        send_all(&mut out, tx).await?;
    }
}

async fn send_all(out: &mut Vec<Chunk>, tx: &mpsc::Sender<Chunk>) -> anyhow::Result<()> {
    for chunk in out.drain(..) {
        tx.send(chunk)
            .await
            .map_err(|_| anyhow::anyhow!("output closed"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(records: usize, line_bytes: usize) -> BatchLimits {
        BatchLimits {
            records,
            bytes: 1 << 20,
            line_bytes,
        }
    }

    fn run(splitter: &mut Splitter, pieces: &[&[u8]]) -> Vec<Chunk> {
        let mut out = Vec::new();
        for p in pieces {
            splitter.push(p, &mut out);
        }
        splitter.end_of_input(&mut out);
        splitter.flush(&mut out);
        out
    }

    #[test]
    fn lines_split_across_reads_are_joined_and_batches_respect_the_count() {
        let mut s = Splitter::new(limits(2, 100));
        let out = run(&mut s, &[b"{\"a\"", b":1}\n{\"b\":2}\n{\"c\"", b":3}"]);
        assert_eq!(
            batches(&out),
            vec![
                (&b"{\"a\":1}\n{\"b\":2}\n"[..], 2),
                (&b"{\"c\":3}\n"[..], 1)
            ]
        );
    }

    fn batches(out: &[Chunk]) -> Vec<(&[u8], usize)> {
        out.iter()
            .filter_map(|c| match c {
                Chunk::Batch { bytes, records, .. } => Some((bytes.as_slice(), *records)),
                _ => None,
            })
            .collect()
    }

    /// Lines read before a reload signal never share a batch with lines read
    /// after it, so each is judged by the policy of its time.
    #[test]
    fn a_reload_signal_cuts_the_batch_at_the_record_boundary() {
        let mut s = Splitter::new(limits(100, 100));
        let mut out = Vec::new();
        s.push(b"{\"a\":1}\n{\"b\":2}\n{\"c\"", &mut out);
        assert!(out.is_empty(), "waiting for more");
        let before = s.epoch;
        crate::stage::reload::next_policy_epoch();
        s.push(b":3}\n{\"d\":4}\n", &mut out);
        s.flush(&mut out);
        let epochs: Vec<u64> = out
            .iter()
            .filter_map(|c| match c {
                Chunk::Batch { epoch, .. } => Some(*epoch),
                _ => None,
            })
            .collect();
        assert_eq!(
            batches(&out),
            vec![
                (&b"{\"a\":1}\n{\"b\":2}\n"[..], 2),
                (&b"{\"c\":3}\n{\"d\":4}\n"[..], 2)
            ]
        );
        assert!(epochs[0] == before && epochs[1] > before, "{epochs:?}");
    }

    #[test]
    fn oversized_lines_stream_through_as_base64_in_order() {
        let mut s = Splitter::new(limits(10, 8));
        let out = run(&mut s, &[b"{\"a\":1}\n0123456789", b"abcdef\n{\"b\":2}\n"]);
        let mut text = Vec::new();
        for c in &out {
            match c {
                Chunk::Batch { bytes, .. } => text.extend_from_slice(bytes),
                Chunk::Passthrough(b) => text.extend_from_slice(b),
                _ => {}
            }
        }
        let lines: Vec<serde_json::Value> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["a"], 1);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(lines[1]["raw_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(raw, b"0123456789abcdef");
        assert!(
            lines[1]["clawwatch"]["error"]
                .as_str()
                .unwrap()
                .contains("line of 16 bytes")
        );
        assert_eq!(lines[2]["b"], 2);
        assert_eq!(s.oversized_lines, 1);
    }

    #[test]
    fn memory_stays_bounded_on_a_line_without_end() {
        let mut s = Splitter::new(limits(10, 1024));
        let mut out = Vec::new();
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            s.push(&block, &mut out);
            assert!(s.batch.len() <= 1024);
            out.clear();
        }
        s.end_of_input(&mut out);
        assert_eq!(s.oversized_lines, 1);
    }
}
