//! A simulated fleet, as messy as the telemetry of a real one.
//!
//! Six agent types live on agent subnets; their traffic reaches clawwatch the
//! way a site's collectors deliver it:
//! - flows from three exporters: goflow2 JSON, nfacctd (pmacct) JSON and
//!   nfdump JSON, the last reporting both directions of every conversation;
//!   connections longer than the active timeout are cut into one-minute slices;
//!   every record arrives one to five minutes after its slice ends, out of
//!   order, and the exporters' clocks stamp starts up to half a second off;
//! - DNS from Suricata EVE (v3) and Zeek `dns.log`, with CNAME chains, CDN
//!   addresses shared by unrelated names, 5-second S3 TTLs and an ELB name that
//!   moves at noon; agents cache answers for their TTL, except one type that
//!   has no cache at all;
//! - control records, plans, grants and honest heartbeats every five minutes
//!   from each agent's spawn second (so windows cut through minutes and
//!   connections straddle them).
//! Look-alike episodes (health checks whose answers are exported before their
//! requests, approved installs, schedule jitter within tolerance, addresses
//! reused while the previous holder's flows still arrive, ...) must stay quiet;
//! injected incidents, one per kind, must each raise exactly one alert.

use std::collections::HashMap;

pub const SEC: i64 = 1_000_000_000;
pub const MIN: i64 = 60 * SEC;
pub const HOUR: i64 = 60 * MIN;
pub const DAY: i64 = 24 * HOUR;
/// 2026-11-23T00:00:00Z.
pub const T0: i64 = 1_795_392_000 * SEC;

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next() % (high - low + 1) as u64) as i64
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

fn rfc3339(ns: i64) -> String {
    clawwatch_plugin::time::Timestamp(ns).to_rfc3339()
}

/// `2026-11-23 14:30:10.123456` (pmacct with `timestamps_utc: true`).
fn pmacct_time(ns: i64) -> String {
    let t = rfc3339(ns - ns.rem_euclid(1000)); // µs
    let (date, rest) = t.split_once('T').unwrap();
    let rest = rest.trim_end_matches('Z');
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, ""));
    format!("{date} {hms}.{:0<6}", frac)
}

/// `2026-11-23T14:30:10.123` (nfdump: local time without a zone; run with TZ=UTC).
fn nfdump_time(ns: i64) -> String {
    let t = rfc3339(ns - ns.rem_euclid(1_000_000));
    let t = t.trim_end_matches('Z');
    let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
    format!("{hms}.{:0<3}", frac)
}

/// `2026-11-23T14:30:10.123456+0000` (Suricata EVE).
fn eve_time(ns: i64) -> String {
    let t = rfc3339(ns - ns.rem_euclid(1000));
    let t = t.trim_end_matches('Z');
    let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
    format!("{hms}.{:0<6}+0000", frac)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Exporter {
    Goflow2,
    Pmacct,
    /// nfdump from an IPFIX exporter that reports both directions.
    Nfdump,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DnsLog {
    Suricata,
    Zeek,
}

/// What a record is, for scoring: part of normal operation, of a look-alike
/// episode that must stay quiet, or of an injected incident.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Label {
    Normal,
    LookAlike(usize),
    Injected(usize),
}

pub struct Injected {
    /// Agent id, or the address for an unknown agent.
    pub who: String,
    /// The day of the simulation it happens on.
    pub day: i64,
    pub rule: &'static str,
    pub kind: &'static str,
}

struct Host {
    /// CNAME chain below the name, then the addresses.
    cnames: &'static [&'static str],
    ips: &'static [&'static str],
    ttl: u32,
}

