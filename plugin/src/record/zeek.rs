//! Zeek logs written as JSON: `conn.log` and `dns.log`.
//!
//! `{"ts":1795530660.0,"uid":"C1","id.orig_h":"10.20.0.15","id.orig_p":51000,"id.resp_h":"93.184.216.34","id.resp_p":443,"proto":"tcp","service":"ssl","orig_bytes":1200,"resp_bytes":3920,"conn_state":"SF","orig_pkts":5}`
//! `{"ts":1795530605.0,"uid":"C2","id.orig_h":"10.20.0.15","id.orig_p":40000,"id.resp_h":"10.0.0.53","id.resp_p":53,"proto":"udp","query":"api.internal.example.net","qtype_name":"A","rcode_name":"NOERROR","answers":["93.184.216.34"],"TTLs":[300.0]}`

use super::fields::{Fields, Key, Value};
use super::flow::{FlowKeys, flow_with};
use super::reader::{Ip, Time};
use super::{DnsAnswer, DnsQuery, Event, Flow, Reader, Recognized, Stream};

const KEYS: FlowKeys = FlowKeys {
    src: Key::OrigH,
    dst: Key::RespH,
    src_port: Key::OrigP,
    dst_port: Key::RespP,
    proto: Key::Proto,
    bytes: Key::OrigBytes,
    packets: Key::OrigPkts,
};

pub fn conn(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Flow,
        format: "zeek conn",
    };
    let decode = || {
        let ts = r.required(Key::Ts, Reader::read::<Time>)?;
        // A conn.log entry is the whole conversation, its originator the client.
        flow_with(&r, ts, None, &KEYS).map(|f| Flow {
            src_initiated: true,
            ..f
        })
    };
    Recognized::from_decoded(decode(), Event::Flow)
}

pub fn dns(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Dns,
        format: "zeek dns",
    };
    let decode = || {
        let ttls: Vec<u32> = match fields.get(Key::Ttls) {
            Some(Value::List(items)) => items
                .iter()
                .map(|v| {
                    v.as_f64()
                        .map_or(0, |t| t.max(0.0).min(u32::MAX as f64) as u32)
                })
                .collect(),
            _ => Vec::new(),
        };
        let answers = match fields.get(Key::Answers) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::List(items)) => items
                .iter()
                .take(64)
                .enumerate()
                .filter_map(|(i, v)| {
                    v.as_str().map(|data| DnsAnswer {
                        data: data.to_string(),
                        ttl: ttls.get(i).copied().unwrap_or(0),
                    })
                })
                .collect(),
            Some(other) => {
                return Err(r.error(
                    Key::Answers,
                    format!("must be an array, found {}", other.type_name()),
                ));
            }
        };
        Ok(DnsQuery {
            ts: r.required(Key::Ts, Reader::read::<Time>)?,
            client: r.required(Key::OrigH, Reader::read::<Ip>)?,
            resolver: r.read::<Ip>(Key::RespH)?,
            qname: super::dns::normalize_owned_name(r.required(Key::Query, Reader::string)?),
            qtype: r
                .string(Key::QtypeName)?
                .as_deref()
                .map(super::dns::dns_word),
            rcode: r
                .string(Key::RcodeName)?
                .as_deref()
                .map(super::dns::dns_word),
            answers,
        })
    };
    Recognized::from_decoded(decode(), Event::Dns)
}
