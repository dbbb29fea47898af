//! Input records: recognising a record's kind by its shape and decoding it into
//! one of the few events the engine reasons about.
//!
//! Every input format (DESIGN §2) is decoded here into [`Event`], so the rules
//! never see a format. A record of a known format with a missing or mistyped
//! field becomes a [`DecodeError`] naming the field, never a dropped record.

mod control;
mod dns;
mod endpoints;
pub use endpoints::Endpoints;
pub mod fields;
mod flow;
mod intent;
pub use intent::{MAX_EVERY_MINUTES, MAX_PLANNED_ACTIONS};
mod ironclaw;
mod nanoclaw;
mod nfdump;
mod openclaw;
mod openclaw_telemetry;
pub use openclaw_telemetry::{ChainLinks, TelemetryLine};
mod pmacct;
mod reader;
pub(crate) use reader::{Item, Reader, parse_ip};
mod suricata;
mod zeek;

pub use crate::net::{Destination, Proto};
use crate::text::Word;
use crate::time::{OptionalTimestamp, Timestamp};
use fields::{Fields, Key};
use reader::Time;
use std::fmt;
use std::net::IpAddr;

/// Which stream a record belongs to; written to the output as `clawwatch.stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Control,
    Flow,
    Dns,
    Heartbeat,
    /// An egress proxy's log of a connection asked for by name.
    Proxy,
    /// A record clawwatch emits about an incident (opened or closed).
    Incident,
    /// A record clawwatch emits about an approved unplanned call.
    Audit,
    /// Not a record kind clawwatch knows.
    Other,
}

impl Stream {
    /// Every stream, in declaration order (`stream as usize` indexes it).
    pub const ALL: [Stream; 8] = [
        Stream::Control,
        Stream::Flow,
        Stream::Dns,
        Stream::Heartbeat,
        Stream::Proxy,
        Stream::Incident,
        Stream::Audit,
        Stream::Other,
    ];

    /// Each stream's name, in declaration order.
    const NAMES: [&'static str; Stream::ALL.len()] = [
        "control",
        "flow",
        "dns",
        "heartbeat",
        "proxy",
        "incident",
        "audit",
        "other",
    ];

    pub fn as_str(self) -> &'static str {
        Stream::NAMES[self as usize]
    }

    /// [`Stream::as_str`] as a [`Word`], for the note on every record.
    pub(crate) fn word(self) -> &'static Word {
        const WORDS: [Word; Stream::ALL.len()] = crate::text::words(Stream::NAMES);
        &WORDS[self as usize]
    }
}

/// `agent.spawn`: an agent comes alive and holds its addresses until terminated.
#[derive(Debug, Clone, PartialEq)]
pub struct Spawn {
    pub ts: Timestamp,
    pub agent_id: String,
    pub agent_type: String,
    pub deployment: Option<String>,
    /// Profile to judge the agent by; defaults to `agent_type`.
    pub profile: Option<String>,
    pub ips: Vec<IpAddr>,
    pub task_id: Option<String>,
    pub expected_lifetime_minutes: Option<u64>,
}

/// `agent.terminate`: the agent's addresses are released at `ts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminate {
    pub ts: Timestamp,
    pub agent_id: String,
    pub reason: Option<String>,
}

/// `agent.policy`: reassigns the profile and/or extends the expected lifetime.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyChange {
    pub ts: Timestamp,
    pub agent_id: String,
    pub profile: Option<String>,
    pub extend_minutes: Option<u64>,
}

/// One unidirectional flow, as NetFlow/IPFIX-style collectors report it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Flow {
    /// When the flow started: what attribution is judged against.
    pub ts: Timestamp,
    pub end: Option<Timestamp>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: Proto,
    pub bytes: u64,
    pub packets: u64,
    /// TCP flags seen over the flow (OR of every packet's), when the exporter gives them.
    pub tcp_flags: Option<u8>,
    /// The exporter says the source opened the connection (bidirectional
    /// records: Suricata `flow`, Zeek `conn`). NetFlow-style records do not.
    pub src_initiated: bool,
}

