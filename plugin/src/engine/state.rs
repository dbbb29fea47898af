//! Saving and restoring what the engine has learnt, so a restarted host (or an
//! engine re-created after a trap) loses no agent, DNS answer, baseline,
//! window, deadline or open incident.
//!
//! The state is compact msgpack (structures as arrays: a field name repeated
//! for every contact of every agent would be most of the bytes), headed by a
//! format name and a version, and followed by the SHA-256 of those bytes: a snapshot from an
//! incompatible version, or altered or cut short by a single byte, is refused
//! as a whole, never half-applied. The policy is not part of it: a restore keeps the
//! running policy, and its caps and timings apply to what is restored.

use super::{Engine, Learnt};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The SHA-256 after the msgpack body.
const CHECKSUM_BYTES: usize = 32;

/// Names the snapshot format, so a stray file is told apart from an old one.
const FORMAT: &str = "clawwatch-state";
/// Bumped whenever a saved structure changes shape.
pub const VERSION: u32 = 7;

/// Why a snapshot was refused. The engine is unchanged when this is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Not a clawwatch snapshot, or damaged (truncated, altered).
    Corrupt(String),
    /// A clawwatch snapshot from an incompatible version.
    Incompatible { found: u32, supported: u32 },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            StateError::Corrupt(why) => {
                write!(f, "not a readable clawwatch state snapshot ({why})")
            }
            StateError::Incompatible { found, supported } => write!(
                f,
                "state snapshot version {found}, but this clawwatch reads version {supported}"
            ),
        }
    }
}

impl std::error::Error for StateError {}

/// A snapshot is the array `[format, version, learnt]`; the header is read
/// first, so another version is named as such rather than failing to parse.
#[derive(Deserialize)]
struct Header(String, u32, IgnoredAny);

#[derive(Serialize)]
struct SavedRef<'a>(&'static str, u32, &'a Learnt);

#[derive(Deserialize)]
struct Saved(IgnoredAny, IgnoredAny, Learnt);

impl Engine {
    /// Everything learnt so far, as a snapshot `restore_state` reads back.
    pub fn export_state(&self) -> Vec<u8> {
        let saved = SavedRef(FORMAT, VERSION, &self.learnt);
        let mut bytes = rmp_serde::to_vec(&saved).expect("engine state is always serialisable");
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        bytes
    }

    /// Replaces everything learnt with a snapshot's, keeping the policy; the
    /// policy's caps trim what does not fit (least recently used first) and
    /// its timings apply. On error the engine is unchanged.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let Header(format, version, _) = rmp_serde::from_slice(bytes)
            .map_err(|e| StateError::Corrupt(format!("no snapshot header: {e}")))?;
        if format != FORMAT {
            return Err(StateError::Corrupt(format!(
                "format `{format}`, expected `{FORMAT}`"
            )));
        }
        if version != VERSION {
            return Err(StateError::Incompatible {
                found: version,
                supported: VERSION,
            });
        }
        let Some(body_len) = bytes.len().checked_sub(CHECKSUM_BYTES) else {
            return Err(StateError::Corrupt("shorter than its checksum".into()));
        };
        let (body, checksum) = bytes.split_at(body_len);
        if Sha256::digest(body).as_slice() != checksum {
            return Err(StateError::Corrupt(
                "its SHA-256 does not match its bytes: altered or cut short".into(),
            ));
        }
        let Saved(_, _, learnt) =
            rmp_serde::from_slice(body).map_err(|e| StateError::Corrupt(e.to_string()))?;
        self.learnt = learnt;
        self.emitted.clear();
        self.learnt.recap(&self.policy.monitor);
        self.apply_timings();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::Engine;

    const POLICY: &str = include_str!("../../../testdata/policy.toml");
    const SCENARIO: &[u8] = include_bytes!("../../../testdata/scenario/records.ndjson");

    fn run(engine: &mut Engine, records: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        engine.process_ndjson(records, &mut out);
        out
    }

