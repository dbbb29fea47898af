//! One pass over a JSON record that keeps only the keys some input format uses.
//!
//! The values are kept loosely typed ([`Value`]) so a record whose `src_port` is a
//! string or whose `ts` is garbage still parses: the format decoder then names
//! the exact field and what was wrong with it, instead of serde rejecting the
//! whole record. Keys no format uses are skipped without allocating.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::fmt;

mod scan;
pub use scan::{KeyOrder, is_json_object};

/// Known keys a record holds without the field storage leaving the stack:
/// enough for the widest format (goflow2's IPFIX records carry about 20).
const INLINE_FIELDS: usize = 24;

macro_rules! known_keys {
    ($($variant:ident = $name:literal,)*) => {
        /// The top-level keys that some input format reads.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Key { $($variant,)* }

        /// How many keys there are: the size of a record's slot table.
        const KEY_COUNT: usize = Key::ALL.len();

        impl Key {
            #[cfg_attr(not(test), allow(dead_code))]
            const ALL: &[Key] = &[$(Key::$variant),*];

            fn from_name(name: &str) -> Option<Key> {
                match name { $($name => Some(Key::$variant),)* _ => None }
            }

            pub fn name(self) -> &'static str {
                match self { $(Key::$variant => $name,)* }
            }
        }
    };
}

known_keys! {
    Type = "type",
    Stream = "stream",
    Ts = "ts",
    End = "end",
    AgentId = "agent_id",
    AgentType = "agent_type",
    Deployment = "deployment",
    Ip = "ip",
    Ips = "ips",
    TaskId = "task_id",
    ExpectedLifetimeMinutes = "expected_lifetime_minutes",
    Reason = "reason",
    Profile = "profile",
    ExtendMinutes = "extend_minutes",
    SrcIp = "src_ip",
    DstIp = "dst_ip",
    SrcPort = "src_port",
    DstPort = "dst_port",
    Proto = "proto",
    Bytes = "bytes",
    Packets = "packets",
    TcpFlags = "tcp_flags",
    TimeFlowStartNs = "time_flow_start_ns",
    TimeFlowEndNs = "time_flow_end_ns",
    TimeReceivedNs = "time_received_ns",
    SrcAddr = "src_addr",
    DstAddr = "dst_addr",
    SamplerAddress = "sampler_address",
    ClientIp = "client_ip",
    ResolverIp = "resolver_ip",
    Qname = "qname",
    Qtype = "qtype",
    Rcode = "rcode",
    Answers = "answers",
    WindowStart = "window_start",
    WindowEnd = "window_end",
    Connections = "connections",
    Actions = "actions",
    Dest = "dest",
    Port = "port",
    ProtoName = "protocol",
    Expires = "expires",
    Approver = "approver",
    // pmacct / nfacctd
    IpSrc = "ip_src",
    IpDst = "ip_dst",
    PortSrc = "port_src",
    PortDst = "port_dst",
    IpProto = "ip_proto",
    TimestampStart = "timestamp_start",
    TimestampEnd = "timestamp_end",
    // nfdump
    First = "first",
    Last = "last",
    Src4Addr = "src4_addr",
    Src6Addr = "src6_addr",
    Dst4Addr = "dst4_addr",
    Dst6Addr = "dst6_addr",
    InBytes = "in_bytes",
    InPackets = "in_packets",
    // Suricata EVE
    Timestamp = "timestamp",
    EventType = "event_type",
    DestIp = "dest_ip",
    DestPort = "dest_port",
    FlowStats = "flow",
    Netflow = "netflow",
    DnsEvent = "dns",
    // Zeek
    OrigH = "id.orig_h",
    OrigP = "id.orig_p",
    RespH = "id.resp_h",
    RespP = "id.resp_p",
    OrigBytes = "orig_bytes",
    OrigPkts = "orig_pkts",
    Query = "query",
    QtypeName = "qtype_name",
    RcodeName = "rcode_name",
    Ttls = "TTLs",
    // OpenClaw gateway agent events
    RunId = "runId",
    SessionKey = "sessionKey",
    Data = "data",
    Status = "status",
    DurationMs = "durationMs",
    AgentIdCamel = "agentId",
    SessionId = "sessionId",
    // OpenClaw gateway WebSocket frames
    Event = "event",
    Payload = "payload",
    // OpenClaw's gateway file log (tslog)
    Meta = "_meta",
    Id = "id",
    Request = "request",
    CreatedAtMs = "createdAtMs",
    ResolvedBy = "resolvedBy",
    // openclaw-telemetry JSONL
    Seq = "seq",
    ToolName = "toolName",
    Params = "params",
    PrevHash = "prevHash",
    Hash = "hash",
    // NanoClaw (pino)
    Msg = "msg",
    Time = "time",
    Group = "group",
    ContainerName = "containerName",
    RejectedBy = "rejected_by",
    // iron-proxy (Go slog JSON) and IronClaw's AuditEnvelope
    Audit = "audit",
    Action = "action",
    Decision = "decision",
    // Shippers' wrappers of a text line
    Message = "message",
    Log = "log",
    AtTimestamp = "@timestamp",
}