/// TCP SYN and ACK bits, as NetFlow/IPFIX `tcpControlBits` carry them.
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

impl Flow {
    /// The source opened this connection, by the record's own word: a
    /// bidirectional record, or a SYN never acknowledged from this side (an
    /// answering side's SYN always travels with an ACK).
    pub fn opened_by_source(&self) -> bool {
        self.src_initiated
            || self
                .tcp_flags
                .is_some_and(|f| f & TCP_SYN != 0 && f & TCP_ACK == 0)
    }
}

/// One DNS answer: an address (A/AAAA) or a name (CNAME and others).
#[derive(Debug, Clone, PartialEq)]
pub struct DnsAnswer {
    pub data: String,
    pub ttl: u32,
}

/// A DNS query and its answers, as a resolver or sensor logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsQuery {
    pub ts: Timestamp,
    pub client: IpAddr,
    pub resolver: Option<IpAddr>,
    pub qname: String,
    pub qtype: Option<std::borrow::Cow<'static, str>>,
    pub rcode: Option<std::borrow::Cow<'static, str>>,
    pub answers: Vec<DnsAnswer>,
}

/// One connection an agent says it made (DESIGN §2.4).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportedConnection {
    /// Host name or address, as the agent wrote it (normalised).
    #[serde(with = "crate::name::text")]
    pub dest: String,
    pub port: Option<u16>,
    pub proto: Option<Proto>,
    pub count: u64,
    pub bytes_out: u64,
}

/// `agent.heartbeat`: the agent's own account of a window of its traffic.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Heartbeat {
    pub ts: Timestamp,
    #[serde(with = "crate::name::text")]
    pub agent_id: String,
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub connections: Vec<ReportedConnection>,
}

/// One network action of a declared plan (DESIGN §2.5).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlannedAction {
    pub id: Option<String>,
    pub dest: Destination,
    pub port: Option<u16>,
    pub proto: Option<Proto>,
    /// 8 bytes each where an `Option<Timestamp>` took 16 (saved as one):
    /// a plan holds up to 64 actions for as long as its agent lives.
    pub not_before: OptionalTimestamp,
    pub not_after: OptionalTimestamp,
    /// A periodic action: expected at `not_before` + k × this.
    pub every_minutes: Option<u64>,
}

/// `agent.plan`: what the agent intends to reach (replaces any earlier plan).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub ts: Timestamp,
    pub agent_id: String,
    pub actions: Vec<PlannedAction>,
}

/// `approval.grant`: a just-in-time authorisation (DESIGN §2.6).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub ts: Timestamp,
    pub agent_id: String,
    pub dest: Destination,
    pub port: Option<u16>,
    pub proto: Option<Proto>,
    pub expires: Option<Timestamp>,
    pub approver: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
/// Big, rare kinds are boxed: an event is moved a few times per record, and
/// a flow (88 bytes) should not pay for a 400-byte telemetry line.
pub enum Event {
    Spawn(Box<Spawn>),
    Terminate(Terminate),
    PolicyChange(PolicyChange),
    Flow(Flow),
    Dns(DnsQuery),
    Heartbeat(Heartbeat),
    Plan(Plan),
    Grant(Grant),
    Intent(Box<Intent>),
    Proxied(ProxiedCall),
    Liveness(Liveness),
    Seen(Box<Seen>),
    Telemetry(Box<TelemetryLine>),
}

impl Event {
    pub fn seen(seen: Seen) -> Event {
        Event::Seen(Box::new(seen))
    }

    pub fn intent(intent: Intent) -> Event {
        Event::Intent(Box::new(intent))
    }

