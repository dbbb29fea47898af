//! Sinks: where enriched records go (stdout, NDJSON over TCP, the Fluent
//! forward protocol, HTTP). Each takes the engine stage's output in order and
//! tells the source's sender its records are safely out only once the
//! carrier confirmed them.

pub mod forward;
pub mod http;
pub mod kafka;
pub mod tcp;

use crate::component::{Judged, Stream};
use crate::stage::Delivery;
use std::borrow::Cow;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Where enriched records go.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stdout,
    /// NDJSON over TCP (e.g. Vector's `socket` source): reconnects and resends
    /// a batch whose write failed, but TCP cannot confirm delivery, so what a
    /// receiver accepted and lost as it went down is lost.
    Tcp(String),
    /// The Fluent forward protocol (a `forward` input of Fluent Bit, Fluentd or
    /// Vector's `fluent` source), each chunk resent until acked.
    Forward(String),
    /// NDJSON batches POSTed to this URL (Vector's `http_server` source with
    /// acknowledgements), each resent until answered 2xx.
    Http(String),
    /// A Kafka topic, each record keyed by its agent and produced again until
    /// the broker acknowledges it.
    Kafka(kafka::KafkaOutput),
}

impl std::str::FromStr for Output {
    type Err = String;
    fn from_str(s: &str) -> Result<Output, String> {
        if s == "-" || s == "stdout" {
            return Ok(Output::Stdout);
        }
        let address = |scheme: &str| s.strip_prefix(scheme).filter(|a| a.contains(':'));
        if let Some(addr) = address("tcp://") {
            Ok(Output::Tcp(addr.to_string()))
        } else if let Some(addr) = address("forward://") {
            Ok(Output::Forward(addr.to_string()))
        } else if let Some(rest) = address("http://") {
            http::Target::parse(rest).map_err(|e| format!("`{s}`: {e}"))?;
            Ok(Output::Http(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not an output: use \"-\" (stdout), tcp://HOST:PORT, forward://HOST:PORT or http://HOST:PORT/PATH"
            ))
        }
    }
}

/// Delivers everything the stage writes, until it stops writing.
pub async fn deliver(output: Output, mut out_rx: mpsc::Receiver<Delivery>) -> std::io::Result<()> {
    match output {
        Output::Tcp(addr) => tcp::write(&addr, &mut out_rx).await,
        Output::Forward(addr) => {
            forward::write(&addr, &mut out_rx).await;
            Ok(())
        }
        Output::Http(url) => {
            http::write(&url, &mut out_rx).await;
            Ok(())
        }
        Output::Kafka(kafka) => kafka::write(&kafka, &mut out_rx)
            .await
            .map_err(|e| std::io::Error::other(format!("{e:#}"))),
        Output::Stdout => {
            let mut stdout = tokio::io::BufWriter::with_capacity(1 << 20, tokio::io::stdout());
            while let Some(Delivery { output, origin }) = out_rx.recv().await {
                stdout.write_all(&output.ndjson).await?;
                // Each batch goes out at once: downstream pipelines see records promptly.
                stdout.flush().await?;
                if let Some(origin) = origin {
                    origin.acknowledge().await;
                }
            }
            stdout.flush().await
        }
    }
}

/// Turns the stage's output into whole records for carriers that send one
/// record at a time. The engine's lines come described; a line too long for
/// the engine is passed through in undescribed pieces, possibly over several
/// deliveries, and is gathered here until it is whole.
#[derive(Default)]
pub struct Records {
    /// Pieces of a passed-through line not yet ended.
    piece: Vec<u8>,
}

impl Records {
    /// The whole records `output` completes, in order, without their `\n`,
    /// each with whether it is an incident or audit record.
    pub fn of<'o>(&mut self, output: &'o Judged) -> Vec<(Cow<'o, [u8]>, bool)> {
        let mut records = Vec::new();
        if output.lines.is_empty() {
            self.piece.extend_from_slice(&output.ndjson);
            while let Some(end) = memchr::memchr(b'\n', &self.piece) {
                let mut line: Vec<u8> = self.piece.drain(..=end).collect();
                line.pop();
                records.push((Cow::Owned(line), false));
            }
        }
        for (line, described) in output.each_line() {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let incident = matches!(described.stream, Stream::Incident | Stream::Audit);
            records.push((Cow::Borrowed(line), incident));
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::Records;
    use crate::component::{Judged, OutputLine, Stream, Verdict};

    #[test]
    fn a_passed_through_line_is_one_record_however_many_pieces_it_came_in() {
        let mut records = Records::default();
        let piece = |bytes: &[u8]| Judged {
            ndjson: bytes.to_vec(),
            lines: Vec::new(),
        };
        assert!(records.of(&piece(b"{\"raw_base64\":\"AAAA")).is_empty());
        let end = piece(b"BBBB\"}\n");
        let whole = records.of(&end);
        assert_eq!(whole.len(), 1);
        assert_eq!(&*whole[0].0, &b"{\"raw_base64\":\"AAAABBBB\"}"[..]);

        let line = |length: u32, stream| OutputLine {
            length,
            stream,
            verdict: Verdict::Allow,
            partition: None,
        };
        let judged = Judged {
            ndjson: b"{\"a\":1}\n{\"i\":2}\n".to_vec(),
            lines: vec![line(8, Stream::Flow), line(8, Stream::Incident)],
        };
        let described = records.of(&judged);
        assert_eq!(described.len(), 2);
        assert_eq!(
            (&*described[0].0, described[0].1),
            (&b"{\"a\":1}"[..], false)
        );
        assert_eq!(
            (&*described[1].0, described[1].1),
            (&b"{\"i\":2}"[..], true)
        );
    }
}
