//! Sinks: where enriched records go (stdout, NDJSON over TCP, the Fluent
//! forward protocol, HTTP). Each takes the engine stage's output in order and
//! tells the source's sender its records are safely out only once the
//! carrier confirmed them.

pub mod forward;
pub mod http;
pub mod kafka;
pub mod tcp;

use crate::stage::Delivery;
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