    pub fn stream(&self) -> Stream {
        match self {
            Event::Spawn(_)
            | Event::Terminate(_)
            | Event::PolicyChange(_)
            | Event::Plan(_)
            | Event::Grant(_)
            | Event::Intent(_)
            | Event::Seen(_)
            | Event::Telemetry(_) => Stream::Control,
            Event::Proxied(_) => Stream::Proxy,
            Event::Liveness(_) => Stream::Heartbeat,
            Event::Heartbeat(_) => Stream::Heartbeat,
            Event::Flow(_) => Stream::Flow,
            Event::Dns(_) => Stream::Dns,
        }
    }

    pub fn ts(&self) -> Timestamp {
        match self {
            Event::Spawn(e) => e.ts,
            Event::Terminate(e) => e.ts,
            Event::PolicyChange(e) => e.ts,
            Event::Flow(e) => e.ts,
            Event::Dns(e) => e.ts,
            Event::Heartbeat(e) => e.ts,
            Event::Plan(e) => e.ts,
            Event::Grant(e) => e.ts,
            Event::Intent(e) => e.ts,
            Event::Proxied(e) => e.ts,
            Event::Liveness(e) => e.ts,
            Event::Seen(e) => e.spawn.ts,
            Event::Telemetry(e) => e.ts,
        }
    }
}

/// A record of a known format with a missing or unusable field.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub stream: Stream,
    pub format: &'static str,
    pub field: &'static str,
    pub problem: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} record: field `{}` {}",
            self.format, self.field, self.problem
        )
    }
}

/// What a parsed JSON object turned out to be.
#[derive(Debug)]
pub enum Recognized {
    Event(Event),
    Invalid(DecodeError),
    /// Valid JSON of no kind clawwatch knows; the reason says why.
    Unknown(String),
}

impl Recognized {
    /// A decoder's result as a recognition: the event, or the named bad field.
    pub(crate) fn from_decoded<T>(
        decoded: Result<T, DecodeError>,
        event: fn(T) -> Event,
    ) -> Recognized {
        match decoded {
            Ok(value) => Recognized::Event(event(value)),
            Err(e) => Recognized::Invalid(e),
        }
    }
}

/// Settings for reading inputs whose records leave something implicit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputSettings {
    /// nfdump writes local time without a zone: its offset east of UTC, in seconds.
    pub nfdump_utc_offset_secs: i64,
    pub openclaw: OpenClawSettings,
    pub nanoclaw: NanoClawSettings,
}

/// How OpenClaw's agents (lasting `agentId`s) map onto clawwatch agents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenClawSettings {
    /// The agent type of agents without an entry in `agent_types` (default `openclaw`).
    pub agent_type: Option<String>,
    /// The agent type per OpenClaw agent id.
    pub agent_types: std::collections::BTreeMap<String, String>,
    /// Sandbox addresses by `sessionKey`: flows from them are that agent's alone.
    pub session_addresses: std::collections::BTreeMap<String, Vec<IpAddr>>,
    /// The gateway host, whose address its agents share.
    pub gateway: Option<GatewaySettings>,
}

impl OpenClawSettings {
    pub fn agent_type_of(&self, agent_id: &str) -> String {
        self.agent_types
            .get(agent_id)
            .or(self.agent_type.as_ref())
            .cloned()
            .unwrap_or_else(|| "openclaw".into())
    }
}

/// An OpenClaw gateway: an agent of its own (its scheduled turns, its own
/// calls) on an address its agents share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    pub agent_id: String,
    pub profile: String,
    pub ips: Vec<IpAddr>,
}

/// How NanoClaw's session containers map onto agents, and the date its
/// time-only text lines leave out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NanoClawSettings {
    pub framework: FrameworkSettings,
    /// The day of lines that carry only a time of day (`2026-12-02`), when
    /// the shipper gives no record time.
    pub day: Option<crate::time::Timestamp>,
    /// NanoClaw prints local time: the host's offset east of UTC, in seconds.
    pub utc_offset_secs: i64,
}

