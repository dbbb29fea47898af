//! Suricata EVE JSON: `flow` and `netflow` events, and `dns` events in the v3
//! (Suricata 7) and v2 (Suricata 6) layouts.
//!
//! `{"timestamp":"2026-11-24T14:31:02.000000+0000","event_type":"flow","src_ip":"10.20.0.15","src_port":51000,"dest_ip":"93.184.216.34","dest_port":443,"proto":"TCP","flow":{"pkts_toserver":5,"pkts_toclient":4,"bytes_toserver":1200,"bytes_toclient":3920,"start":"2026-11-24T14:31:00.000000+0000","end":"2026-11-24T14:31:02.000000+0000"}}`
//! `{"timestamp":"2026-11-24T14:30:05.000000+0000","event_type":"dns","src_ip":"10.0.0.53","src_port":53,"dest_ip":"10.20.0.15","dest_port":40000,"proto":"UDP","dns":{"version":3,"type":"response","queries":[{"rrname":"api.internal.example.net","rrtype":"A"}],"answers":[{"rrname":"api.internal.example.net","rrtype":"A","ttl":300,"rdata":"93.184.216.34"}],"rcode":"NOERROR"}}`
//! A flow event counts both directions; clawwatch judges it as the
//! client's (src) connection. In DNS events the client is the side not on port 53.

use super::fields::{Fields, Key, Value};
use super::flow::{FlowKeys, flow_with};
use super::reader::{Count, Ip, Port, Time};
use super::{DnsAnswer, DnsQuery, Event, Reader, Recognized, Stream};

const KEYS: FlowKeys = FlowKeys {
    src: Key::SrcIp,
    dst: Key::DestIp,
    src_port: Key::SrcPort,
    dst_port: Key::DestPort,
    proto: Key::Proto,
    bytes: Key::Bytes,
    packets: Key::Packets,
};

/// `event_type` `flow` (stats under `flow`) or `netflow` (under `netflow`).
pub fn flow(fields: &Fields) -> Recognized {
    let netflow = fields.str(Key::EventType) == Some("netflow");
    let r = Reader {
        fields,
        stream: Stream::Flow,
        format: if netflow {
            "suricata netflow"
        } else {
            "suricata flow"
        },
    };
    let stats = if netflow {
        Key::Netflow
    } else {
        Key::FlowStats
    };
    let decode = || {
        let ts = match r.nested_read::<Time>(stats, "start")? {
            Some(t) => t,
            None => r.required(Key::Timestamp, Reader::read::<Time>)?,
        };
        let mut f = flow_with(&r, ts, r.nested_read::<Time>(stats, "end")?, &KEYS)?;
        if netflow {
            f.bytes = r.nested_read::<Count>(stats, "bytes")?.unwrap_or(0);
            f.packets = r.nested_read::<Count>(stats, "pkts")?.unwrap_or(0);
        } else {
            // A flow event is the whole conversation, its source the client.
            f.src_initiated = true;
            // What the client sent: the agent's side of the exchange.
            f.bytes = r
                .nested_read::<Count>(stats, "bytes_toserver")?
                .unwrap_or(0);
            f.packets = r.nested_read::<Count>(stats, "pkts_toserver")?.unwrap_or(0);
        }
        Ok(f)
    };
    Recognized::from_decoded(decode(), Event::Flow)
}

pub fn dns(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Dns,
        format: "suricata dns",
    };
    let decode = || {
        let ts = r.required(Key::Timestamp, Reader::read::<Time>)?;
        let (src, dst) = (
            r.required(Key::SrcIp, Reader::read::<Ip>)?,
            r.required(Key::DestIp, Reader::read::<Ip>)?,
        );
        let (client, resolver) = if r.read::<Port>(Key::SrcPort)? == Some(53) {
            (dst, src)
        } else {
            (src, dst)
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        // v3: queries[0].rrname; v2: rrname at the top of `dns`.
        let first_query = r.nested(Key::DnsEvent, "queries")?.and_then(|q| match q {
            Value::List(items) => items.first(),
            _ => None,
        });
        let qname = match first_query {
            Some(q) => text(q.get("rrname")),
            None => text(r.nested(Key::DnsEvent, "rrname")?),
        }
        .ok_or_else(|| {
            r.error(
                Key::DnsEvent,
                "has no query name (`queries[0].rrname` or `rrname`)",
            )
        })?;
        let qtype = match first_query {
            Some(q) => q.get("rrtype"),
            None => r.nested(Key::DnsEvent, "rrtype")?,
        };
        let word = |v: Option<&Value>| v.and_then(Value::as_str).map(super::dns::dns_word);
        let mut answers = Vec::new();
        if let Some(Value::List(items)) = r.nested(Key::DnsEvent, "answers")? {
            for item in items.iter().take(64) {
                if let Some(data) = item.get("rdata").and_then(Value::as_str) {
                    let ttl = item.get("ttl").and_then(Value::as_u64).unwrap_or(0);
                    answers.push(DnsAnswer {
                        data: data.to_string(),
                        ttl: u32::try_from(ttl).unwrap_or(u32::MAX),
                    });
                }
            }
        }
        Ok(DnsQuery {
            ts,
            client,
            resolver: Some(resolver),
            qname: super::dns::normalize_owned_name(qname),
            qtype: word(qtype),
            rcode: word(r.nested(Key::DnsEvent, "rcode")?),
            answers,
        })
    };
    Recognized::from_decoded(decode(), Event::Dns)
}