/// A JSON value borrowed from the record where possible, of any type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    UInt(u64),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    List(Vec<Value<'a>>),
    Map(Vec<(Cow<'a, str>, Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The JSON type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::UInt(_) | Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::List(_) => "an array",
            Value::Map(_) => "an object",
        }
    }

    fn owns_heap(&self) -> bool {
        matches!(
            self,
            Value::Str(Cow::Owned(_)) | Value::List(_) | Value::Map(_)
        )
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer, also from a string of digits (several collectors
    /// quote their counters).
    #[inline]
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::UInt(v) => Some(*v),
            other => other.as_u64_otherwise(),
        }
    }

    /// [`Value::as_u64`] for the rarer types, out of line so that the usual
    /// integer costs its callers no call (in the guest, a call saves and
    /// restores every register the whole function uses).
    #[inline(never)]
    fn as_u64_otherwise(&self) -> Option<u64> {
        match self {
            Value::UInt(v) => Some(*v),
            Value::Int(v) => u64::try_from(*v).ok(),
            Value::Float(v) if v.fract() == 0.0 && *v >= 0.0 && *v < 1.8e19 => Some(*v as u64),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::UInt(v) => Some(*v as f64),
            Value::Int(v) => Some(*v as f64),
            Value::Float(v) => Some(*v),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short rendering of the value for error messages, never longer than ~40 chars.
    pub fn preview(&self) -> String {
        let full = match self {
            Value::Null => "null".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::UInt(v) => v.to_string(),
            Value::Int(v) => v.to_string(),
            Value::Float(v) => v.to_string(),
            Value::Str(s) => format!("\"{s}\""),
            Value::List(_) => "[...]".to_string(),
            Value::Map(_) => "{...}".to_string(),
        };
        if full.chars().count() > 40 {
            let cut: String = full.chars().take(37).collect();
            format!("{cut}...")
        } else {
            full
        }
    }
}

/// The known keys of one record.
#[derive(Debug)]
pub struct Fields<'a> {
    values: SmallVec<[Value<'a>; INLINE_FIELDS]>,
    /// Per key, 1 + its index in `values` (0: absent). Formats look keys up a
    /// dozen times per record; this makes each lookup one load.
    slots: [u8; KEY_COUNT],
    /// The record already has a top-level `clawwatch` key (it went through
    /// clawwatch before): it is kept renamed, not beside a second note.
    pub has_clawwatch: bool,
    /// How many top-level members the record has, known or not (a shipper's
    /// bare wrapper of a line has exactly one).
    pub members: usize,
    /// Some value kept owns heap memory (an unescaped string, a list, an
    /// object). Most records' borrow all theirs: dropping them is then
    /// skipped, which in the component was a call per value per record.
    owns_heap: bool,
}

impl Drop for Fields<'_> {
    fn drop(&mut self) {
        if !self.owns_heap {
            // SAFETY: no value kept owns anything, so not dropping them
            // leaks nothing; the vector still frees its own buffer.
            unsafe { self.values.set_len(0) }
        }
    }
}