/// How an agent framework's records map onto agents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameworkSettings {
    /// The agent type (profile) its agents are judged by.
    pub agent_type: Option<String>,
    /// Addresses by session key (OpenClaw) or group (NanoClaw), for records that do not carry one.
    pub addresses: std::collections::BTreeMap<String, Vec<IpAddr>>,
}

/// A connection an agent asked for by name, as an egress proxy logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxiedCall {
    pub ts: Timestamp,
    pub agent: CallingAgent,
    /// Normalised host name(s) the call was for: the requested host, and the TLS SNI when it differs.
    pub hosts: Vec<String>,
    pub port: u16,
    pub method: Option<String>,
    /// What the proxy did (`allow`, `deny`, ...) and, when it refused, which control refused.
    pub action: Option<String>,
    pub rejected_by: Option<String>,
}

/// Who made a proxied call: named by the log, or found by its address.
#[derive(Debug, Clone, PartialEq)]
pub enum CallingAgent {
    Id(String),
    Address(IpAddr),
}

/// An agent's sign of life without a traffic report (OpenClaw heartbeat events).
#[derive(Debug, Clone, PartialEq)]
pub struct Liveness {
    pub ts: Timestamp,
    pub agent_id: String,
    /// What the agent said of itself (`ok`, `error`, ...) and why.
    pub status: Option<String>,
    pub reason: Option<String>,
}

/// A network action an agent announced (a tool call with a URL) just before making it.
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    pub ts: Timestamp,
    pub agent_id: String,
    pub action: PlannedAction,
    /// A framework's lasting agent is known by its activity: spawned by its
    /// first event when no spawn record named it.
    pub implicit_spawn: Option<Spawn>,
    /// What the tool call was, for the note.
    pub what: String,
}

/// A framework agent was active (a run started, a tool ran, an approval was
/// asked): spawned by it when not yet known, otherwise only noted.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub spawn: Spawn,
    pub what: String,
}

/// Recognises a record with default input settings.
pub fn recognize(fields: &Fields) -> Recognized {
    recognize_with(fields, &InputSettings::default(), None)
}

/// The input formats a record can be read as when its shape alone does not
/// say: named by `--format`, a tag's part, or the record's own `stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Goflow2,
    Pmacct,
    Nfdump,
    Suricata,
    ZeekConn,
    ZeekDns,
    /// A canonical flow (or goflow2's, by its keys).
    Flow,
    /// A canonical DNS record.
    Dns,
}

impl InputFormat {
    pub const ALL: [InputFormat; 8] = [
        InputFormat::Goflow2,
        InputFormat::Pmacct,
        InputFormat::Nfdump,
        InputFormat::Suricata,
        InputFormat::ZeekConn,
        InputFormat::ZeekDns,
        InputFormat::Flow,
        InputFormat::Dns,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            InputFormat::Goflow2 => "goflow2",
            InputFormat::Pmacct => "pmacct",
            InputFormat::Nfdump => "nfdump",
            InputFormat::Suricata => "suricata",
            InputFormat::ZeekConn => "zeek_conn",
            InputFormat::ZeekDns => "zeek_dns",
            InputFormat::Flow => "flow",
            InputFormat::Dns => "dns",
        }
    }

    /// The format of this name; a name clawwatch does not know is none.
    pub fn from_name(name: &str) -> Option<InputFormat> {
        InputFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The format a tag names in one of its dot-separated parts
    /// (`agents.pmacct`), if any: how Fluent Bit and forward senders say what
    /// their records are.
    pub fn named_in_tag(tag: &str) -> Option<InputFormat> {
        tag.split('.').find_map(InputFormat::from_name)
    }
}

/// Every format's name, for command lines and messages.
pub const FORMAT_NAMES: [&str; InputFormat::ALL.len()] = {
    let mut names = [""; InputFormat::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = InputFormat::ALL[i].name();
        i += 1;
    }
    names
};

