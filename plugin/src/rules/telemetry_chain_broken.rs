//! `telemetry.chain_broken`: OpenClaw's telemetry log (openclaw-telemetry,
//! integrity on) is a hash chain; a line whose hash does not match its
//! content was altered, and one whose `prevHash` follows no line seen had
//! a line before it removed or moved. Without the chain, a gap or step back
//! in `seq` says the same. Someone covering an agent's tracks edits exactly
//! this log.
//!
//! A chain starting afresh (`prevHash` of 64 zeros, `seq` 1) is the gateway
//! restarting; the first line clawwatch sees of a chain is taken as it is.

use super::{Finding, RuleInfo, Severity, Subject};
use crate::record::TelemetryLine;
use std::collections::VecDeque;

pub const RULE: RuleInfo = RuleInfo {
    id: "telemetry.chain_broken",
    description: "A line of OpenClaw's hash-chained telemetry log was altered, removed or reordered (hash, prevHash or seq does not follow).",
    severity: Severity::High,
    tags: &["integrity", "telemetry", "tampering"],
};

/// The `prevHash` of a chain's first line.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Chains followed at once (one per gateway process whose log is shipped here).
const MAX_CHAINS: usize = 16;

/// The ends of the chains seen so far.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Chains {
    /// Each chain's last line: its hash and seq.
    heads: VecDeque<(String, u64)>,
    /// The last seq of a log without the chain.
    last_seq: Option<u64>,
}

crate::changes::replaced_by_later!(Chains);

impl Chains {
    /// Follows one line; returns what is wrong with it (empty: it follows),
    /// and a remark worth a note (a chain starting, a line not verifiable).
    pub fn follow(&mut self, line: &TelemetryLine) -> (Vec<String>, Option<String>) {
        let mut problems = Vec::new();
        let mut remark = None;
        let seq = line.seq;
        let Some(chain) = &line.chain else {
            match self.last_seq {
                Some(last) if seq != 1 && seq > last + 1 => problems.push(format!(
                    "seq jumps from {last} to {seq}: {} line(s) missing",
                    seq - last - 1
                )),
                Some(last) if seq != 1 && seq <= last => problems.push(format!(
                    "seq {seq} comes after {last}: a line repeated or out of order"
                )),
                _ => {}
            }
            self.last_seq = Some(seq);
            return (problems, remark);
        };
        match chain.verified {
            Some(false) => problems.push(format!(
                "line seq {seq} was altered: its hash does not match its content"
            )),
            None => {
                remark = Some(
                    "telemetry chain not verifiable on this line: its hashes are not its last members (re-serialised on the way?)".into(),
                )
            }
            Some(true) => {}
        }
        let head = self.heads.iter().position(|(h, _)| *h == chain.prev_hash);
        match head {
            _ if chain.prev_hash == GENESIS => {
                remark.get_or_insert_with(|| format!("telemetry chain starts at seq {seq} (the gateway started)"));
            }
            Some(i) => {
                let (_, last) = self.heads.remove(i).expect("found");
                if seq != last + 1 {
                    problems.push(format!("seq jumps from {last} to {seq} within the chain"));
                }
            }
            None if self.heads.is_empty() => {
                remark.get_or_insert_with(|| format!("telemetry chain joined at seq {seq}"));
            }
            None => problems.push(format!(
                "line seq {seq} follows no line seen (prevHash {}…): a line before it was removed or moved",
                &chain.prev_hash[..chain.prev_hash.len().min(12)]
            )),
        }
        if self.heads.len() >= MAX_CHAINS {
            self.heads.pop_front();
        }
        self.heads.push_back((chain.hash.clone(), seq));
        self.last_seq = Some(seq);
        (problems, remark)
    }
}

/// The finding for a line that breaks the chain.
pub fn finding(subject: &Subject, line: &TelemetryLine, problems: &[String]) -> Finding {
    Finding::new(
        &RULE,
        subject,
        None,
        format!(
            "OpenClaw telemetry of {subject}: {} ({} line)",
            problems.join("; "),
            line.kind
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ChainLinks;
    use crate::time::Timestamp;

    fn line(seq: u64, prev: &str, hash: &str, verified: bool) -> TelemetryLine {
        TelemetryLine {
            ts: Timestamp(0),
            seq,
            kind: "tool.start".into(),
            agent: None,
            intent: None,
            tool: None,
            chain: Some(ChainLinks {
                prev_hash: prev.into(),
                hash: hash.into(),
                verified: Some(verified),
            }),
        }
    }

    #[test]
    fn a_chain_that_follows_is_quiet_and_breaks_are_named() {
        let mut c = Chains::default();
        assert!(c.follow(&line(1, GENESIS, "a", true)).0.is_empty());
        assert!(c.follow(&line(2, "a", "b", true)).0.is_empty());
        // Line 3 (hash c) removed: line 4 follows no line seen.
        let (problems, _) = c.follow(&line(4, "c", "d", true));
        assert!(problems[0].contains("follows no line seen"), "{problems:?}");
        // Altered: its own hash is wrong, though it links on.
        let (problems, _) = c.follow(&line(5, "d", "e", false));
        assert!(problems[0].contains("altered"), "{problems:?}");
        // A restart is no break.
        assert!(c.follow(&line(1, GENESIS, "x", true)).0.is_empty());
    }

    #[test]
    fn swapped_lines_are_one_break_and_a_midway_start_none() {
        let mut c = Chains::default();
        assert!(
            c.follow(&line(40, "p", "a", true)).0.is_empty(),
            "joined midway"
        );
        assert!(
            c.follow(&line(42, "b", "c", true)).0.len() == 1,
            "41 not yet seen"
        );
        assert!(
            c.follow(&line(41, "a", "b", true)).0.is_empty(),
            "41 follows 40"
        );
        assert!(
            c.follow(&line(43, "c", "d", true)).0.is_empty(),
            "43 follows 42"
        );
    }

    #[test]
    fn without_the_chain_seq_gaps_are_breaks() {
        let mut c = Chains::default();
        let mut plain = line(1, "", "", true);
        plain.chain = None;
        for seq in [1, 2, 3] {
            plain.seq = seq;
            assert!(c.follow(&plain).0.is_empty());
        }
        plain.seq = 6;
        assert!(c.follow(&plain).0[0].contains("2 line(s) missing"));
        plain.seq = 1;
        assert!(c.follow(&plain).0.is_empty(), "a restart");
    }
}
