#!/usr/bin/env python3
"""Writes records.ndjson, the sample scenario clawwatch's README and tests use.

Deterministic (fixed seed): run it again after editing and review the diff.
A morning of a small fleet: spawns, DNS answers, allowed flows (canonical and
goflow2), a forbidden destination, an unknown-agent flow, DNS to 8.8.8.8, a
terminate followed by a late flow, inbound traffic, and malformed lines.
"""
import json
import random
from datetime import datetime, timedelta, timezone

random.seed(20261124)
T0 = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)
lines = []


def ts(minutes):
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def ns(minutes):
    return int((T0 + timedelta(minutes=minutes)).timestamp()) * 1_000_000_000


def emit(record):
    lines.append(json.dumps(record, separators=(",", ":")).encode())


def flow(minutes, src, dst, dport, proto="TCP", sport=None, goflow=False):
    sport = sport or random.randint(32768, 60999)
    nbytes = random.randint(300, 40000)
    if goflow:
        emit({"type": "IPFIX", "time_received_ns": ns(minutes + 1), "sequence_num": len(lines),
              "sampler_address": "10.0.0.1", "time_flow_start_ns": ns(minutes),
              "time_flow_end_ns": ns(minutes) + 2_000_000_000, "bytes": nbytes,
              "packets": nbytes // 1200 + 1, "src_addr": src, "dst_addr": dst, "etype": "IPv4",
              "proto": proto, "src_port": sport, "dst_port": dport, "in_if": 3, "out_if": 4})
    else:
        emit({"type": "flow", "ts": ts(minutes), "src_ip": src, "src_port": sport, "dst_ip": dst,
              "dst_port": dport, "proto": proto, "bytes": nbytes, "packets": nbytes // 1200 + 1,
              "end": ts(minutes + 0.05)})


def dns(minutes, client, qname, answers, resolver="10.0.0.53", qtype="A"):
    emit({"type": "dns", "ts": ts(minutes), "client_ip": client, "resolver_ip": resolver,
          "qname": qname, "qtype": qtype, "rcode": "NOERROR",
          "answers": [{"data": a, "ttl": 3600} for a in answers]})


collectors = [("0x8a3f", "10.20.0.15"), ("0x8a40", "10.20.0.16"), ("0x8a41", "10.20.0.17"), ("0x8a42", "10.20.0.18"), ("0x8a43", "10.20.0.19")]
researchers = [("r-0001", "10.20.1.10", "staging"), ("r-0002", "10.20.1.11", "continuous")]

for agent_id, ip in collectors:
    emit({"type": "agent.spawn", "ts": ts(0), "agent_id": agent_id, "agent_type": "data_collector_v1",
          "deployment": "staging", "ip": ip, "task_id": "t-" + agent_id[2:], "expected_lifetime_minutes": 120})
for agent_id, ip, deployment in researchers:
    emit({"type": "agent.spawn", "ts": ts(0), "agent_id": agent_id, "agent_type": "research_agent",
          "deployment": deployment, "ips": [ip]})
emit({"type": "agent.spawn", "ts": ts(0), "agent_id": "g-0001", "agent_type": "ghost_v1", "ip": "10.20.2.20"})

for agent_id, ip in collectors:
    dns(0.2, ip, "api.internal.example.net", ["93.184.216.34", "93.184.216.35"])
dns(0.3, "10.20.1.10", "en.wikipedia.org", ["208.80.154.224"])
dns(0.3, "10.20.1.10", "www.cs.mit.edu", ["18.25.0.1"])
dns(0.3, "10.20.1.11", "de.wikipedia.org", ["208.80.154.225"])
dns(0.4, "10.20.1.11", "upload.m.wikipedia.org", ["208.80.154.240"])

# Healthy traffic, mixed formats.
for i in range(200):
    minute = 1 + i * 0.25
    agent_id, ip = random.choice(collectors)
    flow(minute, ip, random.choice(["93.184.216.34", "93.184.216.35"]), 443, goflow=i % 2 == 0)
    if i % 10 == 0:
        flow(minute, "10.20.1.10", random.choice(["208.80.154.224", "18.25.0.1"]), 443, goflow=i % 20 == 0)
    if i % 25 == 0:
        flow(minute, ip, "10.0.0.53", 53, proto="UDP")
    if i % 40 == 0:
        emit({"level": "info", "msg": "collector heartbeat ok", "agent": agent_id, "time": ts(minute)})

# Incidents.
for k in range(3):
    flow(10 + k, "10.20.0.16", "203.0.113.9", 8443)                     # forbidden destination, one incident
flow(12, "10.20.9.99", "198.51.100.7", 443, goflow=True)                # no agent holds 10.20.9.99
flow(13, "10.20.0.17", "8.8.8.8", 53, proto="UDP")                      # DNS around the corp resolvers
dns(13, "10.20.0.17", "exfil.example.org", ["192.0.2.44"], resolver="8.8.8.8")
flow(14, "10.20.1.11", "208.80.154.240", 443)                           # two labels below wikipedia.org
flow(14.5, "10.20.1.11", "10.30.0.7", 8443)                             # CIDR rule: allowed
flow(14.6, "10.20.1.11", "10.30.1.7", 8443)                             # just outside the CIDR
flow(15, "10.20.2.20", "93.184.216.34", 443)                            # profile not in the policy
flow(16, "198.51.100.20", "10.20.0.15", 8080, sport=41000)              # inbound to an agent
flow(16, "10.20.0.15", "198.51.100.20", 41000, sport=8080)              # its return traffic

# Lifecycle: terminate, a late flow from before it, then traffic after it.
emit({"type": "agent.terminate", "ts": ts(60), "agent_id": "0x8a3f", "reason": "completed"})
flow(58, "10.20.0.15", "93.184.216.34", 443)
flow(65, "10.20.0.15", "93.184.216.34", 443, goflow=True)
emit({"type": "agent.policy", "ts": ts(61), "agent_id": "0x8a40", "extend_minutes": 60})
emit({"type": "agent.terminate", "ts": ts(62), "agent_id": "nobody"})

# What a filter must never drop.
lines.append(b"this is not json")
lines.append(b'{"type":"flow","ts":"2026-11-24T15:00:00Z","src_ip":"10.20.0.16"')
lines.append(b"[1,2,3]")
lines.append(b"")
lines.append(b'{"type":"flow","ts":"2026-11-24T15:00:00Z","src_ip":"10.20.0.16","dst_ip":"93.184.216.34","proto":"TCP","src_port":40000,"dst_port":"https"}')
lines.append(b'{"type":"agent.spawn","ts":"2026-11-24T15:00:00Z","agent_id":"x","agent_type":"data_collector_v1","ip":"10.20.0.300"}')
lines.append(b'{"type":"agent.reboot","ts":"2026-11-24T15:00:00Z","agent_id":"0x8a40"}')
lines.append(b'{"msg":"caf\xe9 latin-1 bytes","level":"warn"}')
lines.append(b'{"type":"flow","ts":"yesterday","src_ip":"10.20.0.16","dst_ip":"1.1.1.1","proto":"TCP","src_port":1,"dst_port":2}')

with open("records.ndjson", "wb") as f:
    f.write(b"\n".join(lines) + b"\n")
print(f"wrote {len(lines)} records")