/// Recognises a record by an explicit `stream`/`type` or else by its shape.
/// `stream` may name any format (`goflow2`, `pmacct`, `nfdump`, `suricata`,
/// `zeek_conn`, `zeek_dns`) or a kind (`flow`, `dns`).
/// `hint` names the format when the record's own `stream` does not.
pub fn recognize_with(
    fields: &Fields,
    settings: &InputSettings,
    hint: Option<InputFormat>,
) -> Recognized {
    let explicit = fields
        .str(Key::Stream)
        .and_then(InputFormat::from_name)
        .or(hint);
    match explicit {
        Some(InputFormat::Goflow2) => return flow::goflow2(fields),
        Some(InputFormat::Pmacct) => return pmacct::flow(fields),
        Some(InputFormat::Nfdump) => {
            return nfdump::flow(fields, settings.nfdump_utc_offset_secs);
        }
        Some(InputFormat::Suricata) if fields.str(Key::EventType) == Some("dns") => {
            return suricata::dns(fields);
        }
        Some(InputFormat::Suricata) => return suricata::flow(fields),
        Some(InputFormat::ZeekConn) => return zeek::conn(fields),
        Some(InputFormat::ZeekDns) => return zeek::dns(fields),
        Some(InputFormat::Flow | InputFormat::Dns) | None => {}
    }
    if let Some(kind) = fields.str(Key::Type) {
        match kind {
            "agent.spawn" => return control::spawn(fields),
            "agent.terminate" => return control::terminate(fields),
            "agent.policy" => return control::policy_change(fields),
            "flow" => return flow::canonical(fields),
            "dns" => return dns::canonical(fields),
            "agent.heartbeat" => return intent::heartbeat(fields),
            "agent.plan" => return intent::plan(fields),
            "approval.grant" => return intent::grant(fields),
            _ => {}
        }
    }
    // Agent frameworks' own records.
    if openclaw_telemetry::is_telemetry(fields) {
        return openclaw_telemetry::line(fields, &settings.openclaw);
    }
    if openclaw::is_frame(fields) {
        return openclaw::frame(fields, &settings.openclaw);
    }
    if fields.has(Key::Meta) && fields.has(Key::Time) {
        return Recognized::Unknown(
            "OpenClaw gateway file log (tslog): the gateway's own diagnostics; agents' activity comes from its WebSocket events (--openclaw-gateway)".into(),
        );
    }
    if fields.has(Key::RunId) && fields.has(Key::Stream) {
        return openclaw::agent_event(fields, &settings.openclaw);
    }
    if fields.has(Key::Status) && fields.has(Key::DurationMs) && fields.has(Key::Ts) {
        return openclaw::heartbeat(fields, &settings.openclaw);
    }
    if fields.has(Key::Msg) && fields.has(Key::Group) && nanoclaw::is_container_line(fields) {
        return nanoclaw::container(fields, &settings.nanoclaw);
    }
    if ironclaw::is_proxy_line(fields) {
        return ironclaw::proxy_line(fields);
    }
    if ironclaw::is_envelope(fields) {
        return ironclaw::envelope(fields);
    }
    // Collectors' own shapes, each by the keys only it writes.
    if let Some(kind) = fields.str(Key::EventType) {
        match kind {
            "flow" | "netflow" => return suricata::flow(fields),
            "dns" => return suricata::dns(fields),
            _ => {}
        }
    }
    if fields.has(Key::OrigH) && fields.has(Key::RespH) {
        let dns_log = fields.has(Key::Query)
            || fields.has(Key::QtypeName)
            || fields.has(Key::RcodeName)
            || fields.has(Key::Ttls);
        return if dns_log {
            zeek::dns(fields)
        } else {
            zeek::conn(fields)
        };
    }
    if fields.has(Key::IpSrc) && fields.has(Key::IpDst) {
        return pmacct::flow(fields);
    }
    if fields.has(Key::Src4Addr) || fields.has(Key::Src6Addr) {
        return nfdump::flow(fields, settings.nfdump_utc_offset_secs);
    }
    let looks_goflow =
        fields.has(Key::TimeFlowStartNs) || (fields.has(Key::SrcAddr) && fields.has(Key::DstAddr));
    match explicit {
        Some(InputFormat::Flow) if fields.has(Key::SrcIp) => return flow::canonical(fields),
        Some(InputFormat::Flow) => return flow::goflow2(fields),
        Some(InputFormat::Dns) => return dns::canonical(fields),
        _ => {}
    }
    if looks_goflow {
        return flow::goflow2(fields);
    }
    // A shipper's wrapper of a text line (Vector `message`, Fluent Bit and
    // Docker `log`): the line inside, dated by the wrapper's record time.
    if let Some(line) = fields.str(Key::Log).or_else(|| fields.str(Key::Message)) {
        let reader = Reader {
            fields,
            stream: Stream::Other,
            format: "shipper's wrapper",
        };
        let record_time = [Key::Timestamp, Key::AtTimestamp, Key::Time]
            .into_iter()
            .find_map(|k| reader.read::<Time>(k).ok().flatten());
        if let Some(recognized) = recognize_text(line, settings, record_time) {
            return recognized;
        }
        // Fluent Bit's tail input hands a line its parser could not read on as
        // `{"log": line}`: a bad line, said as the host says it of one.
        if fields.members == 1 && fields.has(Key::Log) {
            if line.trim().is_empty() {
                return Recognized::Invalid(reader.error(Key::Log, "holds an empty line"));
            }
            if let Err(e) = Fields::parse(line.trim()) {
                return Recognized::Invalid(reader.error(
                    Key::Log,
                    format!("holds a line that is not a JSON object: {e}"),
                ));
            }
        }
    }
    match fields.str(Key::Type) {
        Some(other) => Recognized::Unknown(format!(
            "unrecognised record type \"{}\"",
            truncate(other, 64)
        )),
        None => Recognized::Unknown(
            "unrecognised record shape (no `type` and no known flow or DNS fields)".into(),
        ),
    }
}

