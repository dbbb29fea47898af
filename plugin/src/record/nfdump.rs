//! nfdump's JSON records (`nfdump -o json`, one object per record):
//! `{"type":"FLOW","first":"2026-11-24T14:31:00.000","last":"2026-11-24T14:31:02.000","in_packets":9,"in_bytes":5120,"proto":6,"src_port":51000,"dst_port":443,"src4_addr":"10.20.0.15","dst4_addr":"93.184.216.34"}`
//! IPv6 flows use `src6_addr`/`dst6_addr`. nfdump writes local time without a
//! zone: clawwatch reads it as UTC unless the policy's `[inputs]
//! nfdump_utc_offset` says otherwise (or run nfdump with `TZ=UTC`). nfdump
//! 1.7.1 prints a JSON array: turn it into lines with `jq -c '.[]'`.

use super::fields::{Fields, Key};
use super::flow::{FlowKeys, flow_with};
use super::reader::Time;
use super::{Event, Reader, Recognized, Stream};

/// `utc_offset_secs`: the zone nfdump wrote its local times in, east of UTC.
pub fn flow(fields: &Fields, utc_offset_secs: i64) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Flow,
        format: "nfdump",
    };
    let (src, dst) = if fields.has(Key::Src6Addr) {
        (Key::Src6Addr, Key::Dst6Addr)
    } else {
        (Key::Src4Addr, Key::Dst4Addr)
    };
    let keys = FlowKeys {
        src,
        dst,
        src_port: Key::SrcPort,
        dst_port: Key::DstPort,
        proto: Key::Proto,
        bytes: Key::InBytes,
        packets: Key::InPackets,
    };
    let to_utc = |t: crate::time::Timestamp| t.plus_secs(-utc_offset_secs);
    let decode = || {
        let ts = to_utc(r.required(Key::First, Reader::read::<Time>)?);
        flow_with(&r, ts, r.read::<Time>(Key::Last)?.map(to_utc), &keys)
    };
    Recognized::from_decoded(decode(), Event::Flow)
}
