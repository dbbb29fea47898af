#!/usr/bin/env python3
"""Writes testdata/cases/<rule id>/{fires,near_miss}.ndjson: for every rule, an
input that must fire it and a near miss that must not (policy: policy.toml).
Deterministic: run it again after editing and review the diff."""
import json
import os
from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 11, 24, 14, 0, tzinfo=timezone.utc)
AGENT, IP = "w-1", "10.20.0.15"


def ts(m):
    return (T0 + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def spawn(m=0, agent=AGENT, ip=IP):
    return {"type": "agent.spawn", "ts": ts(m), "agent_id": agent, "agent_type": "worker", "deployment": "prod", "ip": ip}


def terminate(m, agent=AGENT):
    return {"type": "agent.terminate", "ts": ts(m), "agent_id": agent, "reason": "completed"}


def dns(m, name, answer=None, client=IP, resolver="10.0.0.53", qtype="A"):
    rec = {"type": "dns", "ts": ts(m), "client_ip": client, "resolver_ip": resolver, "qname": name, "qtype": qtype, "rcode": "NOERROR"}
    rec["answers"] = [{"data": answer, "ttl": 3600}] if answer else []
    return rec


def flow(m, dst, port=443, proto="TCP", src=IP, nbytes=1200):
    return {"type": "flow", "ts": ts(m), "src_ip": src, "src_port": 40000 + int(m * 60) % 20000, "dst_ip": dst,
            "dst_port": port, "proto": proto, "bytes": nbytes, "packets": 3}


def conn(m, src, sport, dst, dport):
    """One direction of a conversation, with its ports, as NetFlow exports it."""
    return {"type": "flow", "ts": ts(m), "src_ip": src, "src_port": sport, "dst_ip": dst, "dst_port": dport,
            "proto": "TCP", "bytes": 600, "packets": 4, "tcp_flags": "...AP.SF"}


def heartbeat(start, end, dests):
    return {"type": "agent.heartbeat", "ts": ts(end), "agent_id": AGENT, "window_start": ts(start), "window_end": ts(end),
            "connections": [{"dest": d, "port": 443, "proto": "tcp", "count": 1} for d in dests]}


def plan(m, actions):
    return {"type": "agent.plan", "ts": ts(m), "agent_id": AGENT, "actions": actions}


def tick(m):
    """A record of another agent that moves event time on."""
    return {"type": "agent.spawn", "ts": ts(m), "agent_id": f"clock-{m}", "agent_type": "worker", "ip": "10.20.9.200"}


API = [dns(0.1, "api.internal.example.net", "93.184.216.34")]
WEATHER = [dns(0.1, "api.weather.example", "203.0.113.80")]
EVERY_HALF_HOUR = {"id": "fetch", "dest": "api.weather.example", "port": 443, "proto": "tcp", "not_before": ts(0), "not_after": ts(90), "every_minutes": 30}

# A real openclaw-telemetry hash chain (testdata/formats/frameworks/README.md),
# kept byte for byte: its hashes cover each line's exact text.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats", "frameworks",
                       "openclaw_telemetry.jsonl")) as f:
    CHAIN = [line.rstrip("\n") for line in f if line.strip()]
TAMPERED = CHAIN[:4] + CHAIN[5:7] + [CHAIN[7].replace('"costUsd":0.0196', '"costUsd":0.0019')] + CHAIN[8:]

