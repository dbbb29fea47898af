#!/usr/bin/env python3
"""Writes testdata/formats/<format>.ndjson: the same traffic in every input
format clawwatch reads, so a test can check they all get the same verdicts,
and <format>.malformed.ndjson: broken records of that format, each of which
must come out tagged `error` naming the field. Deterministic."""
import json
import os
from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)
here = os.path.dirname(os.path.abspath(__file__))


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def rfc(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(t):
    return int(t.timestamp())


SPAWN = {"type": "agent.spawn", "ts": rfc(at(0)), "agent_id": "0x8a3f", "agent_type": "data_collector_v1",
         "deployment": "staging", "ips": ["10.20.0.15", "fd00:20::15"]}

# (seconds, src, sport, dst, dport, proto, bytes, packets)
FLOWS = [
    (60, "10.20.0.15", 51000, "93.184.216.34", 443, "TCP", 5120, 9),      # allowed through DNS
    (70, "10.20.0.15", 51001, "203.0.113.9", 8443, "TCP", 900, 4),        # not allowed
    (80, "10.20.0.15", 51002, "8.8.8.8", 53, "UDP", 120, 1),              # DNS around the corp resolvers
    (90, "fd00:20::15", 51003, "2001:db8::34", 443, "TCP", 4000, 7),      # IPv6, allowed through AAAA
    (100, "10.20.9.9", 51004, "198.51.100.7", 443, "TCP", 300, 2),        # no agent holds 10.20.9.9
]

# (seconds, client, resolver, qname, qtype, answers)
QUERIES = [
    (10, "10.20.0.15", "10.0.0.53", "api.internal.example.net", "A", ["93.184.216.34"]),
    (11, "fd00:20::15", "10.0.0.53", "api.internal.example.net", "AAAA", ["2001:db8::34"]),
]

PROTO_NUMBERS = {"TCP": 6, "UDP": 17}


def flow_canonical(s, src, sp, dst, dp, proto, b, p):
    return {"type": "flow", "ts": rfc(at(s)), "src_ip": src, "src_port": sp, "dst_ip": dst, "dst_port": dp, "proto": proto, "bytes": b, "packets": p}


def flow_goflow2(s, src, sp, dst, dp, proto, b, p):
    ns = epoch(at(s)) * 10**9
    return {"type": "IPFIX", "time_received_ns": ns + 60 * 10**9, "sequence_num": 7, "sampling_rate": 0, "sampler_address": "10.0.0.1",
            "time_flow_start_ns": ns, "time_flow_end_ns": ns + 2 * 10**9, "bytes": b, "packets": p, "src_addr": src, "dst_addr": dst,
            "etype": "IPv6" if ":" in src else "IPv4", "proto": proto, "src_port": sp, "dst_port": dp, "in_if": 3, "out_if": 4}


def flow_pmacct(s, src, sp, dst, dp, proto, b, p):
    return {"event_type": "purge", "ip_src": src, "ip_dst": dst, "port_src": sp, "port_dst": dp, "ip_proto": proto.lower(),
            "timestamp_start": at(s).strftime("%Y-%m-%d %H:%M:%S.000000"), "timestamp_end": at(s + 2).strftime("%Y-%m-%d %H:%M:%S.000000"),
            "packets": p, "bytes": b, "writer_id": "default_kafka/1"}


def flow_nfdump(s, src, sp, dst, dp, proto, b, p):
    v = "6" if ":" in src else "4"
    return {"type": "FLOW", "sampled": 0, "export_sysid": 1, "first": at(s).strftime("%Y-%m-%dT%H:%M:%S.000"),
            "last": at(s + 2).strftime("%Y-%m-%dT%H:%M:%S.000"), "received": at(s + 60).strftime("%Y-%m-%dT%H:%M:%S.000"),
            "in_packets": p, "in_bytes": b, "proto": PROTO_NUMBERS[proto], "tcp_flags": "...AP.SF", "src_port": sp, "dst_port": dp,
            "fwd_status": 0, "src_tos": 0, f"src{v}_addr": src, f"dst{v}_addr": dst, "src_mask": 0, "dst_mask": 0}


def suricata_time(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.000000+0000")


def flow_suricata(s, src, sp, dst, dp, proto, b, p):
    return {"timestamp": suricata_time(at(s + 2)), "flow_id": 1000 + s, "event_type": "flow", "src_ip": src, "src_port": sp, "dest_ip": dst,
            "dest_port": dp, "proto": proto, "app_proto": "tls" if dp == 443 else "failed",
            "flow": {"pkts_toserver": p, "pkts_toclient": p, "bytes_toserver": b, "bytes_toclient": b * 3, "start": suricata_time(at(s)),
                     "end": suricata_time(at(s + 2)), "age": 2, "state": "closed", "reason": "timeout", "alerted": False}}


def flow_suricata_netflow(s, src, sp, dst, dp, proto, b, p):
    return {"timestamp": suricata_time(at(s + 2)), "flow_id": 2000 + s, "event_type": "netflow", "src_ip": src, "src_port": sp, "dest_ip": dst,
            "dest_port": dp, "proto": proto, "netflow": {"pkts": p, "bytes": b, "start": suricata_time(at(s)), "end": suricata_time(at(s + 2)), "age": 2}}


def flow_zeek(s, src, sp, dst, dp, proto, b, p):
    return {"ts": float(epoch(at(s))), "uid": f"C{s}", "id.orig_h": src, "id.orig_p": sp, "id.resp_h": dst, "id.resp_p": dp,
            "proto": proto.lower(), "duration": 2.0, "orig_bytes": b, "resp_bytes": b * 3, "conn_state": "SF", "orig_pkts": p, "resp_pkts": p}


def dns_canonical(s, client, resolver, qname, qtype, answers):
    return {"type": "dns", "ts": rfc(at(s)), "client_ip": client, "resolver_ip": resolver, "qname": qname, "qtype": qtype, "rcode": "NOERROR",
            "answers": [{"data": a, "ttl": 3600} for a in answers]}


def dns_suricata_v3(s, client, resolver, qname, qtype, answers):
    return {"timestamp": suricata_time(at(s)), "flow_id": 3000 + s, "event_type": "dns", "src_ip": resolver, "src_port": 53, "dest_ip": client,
            "dest_port": 40000 + s, "proto": "UDP", "dns": {"version": 3, "type": "response", "id": 4242, "flags": "8180", "qr": True, "rd": True,
            "ra": True, "opcode": 0, "queries": [{"rrname": qname, "rrtype": qtype}], "rcode": "NOERROR",
            "answers": [{"rrname": qname, "rrtype": qtype, "ttl": 3600, "rdata": a} for a in answers]}}


def dns_suricata_v2(s, client, resolver, qname, qtype, answers):
    return {"timestamp": suricata_time(at(s)), "flow_id": 4000 + s, "event_type": "dns", "src_ip": client, "src_port": 40000 + s, "dest_ip": resolver,
            "dest_port": 53, "proto": "UDP", "dns": {"version": 2, "type": "answer", "id": 4242, "flags": "8180", "rrname": qname, "rrtype": qtype,
            "rcode": "NOERROR", "answers": [{"rrname": qname, "rrtype": qtype, "ttl": 3600, "rdata": a} for a in answers]}}


def dns_zeek(s, client, resolver, qname, qtype, answers):
    return {"ts": float(epoch(at(s))), "uid": f"D{s}", "id.orig_h": client, "id.orig_p": 40000 + s, "id.resp_h": resolver, "id.resp_p": 53,
            "proto": "udp", "trans_id": 4242, "query": qname, "qclass": 1, "qclass_name": "C_INTERNET", "qtype_name": qtype, "rcode": 0,
            "rcode_name": "NOERROR", "AA": False, "TC": False, "RD": True, "RA": True, "Z": 0, "answers": answers, "TTLs": [3600.0] * len(answers),
            "rejected": False}


FLOW_FORMATS = {"canonical": flow_canonical, "goflow2": flow_goflow2, "pmacct": flow_pmacct, "nfdump": flow_nfdump,
                "suricata_flow": flow_suricata, "suricata_netflow": flow_suricata_netflow, "zeek_conn": flow_zeek}
DNS_FORMATS = {"suricata_dns_v3": dns_suricata_v3, "suricata_dns_v2": dns_suricata_v2, "zeek_dns": dns_zeek}


def write(name, records):
    with open(os.path.join(here, f"{name}.ndjson"), "w") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r, separators=(",", ":"))) + "\n")