    /// Cutting the scenario anywhere, saving, and going on in a new engine
    /// restored from the save gives exactly the output of one uninterrupted run.
    #[test]
    fn a_restored_engine_continues_exactly_where_the_saved_one_stopped() {
        let mut whole = Engine::new(POLICY).unwrap();
        let expected = run(&mut whole, SCENARIO);
        let lines: Vec<&[u8]> = SCENARIO.split_inclusive(|b| *b == b'\n').collect();
        for cut in 1..lines.len() {
            let mut first = Engine::new(POLICY).unwrap();
            let mut out = run(&mut first, &lines[..cut].concat());
            let snapshot = first.export_state();
            drop(first);
            let mut second = Engine::new(POLICY).unwrap();
            second.restore_state(&snapshot).unwrap();
            out.extend(run(&mut second, &lines[cut..].concat()));
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&expected),
                "cut after line {cut}"
            );
            assert_eq!(second.stats(), whole.stats(), "cut after line {cut}");
        }
    }

    #[test]
    fn a_damaged_snapshot_is_refused_and_changes_nothing() {
        let mut engine = Engine::new(POLICY).unwrap();
        run(&mut engine, SCENARIO);
        let snapshot = engine.export_state();
        let before = engine.export_state();
        for damaged in [
            &snapshot[..snapshot.len() / 2],
            &b"not a snapshot"[..],
            &b""[..],
        ] {
            let err = engine.restore_state(damaged).unwrap_err();
            assert!(matches!(err, super::StateError::Corrupt(_)), "{err:?}");
            assert_eq!(engine.export_state(), before);
        }
    }

    /// Any single byte altered anywhere, or the snapshot cut short, is refused.
    #[test]
    fn every_altered_byte_is_refused() {
        let mut engine = Engine::new(POLICY).unwrap();
        run(&mut engine, SCENARIO);
        let snapshot = engine.export_state();
        let step = (snapshot.len() / 300).max(1);
        let mut fresh = Engine::new(POLICY).unwrap();
        let before = fresh.export_state();
        let mut flipped = 0;
        for at in (0..snapshot.len()).step_by(step) {
            let mut damaged = snapshot.clone();
            damaged[at] ^= 0x01;
            assert!(
                fresh.restore_state(&damaged).is_err(),
                "a flip at byte {at} was accepted"
            );
            flipped += 1;
        }
        assert!(flipped >= 300);
        assert!(
            fresh
                .restore_state(&snapshot[..snapshot.len() - 1])
                .is_err()
        );
        assert_eq!(fresh.export_state(), before, "nothing applied");
        fresh.restore_state(&snapshot).unwrap();
    }

    #[test]
    fn a_snapshot_of_another_version_is_refused_by_version() {
        // Whatever a later version keeps, it comes after the same header.
        let bytes = rmp_serde::to_vec(&("clawwatch-state", super::VERSION + 1, ["later"])).unwrap();
        let mut engine = Engine::new(POLICY).unwrap();
        let err = engine.restore_state(&bytes).unwrap_err();
        assert_eq!(
            err,
            super::StateError::Incompatible {
                found: super::VERSION + 1,
                supported: super::VERSION
            }
        );
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("reads version {}", super::VERSION)),
            "{shown}"
        );
    }

    #[test]
    fn a_restore_under_a_smaller_agent_cap_keeps_the_most_recent_agents() {
        let mut engine = Engine::new(POLICY).unwrap();
        run(&mut engine, SCENARIO);
        let agents = engine.stats().agents;
        assert!(agents > 2, "the scenario spawns several agents");
        let small = format!("{POLICY}\n").replace("[monitor]", "[monitor]\nmax_agents = 2");
        let mut restored = Engine::new(&small).unwrap();
        restored.restore_state(&engine.export_state()).unwrap();
        assert_eq!(restored.stats().agents, 2);
        assert!(restored.stats().evictions > engine.stats().evictions);
    }
}
