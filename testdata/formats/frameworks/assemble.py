#!/usr/bin/env python3
"""Writes testdata/formats/frameworks.ndjson: the real framework lines beside
it (see README.md for where each came from), in time order, with the flow
and DNS records a collector would see around them. The framework lines are
copied byte for byte; only the flows and DNS records are written here.
Deterministic: run it again after changing a sample and review the diff."""
import json
import os
from datetime import datetime, timezone

here = os.path.dirname(os.path.abspath(__file__))
GATEWAY, NANOCLAW_MAIN, IRONCLAW = "10.20.6.1", "10.20.5.2", "10.16.0.5"


def rfc(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def at(text):
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp() * 1000)


def dns(ms, client, name, ip):
    return ms, json.dumps({"type": "dns", "ts": rfc(ms), "client_ip": client, "resolver_ip": "10.0.0.53",
                           "qname": name, "qtype": "A", "rcode": "NOERROR",
                           "answers": [{"data": ip, "ttl": 300}]}, separators=(",", ":"))


def flow(ms, src, sport, dst, dport=443):
    return ms, json.dumps({"type": "flow", "ts": rfc(ms), "src_ip": src, "src_port": sport, "dst_ip": dst,
                           "dst_port": dport, "proto": "TCP", "bytes": 4200, "packets": 9}, separators=(",", ":"))


def lines(name):
    with open(os.path.join(here, name), encoding="utf-8") as f:
        return [l.rstrip("\n") for l in f if l.strip()]


records = []
# OpenClaw: real gateway frames; the gateway host's address is shared by its agents.
for line in lines("openclaw_gateway.ndjson"):
    payload = json.loads(line)["payload"]
    records.append((payload.get("ts") or payload.get("createdAtMs"), line))
# The gateway's own file log (tslog): diagnostics, no agent activity.
for line in lines("openclaw_gateway_file.log"):
    records.append((at(json.loads(line)["_meta"]["date"]), line))
run_start = at("2026-12-02T19:24:49.887Z")  # the web_fetch tool call (inside tool_call)
exec_start = at("2026-12-02T19:26:05.822Z")  # the exec tool call
records += [
    dns(run_start - 400, GATEWAY, "api.anthropic.com", "203.0.113.10"),
    flow(run_start - 300, GATEWAY, 51000, "203.0.113.10"),   # the model call: the gateway's own, allowed
    dns(run_start + 100, GATEWAY, "api.weather.example", "203.0.113.80"),
    flow(run_start + 150, GATEWAY, 51001, "203.0.113.80"),   # the tool call's fetch: agent main's, allowed
    flow(run_start + 900, GATEWAY, 51002, "198.51.100.66"),  # declared by no run: the gateway's, not allowed
    flow(exec_start + 300, GATEWAY, 51003, "203.0.113.80"),  # curl from the exec tool: main's
    flow(at("2026-12-02T19:45:00.000Z"), GATEWAY, 51004, "203.0.113.80"),  # between turns: the gateway's own call
]
# openclaw-telemetry: a real hash chain (integrity on) from another turn of main.
for line in lines("openclaw_telemetry.jsonl"):
    records.append((json.loads(line)["ts"], line))
tool = at("2026-12-02T19:30:02.192Z")
records += [
    flow(tool + 100, GATEWAY, 51010, "203.0.113.80"),        # web_fetch in the telemetry: main's
    dns(tool + 440, GATEWAY, "status.example.org", "192.0.2.44"),
    flow(tool + 450, GATEWAY, 51011, "192.0.2.44"),          # exec curl: main's, outside its profile
]
# NanoClaw v2: real text lines, local time (+01:00), the day from the policy.
nano = lines("nanoclaw_v2.log")
local_ms = lambda l: at("2026-12-02T%sZ" % l[1:13]) - 3600 * 1000
for line in nano:
    records.append((local_ms(line) if line.startswith("[") else records[-1][0] + 1, line))
spawn = at("2026-12-02T19:20:00.118Z")
records += [
    dns(spawn + 60_000, NANOCLAW_MAIN, "api.internal.example.net", "93.184.216.34"),
    flow(spawn + 61_000, NANOCLAW_MAIN, 40001, "93.184.216.34"),          # its container's call, allowed
    flow(at("2026-12-02T19:36:00.000Z"), NANOCLAW_MAIN, 40002, "93.184.216.34"),  # after it exited: nobody's
]
# The same exit line as Vector's file source ships it: dated by the shipper.
exit_line = next(l for l in nano if "Container exited" in l)
records.append((at("2026-12-02T19:35:01.300Z"), json.dumps(
    {"file": "/var/log/nanoclaw/nanoclaw.log", "host": "nc-1", "message": exit_line,
     "source_type": "file", "timestamp": "2026-12-02T19:35:01.300412Z"}, separators=(",", ":"))))
# IronClaw: its container, spawned by the orchestrator; iron-proxy and the host's audit log.
records.append((at("2026-12-02T19:25:00.000Z"), json.dumps(
    {"type": "agent.spawn", "ts": "2026-12-02T19:25:00Z", "agent_id": "ironclaw-job-42", "agent_type": "worker",
     "ip": IRONCLAW}, separators=(",", ":"))))
for line in lines("iron_proxy.log"):
    time = json.loads(line[line.index("{"):])["time"]
    records.append((at(time[:23] + "Z" if len(time) > 20 else time[:19] + ".000Z"), line))
for line in lines("ironclaw_audit.jsonl"):
    records.append((at(json.loads(line)["timestamp"]), line))

records.sort(key=lambda r: r[0])
with open(os.path.join(here, "..", "frameworks.ndjson"), "w", encoding="utf-8") as f:
    for _, line in records:
        f.write(line + "\n")