/// Recognises a line that is not a JSON object by itself: NanoClaw's text,
/// or a JSON record behind `docker logs --timestamps`' prefix. `None`: no
/// such shape. `record_time` is the shipper's, for lines that carry only a
/// time of day.
pub fn recognize_text(
    line: &str,
    settings: &InputSettings,
    record_time: Option<Timestamp>,
) -> Option<Recognized> {
    if let Some(text) = nanoclaw::parse_text_line(line) {
        return Some(nanoclaw::text_line(&text, record_time, &settings.nanoclaw));
    }
    let line = line.trim();
    if line.starts_with('{') {
        // A JSON record a shipper wrapped without parsing it.
        let fields = Fields::parse(line).ok()?;
        return Some(recognize_with(&fields, settings, None));
    }
    let (prefix, json) = line.split_once(' ')?;
    let docker_time = json.starts_with('{') && Timestamp::parse_rfc3339(prefix).is_some();
    if !docker_time {
        return None;
    }
    let fields = Fields::parse(json).ok()?;
    Some(recognize_with(&fields, settings, None))
}

pub(crate) fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        s.chars().take(max_chars).chain("...".chars()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recognize_line(line: &str) -> Recognized {
        recognize(&Fields::parse(line).unwrap())
    }

    #[test]
    fn a_shippers_wrapper_is_read_through() {
        // Fluent Bit's tail without a parser: a JSON record inside `log` is judged as itself.
        let wrapped = r#"{"log":"{\"type\":\"dns\",\"ts\":\"2026-11-24T14:30:05Z\",\"client_ip\":\"10.20.0.15\",\"qname\":\"example.net\"}"}"#;
        assert!(matches!(
            recognize_line(wrapped),
            Recognized::Event(Event::Dns(_))
        ));
        // A line it could not parse is a bad line, named as one.
        match recognize_line(r#"{"log":"GET /index.html 200"}"#) {
            Recognized::Invalid(e) => {
                assert_eq!(e.field, "log");
                assert!(e.problem.contains("not a JSON object"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // Not a bare wrapper: an application's own JSON log with a `log` text stays unknown.
        assert!(matches!(
            recognize_line(r#"{"log":"user logged in","level":"info"}"#),
            Recognized::Unknown(_)
        ));
        assert!(matches!(
            recognize_line(r#"{"message":"user logged in"}"#),
            Recognized::Unknown(_)
        ));
    }

    #[test]
    fn unknown_shapes_are_reported_not_guessed() {
        match recognize_line(r#"{"message":"hello"}"#) {
            Recognized::Unknown(reason) => {
                assert!(reason.contains("unrecognised record shape"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match recognize_line(r#"{"type":"agent.dance"}"#) {
            Recognized::Unknown(reason) => assert!(reason.contains("agent.dance"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn explicit_stream_selects_the_decoder() {
        match recognize_line(
            r#"{"stream":"dns","ts":"2026-11-24T14:30:00Z","client_ip":"10.20.0.15","qname":"example.net"}"#,
        ) {
            Recognized::Event(Event::Dns(q)) => assert_eq!(q.qname, "example.net"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_explicit_stream_names_the_format_whatever_the_shape() {
        // A pmacct record whose keys alone would not say so (no ip_dst yet).
        match recognize_line(
            r#"{"stream":"pmacct","ip_src":"10.20.0.15","port_src":1,"port_dst":2,"ip_proto":"tcp","timestamp_start":"2026-11-24 14:31:00"}"#,
        ) {
            Recognized::Invalid(e) => assert_eq!((e.format, e.field), ("pmacct", "ip_dst")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_hint_names_the_format_unless_the_record_does() {
        let line = r#"{"ip_src":"10.20.0.15","port_src":1,"port_dst":2,"ip_proto":"tcp","timestamp_start":"2026-11-24 14:31:00"}"#;
        let fields = Fields::parse(line).unwrap();
        assert!(matches!(
            recognize_with(&fields, &InputSettings::default(), None),
            Recognized::Unknown(_)
        ));
        match recognize_with(
            &fields,
            &InputSettings::default(),
            Some(InputFormat::Pmacct),
        ) {
            Recognized::Invalid(e) => assert_eq!((e.format, e.field), ("pmacct", "ip_dst")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nfdump_local_time_is_shifted_by_the_configured_offset() {
        let line = r#"{"type":"FLOW","first":"2026-11-24T15:31:00.000","in_bytes":1,"in_packets":1,"proto":6,"src_port":1,"dst_port":443,"src4_addr":"10.20.0.15","dst4_addr":"93.184.216.34"}"#;
        let fields = Fields::parse(line).unwrap();
        let Recognized::Event(Event::Flow(f)) = recognize_with(
            &fields,
            &InputSettings {
                nfdump_utc_offset_secs: 3600,
                ..InputSettings::default()
            },
            None,
        ) else {
            panic!()
        };
        assert_eq!(f.ts.to_rfc3339(), "2026-11-24T14:31:00Z");
    }

    #[test]
    fn proto_names_and_numbers_agree() {
        assert_eq!(Proto::from_name("TCP"), Some(Proto::Tcp));
        assert_eq!(Proto::from_name("6"), Some(Proto::Tcp));
        assert_eq!(Proto::from_number(17), Some(Proto::Udp));
        assert_eq!(Proto::from_name("sctp"), None);
        assert_eq!(Proto::from_number(132), Some(Proto::Other(132)));
        assert_eq!(Proto::from_number(300), None);
    }
}