for name, make in FLOW_FORMATS.items():
    write(name, [SPAWN] + [dns_canonical(*q) for q in QUERIES] + [make(*fl) for fl in FLOWS])
for name, make in DNS_FORMATS.items():
    write(name, [SPAWN] + [make(*q) for q in QUERIES] + [flow_canonical(*fl) for fl in FLOWS])

# Broken records of each format: each must come out tagged `error` naming the field.
ok = FLOWS[0]
def broken(make, **changes):
    r = make(*ok)
    for k, v in changes.items():
        if v is None:
            r.pop(k, None)
        else:
            r[k] = v
    return r

MALFORMED = {
    "goflow2": [broken(flow_goflow2, src_addr="10.20.0.300"), broken(flow_goflow2, proto="QUIC!"), broken(flow_goflow2, dst_port=70000)],
    "pmacct": [broken(flow_pmacct, timestamp_start=None), broken(flow_pmacct, port_src="abc"), broken(flow_pmacct, ip_proto=999)],
    "nfdump": [broken(flow_nfdump, first="noon"), broken(flow_nfdump, in_bytes=-5), broken(flow_nfdump, dst4_addr=None)],
    "suricata_flow": [broken(flow_suricata, dest_ip=None), broken(flow_suricata, flow={"start": "later"}), broken(flow_suricata, flow=7)],
    "zeek_conn": [broken(flow_zeek, **{"id.orig_p": "x"}), broken(flow_zeek, ts="sometime"), broken(flow_zeek, proto=None)],
    "suricata_dns": [broken(lambda *_: dns_suricata_v3(*QUERIES[0]), dns={"version": 3, "queries": []}),
                     broken(lambda *_: dns_suricata_v3(*QUERIES[0]), timestamp=None)],
    "zeek_dns": [broken(lambda *_: dns_zeek(*QUERIES[0]), answers="93.184.216.34"), broken(lambda *_: dns_zeek(*QUERIES[0]), query=None)],
}
for name, records in MALFORMED.items():
    write(f"{name}.malformed", records)
print(f"wrote {len(FLOW_FORMATS) + len(DNS_FORMATS)} formats and {len(MALFORMED)} malformed sets")