fn host(name: &str, t: i64) -> Host {
    let h = |cnames, ips, ttl| Host { cnames, ips, ttl };
    let noon = (t - T0).rem_euclid(DAY) >= 12 * HOUR;
    match name {
        "api.internal.example.net" => h(&[], &["10.40.0.20"], 300),
        "status.internal.example.net" => h(&[], &["10.40.0.40"], 300),
        "telemetry.internal.example.net" => h(&[], &["10.40.0.30"], 30),
        "api.weather.example" => h(&[], &["203.0.113.80"], 300),
        "api.reports.example" => h(&[], &["198.51.100.30", "198.51.100.31"], 120),
        "d3k8x9q2a7b1c0.cloudfront.net" => h(&[], &["13.224.10.1", "13.224.10.2"], 60),
        // Wikipedia's editions share one edge address behind one CNAME.
        "en.wikipedia.org" | "de.wikipedia.org" | "fr.wikipedia.org" | "ja.wikipedia.org" => {
            h(&["dyna.wikimedia.org"], &["208.80.154.224"], 600)
        }
        "www.cs.mit.edu" => h(&[], &["18.25.0.1"], 1800),
        "ocw.mit.edu" => h(&["ocw.mit.edu.cdn.cloudflare.net"], &["104.18.20.5"], 300),
        // A Fastly address serving unrelated names.
        "scholar.library.stanford.edu" => h(&["stanford.map.fastly.net"], &["151.101.0.223"], 60),
        "pypi.org" => h(&[], &["151.101.0.223", "151.101.64.223"], 60),
        "files.pythonhosted.org" => h(
            &["dualstack.python.map.fastly.net"],
            &["151.101.0.223", "151.101.64.223"],
            60,
        ),
        "registry.internal.example.net" if !noon => h(
            &["internal-registry-1a2b3c.us-east-1.elb.amazonaws.com"],
            &["10.40.0.10", "10.40.0.11"],
            60,
        ),
        "registry.internal.example.net" => h(
            &["internal-registry-9f8e7d.us-east-1.elb.amazonaws.com"],
            &["10.40.0.12", "10.40.0.13"],
            60,
        ),
        "artifacts-7f3a9c1e.s3.amazonaws.com" => h(
            &["s3-w.us-east-1.amazonaws.com"],
            &[
                "52.216.0.10",
                "52.216.0.11",
                "52.216.0.12",
                "52.216.0.13",
                "52.216.8.20",
                "52.216.8.21",
            ],
            5,
        ),
        "api.github.com" => h(&[], &["140.82.112.5"], 60),
        "api.llm.example" => h(&[], &["104.18.0.10"], 300),
        other => panic!("no DNS for {other}"),
    }
}

pub struct Agent {
    pub id: String,
    pub ip: String,
    pub spawn: i64,
    /// When it terminates; `None`: alive at the end of the simulation.
    pub end: Option<i64>,
    exporter: Exporter,
    dns_log: DnsLog,
    resolver: &'static str,
    /// host → (address, answered at, valid until)
    cache: HashMap<String, (&'static str, i64, i64)>,
    pub caches_dns: bool,
    /// (true start, host, port) of connections opened, for honest heartbeats.
    contacted: Vec<(i64, String, u16)>,
    /// Connections left out of heartbeats (an injected lie): (from, to, host).
    hides: Option<(i64, i64, String)>,
    /// Connections reported but never made (injected lies): (when, host).
    invents: Vec<(i64, String)>,
    /// Spans in which no heartbeat is sent though the agent lives on.
    heartbeat_gaps: Vec<(i64, i64)>,
}

pub struct Fleet {
    pub rng: Rng,
    /// (arrival, sequence, line, label)
    records: Vec<(i64, usize, String, Label)>,
    pub injected: Vec<Injected>,
    pub look_alikes: Vec<&'static str>,
    pub end: i64,
    label: Label,
}

impl Fleet {
    pub fn new(seed: u64, end: i64) -> Fleet {
        Fleet {
            rng: Rng(seed),
            records: Vec::new(),
            injected: Vec::new(),
            look_alikes: Vec::new(),
            end,
            label: Label::Normal,
        }
    }

    /// Runs `f` with every record it makes labelled as a look-alike episode.
    pub fn look_alike(&mut self, kind: &'static str, f: impl FnOnce(&mut Fleet)) {
        self.look_alikes.push(kind);
        let before = self.label;
        self.label = Label::LookAlike(self.look_alikes.len() - 1);
        f(self);
        self.label = before;
    }

