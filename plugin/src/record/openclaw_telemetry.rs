//! The openclaw-telemetry plugin's JSONL (DESIGN §2.1): one line per tool
//! call, agent turn, model call or message, each with a per-process `seq`
//! and, with its integrity option on, ending in `"prevHash"` and `"hash"`:
//! `hash = sha256(prevHash ‖ JSON of the line without those two)`, the first
//! `prevHash` of a process being 64 zeros.
//! `{"type":"tool.start","toolName":"web_fetch","params":{"url":"https://…"},"sessionKey":"agent:main:main","agentId":"main","seq":7,"ts":1796239489887,"prevHash":"…","hash":"…"}`
//!
//! A line is activity of its agent (spawning it when first seen, as OpenClaw's
//! own events do); a `tool.start` naming a URL or host is an intent. The
//! chain itself is checked by `telemetry.chain_broken`.

use super::fields::{Fields, Key};
use super::openclaw::destination_in_args;
use super::reader::{Count, Time};
use super::{OpenClawSettings, PlannedAction, Proto, Reader, Recognized, Spawn, Stream};
use crate::net::Destination;
use crate::time::{NANOS_PER_SEC, Timestamp};

/// The plugin's event types.
pub const TYPES: &[&str] = &[
    "tool.start",
    "tool.end",
    "agent.start",
    "agent.end",
    "llm.usage",
    "message.in",
    "message.out",
];

/// One telemetry line, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryLine {
    pub ts: Timestamp,
    pub seq: u64,
    pub kind: String,
    /// The agent the line names (`agentId`, or inside `sessionKey`), spawned by it if new.
    pub agent: Option<Spawn>,
    /// A `tool.start` with a URL or host in its params.
    pub intent: Option<PlannedAction>,
    pub tool: Option<String>,
    /// The line's chain links, when its integrity option is on.
    pub chain: Option<ChainLinks>,
}

/// The two hashes a line states, and whether the line's own bytes match.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainLinks {
    pub prev_hash: String,
    pub hash: String,
    /// sha256(prev_hash ‖ the line without its links) equals `hash`;
    /// `None` until the raw line is checked, or when the line was
    /// re-serialised so its links are not its last members.
    pub verified: Option<bool>,
}

pub fn is_telemetry(fields: &Fields) -> bool {
    fields.str(Key::Type).is_some_and(|t| TYPES.contains(&t)) && fields.has(Key::Seq)
}

pub fn line(fields: &Fields, settings: &OpenClawSettings) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Control,
        format: "openclaw-telemetry",
    };
    let decode = || -> Result<TelemetryLine, super::DecodeError> {
        let ts = r.required(Key::Ts, Reader::read::<Time>)?;
        let seq = r.required(Key::Seq, Reader::read::<Count>)?;
        let kind = r.required(Key::Type, Reader::string)?;
        let session = r.string(Key::SessionKey)?;
        let agent_id = match r.string(Key::AgentIdCamel)? {
            Some(id) => Some(id),
            None => session
                .as_deref()
                .and_then(super::openclaw::agent_in_session_key),
        };
        let agent = agent_id
            .map(|id| super::openclaw::implicit_spawn(ts, &id, session.as_deref(), settings));
        let tool = r.string(Key::ToolName)?;
        let intent = (kind == "tool.start")
            .then(|| destination_in_args(fields.get(Key::Params)))
            .flatten()
            .and_then(|(host, port)| {
                Some(PlannedAction {
                    id: Some(format!("telemetry seq {seq}")),
                    dest: Destination::parse(&host).ok()?,
                    port: Some(port),
                    proto: Some(Proto::Tcp),
                    not_before: Timestamp(ts.0 - 5 * NANOS_PER_SEC).into(),
                    not_after: Timestamp(ts.0 + 600 * NANOS_PER_SEC).into(),
                    every_minutes: None,
                })
            });
        let chain = match (r.string(Key::PrevHash)?, r.string(Key::Hash)?) {
            (Some(prev_hash), Some(hash)) => Some(ChainLinks {
                prev_hash,
                hash,
                verified: None,
            }),
            (None, None) => None,
            (Some(_), None) => return Err(r.error(Key::Hash, "is missing beside `prevHash`")),
            (None, Some(_)) => return Err(r.error(Key::PrevHash, "is missing beside `hash`")),
        };
        Ok(TelemetryLine {
            ts,
            seq,
            kind,
            agent,
            intent,
            tool,
            chain,
        })
    };
    Recognized::from_decoded(decode(), |line| super::Event::Telemetry(Box::new(line)))
}

impl TelemetryLine {
    /// Checks the line's own hash against its raw bytes: the plugin hashes
    /// `prevHash` followed by `JSON.stringify` of the line before the two
    /// links were appended, so that text is the raw line up to
    /// `,"prevHash":`, closed.
    pub fn verify(&mut self, raw: &[u8]) {
        use sha2::{Digest, Sha256};
        let Some(chain) = self.chain.as_mut() else {
            return;
        };
        let suffix = format!(
            ",\"prevHash\":\"{}\",\"hash\":\"{}\"}}",
            chain.prev_hash, chain.hash
        );
        let raw = raw.trim_ascii();
        chain.verified = raw.strip_suffix(suffix.as_bytes()).map(|body| {
            let mut h = Sha256::new();
            h.update(chain.prev_hash.as_bytes());
            h.update(body);
            h.update(b"}");
            let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            digest == chain.hash
        });
    }
}
