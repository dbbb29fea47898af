//! pmacct (nfacctd, sfacctd, pmacctd) JSON output:
//! `{"event_type":"purge","ip_src":"10.20.0.15","ip_dst":"93.184.216.34","port_src":51000,"port_dst":443,"ip_proto":"tcp","timestamp_start":"2026-11-24 14:31:00.000000","timestamp_end":"2026-11-24 14:31:02.000000","packets":9,"bytes":5120}`
//! The protocol may be a name or a number; times may be text (UTC, as
//! `timestamps_utc: true` writes them) or epoch numbers (`timestamps_since_epoch: true`).

use super::fields::{Fields, Key};
use super::flow::{FlowKeys, flow_with};
use super::reader::Time;
use super::{Event, Reader, Recognized, Stream};

const KEYS: FlowKeys = FlowKeys {
    src: Key::IpSrc,
    dst: Key::IpDst,
    src_port: Key::PortSrc,
    dst_port: Key::PortDst,
    proto: Key::IpProto,
    bytes: Key::Bytes,
    packets: Key::Packets,
};

pub fn flow(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Flow,
        format: "pmacct",
    };
    let decode = || {
        let ts = r.required(Key::TimestampStart, Reader::read::<Time>)?;
        flow_with(&r, ts, r.read::<Time>(Key::TimestampEnd)?, &KEYS)
    };
    Recognized::from_decoded(decode(), Event::Flow)
}