    /// Runs `f` with every record it makes labelled as an injected incident.
    pub fn inject(
        &mut self,
        who: &str,
        day: i64,
        rule: &'static str,
        kind: &'static str,
        f: impl FnOnce(&mut Fleet),
    ) {
        self.injected.push(Injected {
            who: who.to_string(),
            day,
            rule,
            kind,
        });
        let before = self.label;
        self.label = Label::Injected(self.injected.len() - 1);
        f(self);
        self.label = before;
    }

    fn push(&mut self, arrival: i64, line: String) {
        let seq = self.records.len();
        self.records.push((arrival, seq, line, self.label));
    }

    /// The stream in arrival order, and each line's label.
    pub fn finish(mut self) -> (Vec<u8>, Vec<Label>, Vec<Injected>, Vec<&'static str>) {
        self.records.sort_by_key(|r| (r.0, r.1));
        let mut out = Vec::new();
        let mut labels = Vec::new();
        for (_, _, line, label) in self.records {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
            labels.push(label);
        }
        (out, labels, self.injected, self.look_alikes)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn agent(
        &mut self,
        id: String,
        ip: &str,
        kind: &'static str,
        deployment: &'static str,
        spawn: i64,
        end: Option<i64>,
        exporter: Exporter,
        dns_log: DnsLog,
    ) -> Agent {
        let resolver = if self.rng.chance(50) {
            "10.0.0.53"
        } else {
            "10.0.0.54"
        };
        let a = Agent {
            id,
            ip: ip.to_string(),
            spawn,
            end,
            exporter,
            dns_log,
            resolver,
            cache: HashMap::new(),
            caches_dns: true,
            contacted: Vec::new(),
            hides: None,
            invents: Vec::new(),
            heartbeat_gaps: Vec::new(),
        };
        let delay = self.rng.between(0, 2 * SEC);
        self.push(spawn + delay, format!(r#"{{"type":"agent.spawn","ts":"{}","agent_id":"{}","agent_type":"{}","deployment":"{}","ip":"{}","task_id":"t-{}"}}"#, rfc3339(spawn), a.id, kind, deployment, ip, a.id));
        a
    }

    pub fn plan(&mut self, a: &Agent, actions: &str) {
        let t = a.spawn + 2 * SEC;
        self.push(
            t,
            format!(
                r#"{{"type":"agent.plan","ts":"{}","agent_id":"{}","actions":[{actions}]}}"#,
                rfc3339(t),
                a.id
            ),
        );
    }

    pub fn grant(&mut self, a: &Agent, t: i64, dest: &str, minutes: i64) {
        self.push(t, format!(r#"{{"type":"approval.grant","ts":"{}","agent_id":"{}","dest":"{dest}","port":443,"expires":"{}","approver":"oncall@example.com","reason":"ticket OPS-{}"}}"#, rfc3339(t), a.id, rfc3339(t + minutes * MIN), t / SEC % 10_000));
    }

    /// A DNS lookup as the agent's resolver logged it.
    pub fn resolve(&mut self, a: &mut Agent, t: i64, name: &str) -> &'static str {
        let h = host(name, t);
        let ip = *self.rng.pick(h.ips);
        self.dns_record(a, t, name, &h, ip, a.resolver, "A");
        if a.caches_dns {
            a.cache
                .insert(name.to_string(), (ip, t, t + i64::from(h.ttl) * SEC));
        }
        ip
    }

    #[allow(clippy::too_many_arguments)]
    fn dns_record(
        &mut self,
        a: &Agent,
        t: i64,
        name: &str,
        h: &Host,
        ip: &str,
        resolver: &str,
        qtype: &str,
    ) {
        let client_port = self.rng.between(32768, 60999);
        let mut chain = vec![name];
        chain.extend(h.cnames);
        let line = match a.dns_log {
            DnsLog::Suricata => {
                let mut answers = Vec::new();
                for w in chain.windows(2) {
                    answers.push(format!(
                        r#"{{"rrname":"{}","rrtype":"CNAME","ttl":{},"rdata":"{}"}}"#,
                        w[0], h.ttl, w[1]
                    ));
                }
                if !ip.is_empty() {
                    answers.push(format!(
                        r#"{{"rrname":"{}","rrtype":"A","ttl":{},"rdata":"{ip}"}}"#,
                        chain.last().unwrap(),
                        h.ttl
                    ));
                }
                let rcode = if ip.is_empty() { "NXDOMAIN" } else { "NOERROR" };
                format!(
                    r#"{{"timestamp":"{}","flow_id":{},"in_iface":"eth1","event_type":"dns","src_ip":"{resolver}","src_port":53,"dest_ip":"{}","dest_port":{client_port},"proto":"UDP","pkt_src":"wire/pcap","dns":{{"version":3,"type":"response","id":{},"flags":"8180","qr":true,"rd":true,"ra":true,"opcode":0,"rcode":"{rcode}","queries":[{{"rrname":"{name}","rrtype":"{qtype}"}}],"answers":[{}]}}}}"#,
                    eve_time(t + 2_000_000),
                    self.rng.next() % 1_000_000_000_000,
                    a.ip,
                    self.rng.next() % 65536,
                    answers.join(",")
                )
            }
            DnsLog::Zeek => {
                let mut answers: Vec<String> =
                    h.cnames.iter().map(|c| format!("\"{c}\"")).collect();
                if !ip.is_empty() {
                    answers.push(format!("\"{ip}\""));
                }
                let ttls = vec![format!("{}.0", h.ttl); answers.len()];
                let rcode = if ip.is_empty() { "NXDOMAIN" } else { "NOERROR" };
                format!(
                    r#"{{"ts":{:.6},"uid":"C{:x}","id.orig_h":"{}","id.orig_p":{client_port},"id.resp_h":"{resolver}","id.resp_p":53,"proto":"udp","trans_id":{},"rtt":0.0011,"query":"{name}","qclass":1,"qclass_name":"C_INTERNET","qtype":{},"qtype_name":"{qtype}","rcode":{},"rcode_name":"{rcode}","AA":false,"TC":false,"RD":true,"RA":true,"Z":0,"answers":[{}],"TTLs":[{}],"rejected":false}}"#,
                    t as f64 / SEC as f64,
                    self.rng.next() & 0xffff_ffff_ffff,
                    a.ip,
                    self.rng.next() % 65536,
                    if qtype == "TXT" { 16 } else { 1 },
                    if ip.is_empty() { 3 } else { 0 },
                    answers.join(","),
                    ttls.join(",")
                )
            }
        };
        let delay = self.rng.between(0, 20 * SEC);
        self.push(t + delay, line);
        // The query's own packets, as the agent's exporter saw them.
        let flow_t = t - 1_000_000;
        let skew = self.rng.between(-500, 500) * 1_000_000;
        self.export_at(
            a.exporter,
            skew,
            flow_t,
            flow_t + 2_000_000,
            &a.ip,
            client_port as u16,
            resolver,
            53,
            "UDP",
            70,
            1,
        );
    }

    /// A name looked up with no answer to keep (NXDOMAIN, or a TXT/NULL query).
    pub fn lookup_raw(&mut self, a: &Agent, t: i64, name: &str, qtype: &str, resolver: &str) {
        let h = Host {
            cnames: &[],
            ips: &[],
            ttl: 0,
        };
        self.dns_record(a, t, name, &h, "", resolver, qtype);
    }

    /// The address the agent's cache or a fresh lookup gives `name` at `t`.
    fn address(&mut self, a: &mut Agent, t: i64, name: &str) -> &'static str {
        // The simulation writes each agent's day activity by activity, not in
        // time order: a cached answer serves only the moments it covers.
        if let Some((ip, from, until)) = a.cache.get(name) {
            if *from <= t && t < *until {
                return ip;
            }
        }
        self.resolve(a, t - 40_000_000, name)
    }

    /// The agent opens a connection at `t` to `name:port` for `secs` seconds.
    pub fn connect(&mut self, a: &mut Agent, t: i64, name: &str, port: u16, secs: i64, bytes: u64) {
        let ip = if name.parse::<std::net::IpAddr>().is_ok() {
            // A literal address: no lookup (and none to keep).
            Box::leak(name.to_string().into_boxed_str())
        } else {
            self.address(a, t, name)
        };
        let hidden = a
            .hides
            .as_ref()
            .is_some_and(|(from, to, h)| t >= *from && t < *to && h == name);
        if !hidden {
            a.contacted.push((t, name.to_string(), port));
        }
        let sport = self.rng.between(32768, 60999) as u16;
        self.conversation(a.exporter, t, secs, &a.ip.clone(), sport, ip, port, bytes);
    }

    /// Both sides of one TCP conversation, as `exporter` reports it: cut into
    /// one-minute slices, the answer only where the exporter sees it.
    #[allow(clippy::too_many_arguments)]
    pub fn conversation(
        &mut self,
        exporter: Exporter,
        t: i64,
        secs: i64,
        client: &str,
        client_port: u16,
        server: &str,
        server_port: u16,
        bytes: u64,
    ) {
        let end = t + secs.max(0) * SEC + self.rng.between(20, 900) * 1_000_000;
        // The answer's first packet follows the opener's by a round trip:
        // well under a millisecond in the data centre, tens of them outside.
        let rtt = if server.starts_with("10.") || client.starts_with("10.50.") {
            self.rng.between(100, 900) * 1000
        } else {
            self.rng.between(5, 80) * 1_000_000
        };
        // One exporter's clock stamps both directions.
        let skew = self.rng.between(-500, 500) * 1_000_000;
        let mut start = t;
        while start < end {
            let slice_end = (start + MIN).min(end);
            let share = bytes * ((slice_end - start) as u64) / ((end - t).max(1) as u64) + 60;
            let packets = share / 1200 + 2;
            self.export_at(
                exporter,
                skew,
                start,
                slice_end,
                client,
                client_port,
                server,
                server_port,
                "TCP",
                share,
                packets,
            );
            if exporter == Exporter::Nfdump {
                let answer = if start == t { start + rtt } else { start };
                self.export_at(
                    exporter,
                    skew,
                    answer,
                    slice_end,
                    server,
                    server_port,
                    client,
                    client_port,
                    "TCP",
                    share / 3 + 60,
                    packets,
                );
            }
            start = slice_end;
        }
    }

    /// One unidirectional flow record, stamped by the exporter's clock (`skew`
    /// off), arriving late.
    #[allow(clippy::too_many_arguments)]
    fn export_at(
        &mut self,
        exporter: Exporter,
        skew: i64,
        start: i64,
        end: i64,
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        proto: &str,
        bytes: u64,
        packets: u64,
    ) {
        let (s, e) = (start + skew, end.max(start) + skew);
        let flags = if proto == "TCP" { 0x1b } else { 0 };
        let line = match exporter {
            Exporter::Goflow2 => format!(
                r#"{{"type":"IPFIX","time_received_ns":{},"sequence_num":{},"sampling_rate":0,"sampler_address":"10.0.0.1","time_flow_start_ns":{s},"time_flow_end_ns":{e},"bytes":{bytes},"packets":{packets},"src_addr":"{src}","dst_addr":"{dst}","etype":"IPv4","proto":"{proto}","src_port":{sport},"dst_port":{dport},"in_if":3,"out_if":4,"src_mac":"02:00:00:00:00:01","dst_mac":"02:00:00:00:00:02","tcp_flags":{flags},"icmp_type":0,"icmp_code":0}}"#,
                e + 30 * SEC,
                self.rng.next() % 100_000
            ),
            Exporter::Pmacct => format!(
                r#"{{"event_type": "purge", "ip_src": "{src}", "ip_dst": "{dst}", "port_src": {sport}, "port_dst": {dport}, "tcp_flags": "{flags}", "ip_proto": "{}", "timestamp_start": "{}", "timestamp_end": "{}", "packets": {packets}, "bytes": {bytes}}}"#,
                proto.to_ascii_lowercase(),
                pmacct_time(s),
                pmacct_time(e)
            ),
            Exporter::Nfdump => format!(
                r#"{{"type":"FLOW","sampled":0,"export_sysid":1,"first":"{}","last":"{}","received":"{}","in_packets":{packets},"in_bytes":{bytes},"proto":{},"tcp_flags":"{}","src_port":{sport},"dst_port":{dport},"src_tos":0,"src4_addr":"{src}","dst4_addr":"{dst}","input_snmp":0,"output_snmp":0,"src_mask":0,"dst_mask":0,"src_net":"","dst_net":"","fwd_status":0,"direction":0,"dst_tos":0,"ip4_router":"10.0.0.2","label":"<none>"}}"#,
                nfdump_time(s),
                nfdump_time(e),
                nfdump_time(e + 60 * SEC),
                if proto == "TCP" { 6 } else { 17 },
                if proto == "TCP" {
                    "...AP.SF"
                } else {
                    "........"
                }
            ),
        };
        let delay = self.rng.between(60, 300) * SEC;
        self.push(e + delay, line);
    }

    /// Heartbeats every `every` from the spawn second for as long as the agent
    /// lives, reporting what it opened in each window by its own clock, and a
    /// last one for the partial window when it terminates.
    pub fn heartbeats(&mut self, a: &Agent, every: i64) {
        let last = a.end.unwrap_or(self.end);
        let mut start = a.spawn;
        while start < last {
            let end = (start + every).min(last);
            if end - start < every && a.end.is_none_or(|e| end < e) {
                break; // the simulation ends mid-window
            }
            let mut dests: Vec<(&str, u16)> = a
                .contacted
                .iter()
                .filter(|(t, _, _)| *t >= start && *t < end)
                .map(|(_, h, p)| (h.as_str(), *p))
                .collect();
            for (t, h) in &a.invents {
                if *t >= start && *t < end {
                    dests.push((h.as_str(), 443));
                }
            }
            dests.sort();
            dests.dedup();
            let conns: Vec<String> = dests
                .iter()
                .map(|(d, p)| {
                    let count = a
                        .contacted
                        .iter()
                        .filter(|(t, h, pp)| *t >= start && *t < end && h == d && pp == p)
                        .count()
                        .max(1);
                    format!(r#"{{"dest":"{d}","port":{p},"proto":"tcp","count":{count}}}"#)
                })
                .collect();
            let silent = a
                .heartbeat_gaps
                .iter()
                .any(|(from, to)| end > *from && end <= *to);
            if silent {
                start = end;
                continue;
            }
            let delay = self.rng.between(0, 3 * SEC);
            self.push(end + delay, format!(r#"{{"type":"agent.heartbeat","ts":"{}","agent_id":"{}","window_start":"{}","window_end":"{}","connections":[{}]}}"#, rfc3339(end), a.id, rfc3339(start), rfc3339(end), conns.join(",")));
            start = end;
        }
    }

    pub fn terminate(&mut self, a: &Agent) {
        if let Some(end) = a.end {
            let delay = self.rng.between(0, 2 * SEC);
            self.push(end + delay, format!(r#"{{"type":"agent.terminate","ts":"{}","agent_id":"{}","reason":"completed"}}"#, rfc3339(end), a.id));
        }
    }
}

impl Agent {
    pub fn hide(&mut self, from: i64, to: i64, host: &str) {
        self.hides = Some((from, to, host.to_string()));
    }
    pub fn invent(&mut self, t: i64, host: &str) {
        self.invents.push((t, host.to_string()));
    }
    pub fn silence_heartbeats(&mut self, from: i64, to: i64) {
        self.heartbeat_gaps.push((from, to));
    }
    pub fn exporter(&self) -> Exporter {
        self.exporter
    }
    pub fn resolver(&self) -> &'static str {
        self.resolver
    }
}
