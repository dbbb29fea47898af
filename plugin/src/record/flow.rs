//! Flow records: the canonical clawwatch shape and goflow2's JSON (DESIGN §2.2).

use super::fields::{Fields, Key};
use super::reader::{Count, Ip, Port, Protocol, TcpFlags, Time};
use super::{DecodeError, Event, Flow, Proto, Reader, Recognized, Stream};
use crate::time::Timestamp;

/// Where a flow format keeps what every flow has.
pub(crate) struct FlowKeys {
    pub src: Key,
    pub dst: Key,
    pub src_port: Key,
    pub dst_port: Key,
    pub proto: Key,
    pub bytes: Key,
    pub packets: Key,
}

pub(crate) const CANONICAL_KEYS: FlowKeys = FlowKeys {
    src: Key::SrcIp,
    dst: Key::DstIp,
    src_port: Key::SrcPort,
    dst_port: Key::DstPort,
    proto: Key::Proto,
    bytes: Key::Bytes,
    packets: Key::Packets,
};

/// The fields every flow format shares once its times are known: addresses,
/// protocol, ports and counters, under the format's own keys.
fn flow(
    r: &Reader,
    ts: Timestamp,
    end: Option<Timestamp>,
    src_key: Key,
    dst_key: Key,
) -> Result<Flow, DecodeError> {
    flow_with(
        r,
        ts,
        end,
        &FlowKeys {
            src: src_key,
            dst: dst_key,
            ..CANONICAL_KEYS
        },
    )
}

pub(crate) fn flow_with(
    r: &Reader,
    ts: Timestamp,
    end: Option<Timestamp>,
    k: &FlowKeys,
) -> Result<Flow, DecodeError> {
    let src = r.required(k.src, Reader::read::<Ip>)?;
    let dst = r.required(k.dst, Reader::read::<Ip>)?;
    let proto = r.required(k.proto, Reader::read::<Protocol>)?;
    let (src_port, dst_port) = (r.read::<Port>(k.src_port)?, r.read::<Port>(k.dst_port)?);
    // Ports are meaningless for ICMP and other port-less protocols.
    let (src_port, dst_port) = if matches!(proto, Proto::Tcp | Proto::Udp) {
        (
            src_port.ok_or_else(|| r.error(k.src_port, "is missing"))?,
            dst_port.ok_or_else(|| r.error(k.dst_port, "is missing"))?,
        )
    } else {
        (src_port.unwrap_or(0), dst_port.unwrap_or(0))
    };
    Ok(Flow {
        ts,
        end,
        src,
        dst,
        src_port,
        dst_port,
        proto,
        bytes: r.read::<Count>(k.bytes)?.unwrap_or(0),
        packets: r.read::<Count>(k.packets)?.unwrap_or(0),
        tcp_flags: match proto {
            Proto::Tcp => r.read::<TcpFlags>(Key::TcpFlags)?,
            _ => None,
        },
        src_initiated: false,
    })
}

/// `{"type":"flow","ts","src_ip","src_port","dst_ip","dst_port","proto","bytes","packets","end"}`
pub fn canonical(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Flow,
        format: "flow",
    };
    let decode = || {
        let ts = r.required(Key::Ts, Reader::read::<Time>)?;
        flow(&r, ts, r.read::<Time>(Key::End)?, Key::SrcIp, Key::DstIp)
    };
    Recognized::from_decoded(decode(), Event::Flow)
}