impl<'a> Fields<'a> {
    pub fn empty() -> Fields<'a> {
        Fields {
            values: SmallVec::new(),
            slots: [0; KEY_COUNT],
            has_clawwatch: false,
            members: 0,
            owns_heap: false,
        }
    }

    /// Parses one JSON object. Errors are serde_json's (with line/column), for
    /// text that is not a JSON object at all.
    pub fn parse(line: &'a str) -> Result<Fields<'a>, serde_json::Error> {
        let mut fields = Fields::empty();
        fields.read(line)?;
        Ok(fields)
    }

    /// [`Fields::parse`] into these (empty) fields, in place.
    pub fn read(&mut self, line: &'a str) -> Result<(), serde_json::Error> {
        self.read_in_order(line, &mut KeyOrder::off())
    }

    /// [`Fields::read`] for one record of a run: `order` remembers the
    /// keys of the ones before (the hot path).
    pub fn read_in_order(
        &mut self,
        line: &'a str,
        order: &mut KeyOrder,
    ) -> Result<(), serde_json::Error> {
        if scan::read_known_fields(line, self, order) {
            return Ok(());
        }
        *self = Fields::empty();
        *self = Self::parse_with_serde(line)?;
        Ok(())
    }

    /// The slow path, and the reference the fast one is tested against.
    fn parse_with_serde(line: &'a str) -> Result<Fields<'a>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(line);
        let fields = de.deserialize_map(FieldsVisitor)?;
        de.end()?;
        Ok(fields)
    }

    /// The known keys of an object nested in a record (a WebSocket frame's
    /// `payload`), as if it were the record.
    pub fn from_value(value: &Value<'a>) -> Option<Fields<'a>> {
        let Value::Map(entries) = value else {
            return None;
        };
        let mut fields = Fields::empty();
        fields.members = entries.len();
        for (name, value) in entries {
            if let Some(key) = Key::from_name(name) {
                fields.insert(key, value.clone());
            }
        }
        Some(fields)
    }

    /// Keeps a known key's value; duplicate keys: the last one wins, as in most JSON parsers.
    // Into the scanner: called per known key, it was 3% of native instructions.
    #[inline(always)]
    fn insert(&mut self, key: Key, value: Value<'a>) {
        self.owns_heap |= value.owns_heap();
        match self.slots[key as usize] {
            0 if self.values.len() < usize::from(u8::MAX) => {
                self.values.push(value);
                self.slots[key as usize] = self.values.len() as u8;
            }
            0 => {}
            slot => self.values[usize::from(slot) - 1] = value,
        }
    }

    pub fn get(&self, key: Key) -> Option<&Value<'a>> {
        match self.slots[key as usize] {
            0 => None,
            slot => self.values.get(usize::from(slot) - 1),
        }
    }

    pub fn has(&self, key: Key) -> bool {
        self.get(key).is_some_and(|v| *v != Value::Null)
    }

    pub fn str(&self, key: Key) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::empty();
        while let Some(name) = map.next_key::<KeyName<'de>>()? {
            fields.members += 1;
            match Key::from_name(&name.0) {
                Some(key) => {
                    let value = map.next_value_seed(ValueSeed)?;
                    fields.insert(key, value);
                }
                None => {
                    if name.0 == "clawwatch" {
                        fields.has_clawwatch = true;
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// A key borrowed from the input unless it contains escapes.
struct KeyName<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).map(KeyName)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Bounds the nesting kept for known keys: deeper structure is not read by any
/// format and would only cost memory.
const MAX_DEPTH: u32 = 8;

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(ValueVisitor { depth: 0 })
    }
}

struct ValueVisitor {
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(Value::UInt(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(Value::Int(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value<'de>, E> {
        Ok(Value::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        if self.depth >= MAX_DEPTH {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Value::List(Vec::new()));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueVisitor {
            depth: self.depth + 1,
        })? {
            items.push(item);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(name) = map.next_key::<KeyName<'de>>()? {
            if self.depth >= MAX_DEPTH {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value = map.next_value_seed(ValueVisitor {
                depth: self.depth + 1,
            })?;
            entries.push((name.0, value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_known_keys_and_skips_the_rest() {
        let line = r#"{"src_addr":"10.0.0.1","noise":{"deep":[1,2,{"x":3}]},"dst_port":443,"bytes":"1200"}"#;
        let f = Fields::parse(line).unwrap();
        assert_eq!(f.str(Key::SrcAddr), Some("10.0.0.1"));
        assert_eq!(f.get(Key::DstPort).and_then(Value::as_u64), Some(443));
        assert_eq!(f.get(Key::Bytes).and_then(Value::as_u64), Some(1200));
        assert!(f.get(Key::Ts).is_none());
        assert!(!f.has_clawwatch);
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let f = Fields::parse(r#"{"dst_port":1,"src_port":2,"dst_port":3}"#).unwrap();
        assert_eq!(f.get(Key::DstPort).and_then(Value::as_u64), Some(3));
        assert_eq!(f.get(Key::SrcPort).and_then(Value::as_u64), Some(2));
    }

    #[test]
    fn mistyped_values_still_parse() {
        let f = Fields::parse(r#"{"dst_port":"https","ts":[1]}"#).unwrap();
        assert_eq!(f.get(Key::DstPort).unwrap().as_u64(), None);
        assert_eq!(f.get(Key::Ts).unwrap().type_name(), "an array");
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let f = Fields::parse(r#"{"qname":"a\u0062c.example","clawwatch":{}}"#).unwrap();
        assert_eq!(f.str(Key::Qname), Some("abc.example"));
        assert!(f.has_clawwatch);
    }

    #[test]
    fn rejects_non_objects_and_trailing_garbage() {
        for bad in ["[1,2]", "42", "{\"a\":1} x", "{\"a\":", ""] {
            assert!(Fields::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deep_nesting_is_cut_not_rejected() {
        let mut line = String::from(r#"{"answers":"#);
        line.push_str(&"[".repeat(20));
        line.push_str(&"]".repeat(20));
        line.push('}');
        assert!(Fields::parse(&line).is_ok());
    }
}
