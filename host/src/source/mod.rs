//! Sources: where records come from (stdin and files, NDJSON over TCP, the
//! Fluent forward protocol, HTTP, an OpenClaw gateway). Each cuts what it
//! reads into [`Chunk`]s, in input order, for the engine stage; none keeps
//! more than its bounds allow, whatever a sender does.

pub mod budget;
pub mod forward;
pub mod http;
pub mod kafka;
pub mod lines;
pub mod listener;
pub mod openclaw_gateway;

use crate::forward_codec::EventTime;
use std::path::PathBuf;

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
    /// NDJSON batches POSTed over HTTP (Vector's `http` sink), until
    /// interrupted; each answered 200 once its records are safely out.
    Http(String),
    /// Topics read as a member of a Kafka consumer group, until interrupted;
    /// offsets committed once their records are safely out.
    Kafka(kafka::KafkaInput),
}

/// What the reader hands on, in input order.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    /// Whole lines, each ending in `\n`, for the engine, all read in one
    /// reload `epoch`.
    Batch {
        bytes: Vec<u8>,
        records: usize,
        epoch: u64,
    },
    /// Output bytes of an oversized line, to be written as they are.
    Passthrough(Vec<u8>),
    /// Input has been idle: event time may be advanced to the wall clock.
    Idle,
    /// Records whose sender waits to hear they are safely out (a forward
    /// chunk, an HTTP request).
    Acked(Batch),
    /// A new policy text, to apply before the first records of `epoch`
    /// (read after the signal), or once [`Chunk::ApplyReload`] says so.
    Reload { text: String, epoch: u64 },
    /// Records read before the reload's signal have all been handed on by now
    /// (each reader hands on what it read within the latency bound): a
    /// reload still waiting applies.
    ApplyReload { epoch: u64 },
    /// Time to save the engine's state (`--state`).
    Snapshot,
}

/// How the sender of an acked delivery hears that its records are out.
#[derive(Debug)]
pub enum Ack {
    /// A forward chunk id, to the connection's ack writer.
    Forward {
        chunk: String,
        to: tokio::sync::mpsc::Sender<String>,
    },
    /// An HTTP request waiting for its response.
    Http(tokio::sync::oneshot::Sender<()>),
    /// Kafka offsets to commit.
    Kafka {
        offsets: kafka::Offsets,
        to: tokio::sync::mpsc::Sender<kafka::Offsets>,
    },
}

impl Ack {
    fn id(&self) -> Option<&str> {
        match self {
            Ack::Forward { chunk, .. } => Some(chunk),
            Ack::Http(_) | Ack::Kafka { .. } => None,
        }
    }
}

/// Records of one acked delivery (a forward message, an HTTP request) on
/// their way through the engine.
#[derive(Debug)]
pub struct Batch {
    pub tag: String,
    /// Each record's time, in order: the enriched records keep them.
    pub times: Vec<EventTime>,
    /// The records as NDJSON, one line each.
    pub ndjson: Vec<u8>,
    /// Whom to tell once the records are safely out.
    pub ack: Option<Ack>,
    /// The policy reload epoch the records were read in.
    pub epoch: u64,
}

impl PartialEq for Batch {
    fn eq(&self, other: &Batch) -> bool {
        (
            &self.tag,
            &self.times,
            &self.ndjson,
            self.ack.as_ref().map(Ack::id),
        ) == (
            &other.tag,
            &other.times,
            &other.ndjson,
            other.ack.as_ref().map(Ack::id),
        )
    }
}

/// Where enriched records came from, so a forward output keeps tags and times
/// and the sender hears only once they are safely out.
#[derive(Debug)]
pub struct Origin {
    pub tag: String,
    pub times: Vec<EventTime>,
    pub ack: Option<Ack>,
}

impl Origin {
    /// Tells the sender its records are safely out, if it asked.
    pub async fn acknowledge(self) {
        match self.ack {
            Some(Ack::Forward { chunk, to }) => {
                let _ = to.send(chunk).await;
            }
            Some(Ack::Http(to)) => {
                let _ = to.send(());
            }
            Some(Ack::Kafka { offsets, to }) => {
                let _ = to.send(offsets).await;
            }
            None => {}
        }
    }
}
