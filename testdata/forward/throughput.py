#!/usr/bin/env python3
"""Measures clawwatch's Fluent forward input: 2,000 agents (spawned, with
their DNS answers) send N allowed goflow2 flow records as PackedForward chunks
of 1,000, each asking for an ack; prints records/s, counting from the first
byte sent to the last ack received.

    ./target/release/clawwatch run --forward-listen 127.0.0.1:24224 > /dev/null &
    python3 testdata/forward/throughput.py 127.0.0.1 24224 200000
Needs PyPI's msgpack.
"""
import socket
import sys
import time

import msgpack

host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CHUNK = 1000
t0 = 1795530600
AGENTS = 2000
def ip(a):
    return f"10.20.{a // 250}.{a % 250 + 2}"
control = []
for a in range(AGENTS):
    control.append(msgpack.packb([t0, {"type": "agent.spawn", "ts": t0, "agent_id": f"a{a}", "agent_type": "data_collector_v1",
                                       "ip": ip(a), "expected_lifetime_minutes": 100000}]))
    control.append(msgpack.packb([t0 + 1, {"type": "dns", "ts": t0 + 1, "client_ip": ip(a), "resolver_ip": "10.0.0.53",
                                           "qname": "api.internal.example.net", "answers": [{"data": "93.184.216.34", "ttl": 10**7}]}]))
chunks = []
for c in range(0, total, CHUNK):
    entries = b"".join(
        msgpack.packb([msgpack.ExtType(0, (t0 + 2 + i // 20).to_bytes(4, "big") + bytes(4)),
                       {"time_flow_start_ns": (t0 + 2 + i // 20) * 10**9, "src_addr": ip(i % AGENTS), "dst_addr": "93.184.216.34",
                        "src_port": 40000 + i % 20000, "dst_port": 443, "proto": "TCP", "bytes": 1200, "packets": 3,
                        "sampler_address": "10.0.0.1"}])
        for i in range(c, min(c + CHUNK, total)))
    chunks.append(msgpack.packb(["agents.flows", entries, {"chunk": f"c{c}", "size": CHUNK}], use_bin_type=True))

s = socket.create_connection((host, port))
s.sendall(msgpack.packb(["agents.control", b"".join(control), {"chunk": "control"}], use_bin_type=True))
unpacker = msgpack.Unpacker(raw=False)
started = time.perf_counter()
acked = 0
window = 8  # chunks in flight
chunks.insert(0, None)  # the control chunk, already sent
sent = 1
while acked < len(chunks):
    while sent < len(chunks) and sent - acked < window:
        s.sendall(chunks[sent])
        sent += 1
    unpacker.feed(s.recv(65536))
    for msg in unpacker:
        acked += 1
elapsed = time.perf_counter() - started
print(f"{total} records in {elapsed:.2f}s: {total / elapsed:,.0f} records/s through the forward input (acked)")
