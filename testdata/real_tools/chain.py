#!/usr/bin/python3
"""Makes flow records with real collectors, for clawwatch's real-tool test.

Writes a pcap of agent traffic with scapy, replays it through softflowd as
NetFlow v9 into nfacctd (pmacct, JSON output) and as IPFIX into nfcapd (read
back with nfdump -o json), and writes to OUT_DIR:
  control.ndjson   the agents' spawn records and their DNS answers (canonical)
  pmacct.ndjson    what nfacctd printed
  nfdump.ndjson    what nfdump printed, one object per line
Needs Debian's softflowd, pmacct, nfdump and python3-scapy; listens on
127.0.0.1 only. Usage: chain.py OUT_DIR
"""
import json
import os
import signal
import subprocess
import sys
import time

from scapy.all import DNS, DNSQR, DNSRR, IP, TCP, UDP, Ether, wrpcap

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
T0 = 1795530600.0  # 2026-11-24T14:30:00Z

AGENT, ROGUE = "10.20.0.15", "10.20.9.9"
packets = []


def at(t, pkt):
    pkt.time = T0 + t
    packets.append(pkt)


def tcp_session(t, src, sport, dst, dport, payload=200):
    """A short TCP exchange, both directions, as a real connection makes."""
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    at(t, e / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=1))
    at(t + 0.01, e / IP(src=dst, dst=src) / TCP(sport=dport, dport=sport, flags="SA", seq=100, ack=2))
    at(t + 0.02, e / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="A", seq=2, ack=101))
    at(t + 0.03, e / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA", seq=2, ack=101) / (b"x" * payload))
    at(t + 0.05, e / IP(src=dst, dst=src) / TCP(sport=dport, dport=sport, flags="PA", seq=101, ack=2 + payload) / (b"y" * payload))
    at(t + 0.06, e / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="FA", seq=2 + payload, ack=101 + payload))
    at(t + 0.07, e / IP(src=dst, dst=src) / TCP(sport=dport, dport=sport, flags="FA", seq=101 + payload, ack=3 + payload))


def dns_exchange(t, client, resolver, name, answer, sport):
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    at(t, e / IP(src=client, dst=resolver) / UDP(sport=sport, dport=53) / DNS(id=7, rd=1, qd=DNSQR(qname=name)))
    at(t + 0.01, e / IP(src=resolver, dst=client) / UDP(sport=53, dport=sport) /
       DNS(id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, ttl=3600, rdata=answer)))


dns_exchange(10, AGENT, "10.0.0.53", "api.internal.example.net", "93.184.216.34", 40001)
tcp_session(60, AGENT, 51000, "93.184.216.34", 443)          # allowed through the DNS answer
tcp_session(70, AGENT, 51001, "203.0.113.9", 8443)           # not in allowed_outbound
dns_exchange(80, AGENT, "8.8.8.8", "api.internal.example.net", "93.184.216.34", 40002)  # foreign resolver
tcp_session(90, ROGUE, 51002, "198.51.100.7", 443)           # nobody holds 10.20.9.9
wrpcap(os.path.join(OUT, "agents.pcap"), packets)

with open(os.path.join(OUT, "control.ndjson"), "w") as f:
    f.write(json.dumps({"type": "agent.spawn", "ts": "2026-11-24T14:30:00Z", "agent_id": "0x8a3f", "agent_type": "data_collector_v1",
                        "deployment": "staging", "ip": AGENT}) + "\n")
    # The resolver's log of the answer the agent got (what tshark or the resolver would give).
    f.write(json.dumps({"type": "dns", "ts": "2026-11-24T14:30:10Z", "client_ip": AGENT, "resolver_ip": "10.0.0.53",
                        "qname": "api.internal.example.net", "qtype": "A", "answers": [{"data": "93.184.216.34", "ttl": 3600}]}) + "\n")

# nfacctd: NetFlow v9 in, one JSON object per flow out.
pm_out = os.path.join(OUT, "pmacct.ndjson")
conf = os.path.join(OUT, "nfacctd.conf")
with open(conf, "w") as f:
    f.write(f"""daemonize: false
nfacctd_ip: 127.0.0.1
nfacctd_port: 21055
plugins: print
aggregate: src_host, dst_host, src_port, dst_port, proto, timestamp_start, timestamp_end
print_output: json
print_output_file: {pm_out}
print_output_file_append: true
print_refresh_time: 1
timestamps_utc: true
timestamps_secs: false
""")
nfcapd_dir = os.path.join(OUT, "nfcapd")
os.makedirs(nfcapd_dir, exist_ok=True)
collectors = [
    subprocess.Popen(["nfacctd", "-f", conf], stdout=subprocess.DEVNULL, stderr=open(os.path.join(OUT, "nfacctd.log"), "w"),
                     start_new_session=True),
    subprocess.Popen(["nfcapd", "-w", nfcapd_dir, "-b", "127.0.0.1", "-p", "21056", "-t", "60"], stdout=subprocess.DEVNULL,
                     stderr=open(os.path.join(OUT, "nfcapd.log"), "w"), start_new_session=True),
]
time.sleep(1.5)
pcap = os.path.join(OUT, "agents.pcap")
# NetFlow v9 to nfacctd, IPFIX to nfcapd. (Replaying a pcap, softflowd stamps
# flows so that only the v9 path keeps their real times; see the test.)
for target, version in (("127.0.0.1:21055", "9"), ("127.0.0.1:21056", "10")):
    subprocess.run(["softflowd", "-r", pcap, "-n", target, "-v", version, "-d"], check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(3)
# Each collector runs in its own process group (nfacctd forks its plugins): stop the whole group.
for c in collectors:
    os.killpg(c.pid, signal.SIGINT)
for c in collectors:
    try:
        c.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(c.pid, signal.SIGKILL)
        c.wait(timeout=5)

# nfdump 1.7 prints a JSON array; clawwatch reads one object per line.
files = sorted(os.path.join(nfcapd_dir, n) for n in os.listdir(nfcapd_dir) if n.startswith("nfcapd.") and not n.endswith("current"))
flows = []
for path in files:
    out = subprocess.run(["nfdump", "-r", path, "-o", "json"], check=True, capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}).stdout
    # A file rotated in at a minute boundary holds no flows, and nfdump 1.7.1
    # then prints "[\nNo matching flows\n]", which is not JSON (seen in CI).
    if not out.strip() or "No matching flows" in out:
        continue
    flows.extend(json.loads(out))
with open(os.path.join(OUT, "nfdump.ndjson"), "w") as f:
    for flow in flows:
        f.write(json.dumps(flow, separators=(",", ":")) + "\n")
print(f"pmacct: {sum(1 for _ in open(pm_out)) if os.path.exists(pm_out) else 0} flows, nfdump: {len(flows)} flows")