CASES = {
    "egress.not_allowed": (
        # A call home; then data sent from the service port to a peer that never connected.
        [spawn(), flow(1, "203.0.113.9", 8443), conn(2, IP, 8080, "198.51.100.200", 40123), tick(10)],
        # A health check answered before its request is exported, and after.
        [spawn(), *API, flow(1, "93.184.216.34", 443),
         conn(2, IP, 8080, "10.50.0.5", 51234), conn(2, "10.50.0.5", 51234, IP, 8080),
         conn(3, "10.50.0.5", 51240, IP, 8080), conn(3, IP, 8080, "10.50.0.5", 51240), tick(10)],
    ),
    "egress.unknown_agent": (
        [spawn(), flow(1, "198.51.100.7", src="10.20.9.9")],
        [spawn(), flow(1, "198.51.100.7", src="10.21.0.9"), *API, flow(2, "93.184.216.34")],
    ),
    "dns.foreign_resolver": (
        [spawn(), dns(1, "api.internal.example.net", "93.184.216.34", resolver="8.8.8.8")],
        [spawn(), dns(1, "api.internal.example.net", "93.184.216.34"), flow(1.1, "10.0.0.53", 53, "UDP")],
    ),
    "dns.high_entropy": (
        # A domain generator: random registered domains, most not even registered.
        [spawn(), dns(1, "xkqjzvbwpl.com"), dns(1.1, "qwxzvkjhtr.net"), dns(1.2, "pzkqxvrtwm.org"), dns(1.3, "zqxjkvbtrw.info")],
        # Allowed CDN names, one odd domain, random subdomains of ordinary domains, the same odd domain again.
        [spawn(), dns(1, "d3k8x9q2a7b1c0.cloudfront.net", "198.51.100.21"), dns(1.5, "en.wikipedia.org", "208.80.154.224"),
         dns(2, "xkqjzvbwpl.com"), dns(2.1, "www.xkqjzvbwpl.com"), dns(2.2, "data-xy78z4.example.com", "198.51.100.20"),
         dns(2.3, "a7f3k9x2m1.cdn.example.net"), dns(20, "xkqjzvbwpl.com")],
    ),
    "dns.tunneling": (
        [spawn()] + [dns(1 + i / 60, f"{(i + 1) * 0x9e3779b97f4a7c15:032x}.t.example.org", qtype="A") for i in range(40)],
        # An agent without a DNS cache: one name, ~170 times in 5 minutes, A and TXT.
        [spawn()] + [dns(1 + i / 60, "api.internal.example.net", qtype=("TXT" if i % 2 else "A")) for i in range(170)],
    ),
    "volume.anomaly": (
        [spawn(), *API] + [flow(1 + i * 0.7, "93.184.216.34") for i in range(70)],
        [spawn(), *API] + [flow(1 + i * 0.7, "93.184.216.34") for i in range(55)],
    ),
    "rate.runaway": (
        [spawn(), *API] + [flow(1 + i / 60, "93.184.216.34") for i in range(25)],
        [spawn(), *API] + [flow(1 + i * 3.5 / 60, "93.184.216.34") for i in range(25)],
    ),
    "lifetime.exceeded": (
        [spawn(), *API, flow(75, "93.184.216.34")],
        [spawn(), *API, flow(65, "93.184.216.34"), terminate(68), tick(200)],
    ),
    "schedule.deviation": (
        # Judged once its minute is complete (and the lateness allowance past): the tick moves time on.
        [spawn(), *WEATHER, plan(0.2, [EVERY_HALF_HOUR]), flow(15, "203.0.113.80"), tick(25)],
        [spawn(), *WEATHER, plan(0.2, [EVERY_HALF_HOUR]), flow(0.5, "203.0.113.80"), flow(21, "203.0.113.80"), flow(39, "203.0.113.80"), tick(50)],
    ),
    "plan.undeclared": (
        [spawn(), *WEATHER, *API, plan(0.2, [EVERY_HALF_HOUR]), flow(1, "93.184.216.34")],
        [spawn(), *WEATHER, *API, plan(0.2, [EVERY_HALF_HOUR]), flow(1, "203.0.113.80"), flow(1.5, "10.0.0.53", 53, "UDP")],
    ),
    "heartbeat.mismatch": (
        [spawn(), *API, flow(2, "93.184.216.34"), flow(4, "198.51.100.66", 443),
         heartbeat(0, 10, ["api.internal.example.net"]), heartbeat(10, 20, []), tick(30)],
        [spawn(), *API, flow(2, "93.184.216.34"), heartbeat(0, 10, ["api.internal.example.net"]),
         flow(12, "93.184.216.34"), heartbeat(10, 20, ["api.internal.example.net"]), tick(30)],
    ),
    "heartbeat.missing": (
        [spawn(), heartbeat(0, 10, []), heartbeat(10, 20, []), tick(50)],
        [spawn(), heartbeat(0, 10, []), heartbeat(10, 20, []), heartbeat(20, 30, []), heartbeat(30, 40, []), tick(44)],
    ),
    "approval.granted": (
        [spawn(), dns(0.5, "pypi.org", "151.101.0.223"), flow(1, "151.101.0.223"), flow(1.2, "151.101.0.223"),
         {"type": "approval.grant", "ts": ts(2), "agent_id": AGENT, "dest": "files.pythonhosted.org", "port": 443,
          "expires": ts(30), "approver": "oncall@example.com", "reason": "install requests"},
         dns(3, "files.pythonhosted.org", "151.101.64.223"), flow(3.1, "151.101.64.223")],
        [spawn(), *API, flow(1, "93.184.216.34"),
         {"type": "approval.grant", "ts": ts(2), "agent_id": AGENT, "dest": "files.pythonhosted.org", "port": 443,
          "expires": ts(5), "approver": "oncall@example.com", "reason": "install requests"},
         dns(6, "files.pythonhosted.org", "151.101.64.223"), flow(6.1, "151.101.64.223")],
    ),
    # Line 5 removed and line 8's cost edited; the near miss is the intact
    # chain, then the same gateway restarted (a new chain from 64 zeros).
    "telemetry.chain_broken": (TAMPERED, CHAIN + CHAIN),
}

here = os.path.dirname(os.path.abspath(__file__))
for rule, (fires, near_miss) in CASES.items():
    os.makedirs(os.path.join(here, rule), exist_ok=True)
    for name, records in (("fires", fires), ("near_miss", near_miss)):
        with open(os.path.join(here, rule, f"{name}.ndjson"), "w") as f:
            for r in records:
                f.write((r if isinstance(r, str) else json.dumps(r, separators=(",", ":"))) + "\n")
print(f"wrote {len(CASES)} cases")