/// goflow2 JSON: `time_flow_start_ns, time_flow_end_ns, src_addr, dst_addr,
/// src_port, dst_port, proto, bytes, packets, sampler_address`.
pub fn goflow2(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Flow,
        format: "goflow2",
    };
    let nanos = |key: Key| -> Result<Option<Timestamp>, DecodeError> {
        match r.read::<Count>(key)? {
            // sFlow samples carry no flow start: 0 means "unknown".
            None | Some(0) => Ok(None),
            Some(n) => i64::try_from(n)
                .map(|n| Some(Timestamp(n)))
                .map_err(|_| r.error(key, "is out of range")),
        }
    };
    let decode = || {
        let ts = match nanos(Key::TimeFlowStartNs)? {
            Some(ts) => ts,
            None => nanos(Key::TimeReceivedNs)?.ok_or_else(|| {
                r.error(Key::TimeFlowStartNs, "is missing (and no time_received_ns)")
            })?,
        };
        flow(
            &r,
            ts,
            nanos(Key::TimeFlowEndNs)?,
            Key::SrcAddr,
            Key::DstAddr,
        )
    };
    Recognized::from_decoded(decode(), Event::Flow)
}

#[cfg(test)]
mod tests {
    use super::super::{Event, Proto, Recognized, recognize};
    use super::*;

    fn run(line: &str) -> Recognized {
        recognize(&Fields::parse(line).unwrap())
    }

    #[test]
    fn canonical_and_goflow2_decode_to_the_same_flow() {
        let Recognized::Event(Event::Flow(a)) = run(
            r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.0.15","src_port":51000,"dst_ip":"93.184.216.34","dst_port":443,"proto":"TCP","bytes":5120,"packets":9}"#,
        ) else {
            panic!()
        };
        let Recognized::Event(Event::Flow(b)) = run(
            r#"{"time_received_ns":1795530720000000000,"time_flow_start_ns":1795530660000000000,"time_flow_end_ns":0,"src_addr":"10.20.0.15","dst_addr":"93.184.216.34","src_port":51000,"dst_port":443,"proto":"TCP","bytes":5120,"packets":9,"sampler_address":"10.0.0.1","etype":"IPv4"}"#,
        ) else {
            panic!()
        };
        assert_eq!(a, b);
        assert_eq!(a.proto, Proto::Tcp);
    }

    #[test]
    fn goflow2_falls_back_to_receive_time_and_numeric_proto() {
        let Recognized::Event(Event::Flow(f)) = run(
            r#"{"time_received_ns":1795530720000000000,"time_flow_start_ns":0,"src_addr":"::ffff:10.20.0.15","dst_addr":"8.8.8.8","src_port":5353,"dst_port":53,"proto":17}"#,
        ) else {
            panic!()
        };
        assert_eq!(f.ts, Timestamp(1_795_530_720_000_000_000));
        assert_eq!(f.proto, Proto::Udp);
        assert_eq!(f.src.to_string(), "10.20.0.15");
    }

    #[test]
    fn icmp_needs_no_ports_but_tcp_does() {
        assert!(matches!(
            run(
                r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.0.15","dst_ip":"1.1.1.1","proto":"ICMP"}"#
            ),
            Recognized::Event(Event::Flow(_))
        ));
        match run(
            r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.0.15","dst_ip":"1.1.1.1","proto":"TCP","src_port":1}"#,
        ) {
            Recognized::Invalid(e) => assert_eq!(e.field, "dst_port"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mistyped_fields_are_named() {
        for (line, field) in [
            (
                r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.0.15","dst_ip":"1.1.1.1","proto":"TCP","src_port":1,"dst_port":70000}"#,
                "dst_port",
            ),
            (
                r#"{"type":"flow","ts":"2026-11-24T14:31:00Z","src_ip":"10.20.0.15","dst_ip":"1.1.1.1","proto":"TCP","src_port":1,"dst_port":1,"bytes":"lots"}"#,
                "bytes",
            ),
            (
                r#"{"src_addr":"10.20.0.15","dst_addr":"x","time_flow_start_ns":5,"proto":"TCP"}"#,
                "dst_addr",
            ),
            (
                r#"{"src_addr":"10.20.0.15","dst_addr":"1.1.1.1","proto":"TCP","src_port":1,"dst_port":2}"#,
                "time_flow_start_ns",
            ),
        ] {
            match run(line) {
                Recognized::Invalid(e) => assert_eq!(e.field, field, "{e}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }
}
