//! Saving and restoring what the engine has learnt, so a restarted host (or an
//! engine re-created after a trap) loses no agent, DNS answer, baseline,
//! window, deadline or open incident.
//!
//! Two kinds of save: a snapshot holds everything; a set of changes holds
//! only what changed since the engine's previous save of either kind (see
//! [`crate::changes`]), so a checkpoint costs what the fleet did, not its
//! size. A restore starts from a snapshot and applies the changes that
//! followed it, in order; each save names the save it follows, so changes
//! applied out of order or to another engine's state are refused.
//!
//! Both are compact msgpack (structures as arrays: a field name repeated
//! for every contact of every agent would be most of the bytes), headed by a
//! format name and a version, and followed by the SHA-256 of those bytes: a save from an
//! incompatible version, or altered or cut short by a single byte, is refused
//! as a whole, never half-applied. The policy is not part of it: a restore keeps the
//! running policy, and its caps and timings apply to what is restored.

use super::{Engine, Learnt};
use crate::changes::{ApplyChanges, Saving, save_as};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The SHA-256 after the msgpack body; it also names the save.
const CHECKSUM_BYTES: usize = 32;
pub(super) type SaveId = [u8; CHECKSUM_BYTES];

/// Names the snapshot format, so a stray file is told apart from an old one.
const FORMAT: &str = "clawwatch-state";
/// Names a save of changes.
const CHANGES_FORMAT: &str = "clawwatch-state-changes";
/// Bumped whenever a saved structure changes shape.
pub const VERSION: u32 = 14;

/// Why a snapshot was refused. The engine is unchanged when this is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Not a clawwatch snapshot, or damaged (truncated, altered).
    Corrupt(String),
    /// A clawwatch snapshot from an incompatible version.
    Incompatible { found: u32, supported: u32 },
    /// Changes that do not follow this engine's state: `follows` names the
    /// save they were taken after (`None`: a fresh engine), `current` the
    /// save this engine's state is (`None`: none, it has learnt since or
    /// never saved). Both are the first bytes of the save's SHA-256, in hex.
    OutOfSequence {
        follows: Option<String>,
        current: Option<String>,
    },
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
            StateError::OutOfSequence { follows, current } => {
                let follows = match follows {
                    Some(id) => format!("save {id}"),
                    None => "a fresh engine".to_string(),
                };
                let current = match current {
                    Some(id) => format!("is save {id}"),
                    None => "is no save (it learnt more since, or never saved)".to_string(),
                };
                write!(
                    f,
                    "these state changes follow {follows}, but this engine's state {current}: \
                     restore the snapshot they start from, then apply its changes in order"
                )
            }
        }
    }
}

impl std::error::Error for StateError {}

fn short_id(id: &SaveId) -> String {
    id[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// A save is the array `[format, version, body]`; the header is read
/// first, so another version is named as such rather than failing to parse.
#[derive(Deserialize)]
struct Header(String, u32, IgnoredAny);

#[derive(Serialize)]
struct SavedRef<B>(&'static str, u32, B);

#[derive(Deserialize)]
struct Saved<B>(IgnoredAny, IgnoredAny, B);

/// The body of a save of changes: the save it follows, and the changes.
#[derive(Serialize)]
struct ChangesRef<'a>(Option<serde_bytes_id::Id>, &'a Learnt);

#[derive(Deserialize)]
struct Changes(IgnoredAny, Learnt);

/// A save id as msgpack binary (32 bytes) rather than an array of numbers.
mod serde_bytes_id {
    use super::SaveId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct Id(pub SaveId);

    impl Serialize for Id {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Id {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let bytes: &[u8] = Deserialize::deserialize(d)?;
            SaveId::try_from(bytes)
                .map(Id)
                .map_err(|_| serde::de::Error::invalid_length(bytes.len(), &"32 bytes"))
        }
    }
}

/// Appends the SHA-256 that checks and names a save.
fn sealed(mut bytes: Vec<u8>) -> (Vec<u8>, SaveId) {
    let digest: SaveId = Sha256::digest(&bytes).into();
    bytes.extend_from_slice(&digest);
    (bytes, digest)
}

impl Engine {
    /// Everything learnt so far, as a snapshot `restore_state` reads back.
    /// Changes exported after it are relative to it.
    pub fn export_state(&self) -> Vec<u8> {
        let saved = SavedRef(FORMAT, VERSION, &self.learnt);
        let bytes = save_as(Saving::Whole, || rmp_serde::to_vec(&saved));
        let (bytes, id) = sealed(bytes.expect("engine state is always serialisable"));
        self.last_save.set(Some(id));
        self.at_last_save.set(true);
        bytes
    }

    /// The bytes each part of what is learnt takes in a snapshot, largest
    /// first: where the state's size comes from (`clawwatch bench` reports it).
    /// The parts are written in the snapshot's order with one table of names,
    /// so a name is charged to the part that mentions it first, as in the snapshot.
    pub fn snapshot_parts(&self) -> Vec<(&'static str, usize)> {
        fn size(part: &impl Serialize) -> usize {
            rmp_serde::to_vec(part).map_or(0, |bytes| bytes.len())
        }
        let l = &self.learnt;
        let mut parts = save_as(Saving::Measured, || {
            vec![
                ("registry", size(&l.registry)),
                ("dns", size(&l.dns)),
                ("incidents", size(&l.incidents)),
                ("conversations", size(&l.conversations)),
                ("activities", size(&l.activities)),
                ("baselines", size(&l.baselines)),
                ("rates", size(&l.rates)),
                ("tunnels", size(&l.tunnels)),
                ("clock", size(&l.clock)),
                ("deadlines", size(&l.deadlines)),
                ("counters", size(&l.counters)),
                ("shared intents", size(&l.shared_intents)),
                ("chains", size(&l.chains)),
                ("flood", size(&l.flood)),
                ("due findings", size(&(&l.due, l.due_dropped))),
            ]
        });
        parts.sort_by(|a, b| b.1.cmp(&a.1));
        parts
    }

    /// What changed since this engine's previous save (snapshot or changes),
    /// for `restore_state` to apply after that save.
    pub fn export_changes(&self) -> Vec<u8> {
        let follows = self.last_save.get().map(serde_bytes_id::Id);
        let saved = SavedRef(CHANGES_FORMAT, VERSION, ChangesRef(follows, &self.learnt));
        let bytes = save_as(Saving::Changes, || rmp_serde::to_vec(&saved));
        let (bytes, id) = sealed(bytes.expect("engine state is always serialisable"));
        self.last_save.set(Some(id));
        self.at_last_save.set(true);
        bytes
    }

    /// Reads a save back, keeping the policy: a snapshot replaces everything
    /// learnt; changes are applied to the save they follow, which must be
    /// this engine's last (a chain of changes goes in order). The policy's
    /// caps trim what does not fit (least recently used first) and its
    /// timings apply. On error the engine is unchanged.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let Header(format, version, _) = rmp_serde::from_slice(bytes)
            .map_err(|e| StateError::Corrupt(format!("no snapshot header: {e}")))?;
        if format != FORMAT && format != CHANGES_FORMAT {
            return Err(StateError::Corrupt(format!(
                "format `{format}`, expected `{FORMAT}` or `{CHANGES_FORMAT}`"
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
        let id: SaveId = Sha256::digest(body).into();
        if id.as_slice() != checksum {
            return Err(StateError::Corrupt(
                "its SHA-256 does not match its bytes: altered or cut short".into(),
            ));
        }
        let corrupt = |e: rmp_serde::decode::Error| StateError::Corrupt(e.to_string());
        // Names are numbered after their first mention, as `save_as` wrote them.
        fn read<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, rmp_serde::decode::Error> {
            crate::name::with_table(|| rmp_serde::from_slice(body))
        }
        if format == FORMAT {
            let Saved(_, _, learnt) = read(body).map_err(corrupt)?;
            self.learnt = learnt;
        } else {
            // The sequence first, before the body is read: the reason to give
            // for changes out of it is that, whatever else is wrong.
            let Saved(_, _, (follows, IgnoredAny)) =
                rmp_serde::from_slice::<Saved<(Option<serde_bytes_id::Id>, IgnoredAny)>>(body)
                    .map_err(corrupt)?;
            let follows = follows.map(|f| f.0);
            let at_save = self.at_last_save.get();
            if !at_save || follows != self.last_save.get() {
                return Err(StateError::OutOfSequence {
                    follows: follows.as_ref().map(short_id),
                    current: (self.last_save.get().filter(|_| at_save))
                        .as_ref()
                        .map(short_id),
                });
            }
            let Saved(_, _, Changes(_, changes)) = read(body).map_err(corrupt)?;
            self.learnt.apply_changes(changes);
        }
        self.last_save.set(Some(id));
        self.at_last_save.set(true);
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

    /// The parts add up to the snapshot (less its header and checksum): none
    /// is missing from the breakdown, and names are charged once.
    #[test]
    fn the_snapshot_parts_add_up_to_the_snapshot() {
        let mut engine = Engine::new(POLICY).unwrap();
        run(&mut engine, SCENARIO);
        let parts = engine.snapshot_parts();
        let total: usize = parts.iter().map(|(_, bytes)| bytes).sum();
        let snapshot = engine.export_state().len();
        // `[format, version, [parts...]]` headers and the 32-byte SHA-256.
        let framing = 1 + (1 + super::FORMAT.len()) + 1 + 3 + 32;
        assert!(
            (snapshot - framing..=snapshot - framing + 2).contains(&total),
            "parts {total} B, snapshot {snapshot} B: {parts:?}"
        );
        assert!(parts.windows(2).all(|w| w[0].1 >= w[1].1), "largest first");
    }

    /// Measuring the snapshot's parts is not a save: the changes exported
    /// after it still hold everything since the real save before it.
    #[test]
    fn measuring_the_parts_leaves_the_changes_to_save_alone() {
        let half = SCENARIO.len() / 2;
        let cut = half + SCENARIO[half..].iter().position(|&b| b == b'\n').unwrap() + 1;
        let changes = |measure: bool| {
            let mut engine = Engine::new(POLICY).unwrap();
            run(&mut engine, &SCENARIO[..cut]);
            engine.export_state();
            run(&mut engine, &SCENARIO[cut..]);
            if measure {
                assert!(!engine.snapshot_parts().is_empty());
            }
            engine.export_changes()
        };
        let (measured, unmeasured) = (changes(true), changes(false));
        assert!(measured.len() > 100, "{} bytes of changes", measured.len());
        assert!(
            measured == unmeasured,
            "measuring changed what the save holds"
        );
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

    /// Every case's records after the scenario's: many agents, rules, windows
    /// and incidents.
    fn all_cases() -> Vec<(String, Vec<u8>)> {
        let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cases");
        let mut records = Vec::new();
        let mut dirs: Vec<_> = std::fs::read_dir(&cases)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dirs.sort();
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            for file in ["fires.ndjson", "near_miss.ndjson"] {
                records.extend(std::fs::read(dir.join(file)).unwrap());
            }
        }
        let policy = std::fs::read_to_string(cases.join("policy.toml")).unwrap();
        let squeezed = policy.replace(
            "[monitor]",
            "[monitor]\nmax_agents = 3\nmax_dns_entries = 4\nmax_incidents = 2",
        );
        assert_ne!(policy, squeezed);
        vec![
            (POLICY.to_string(), SCENARIO.to_vec()),
            (policy, records.clone()),
            // Small caps: entries are evicted and re-inserted between saves.
            (squeezed, records),
        ]
    }

    /// A host that checkpoints with one snapshot and then only changes, and
    /// is re-created from that chain at many points (each time going on
    /// saving changes after the chain it was restored from), writes exactly
    /// what one uninterrupted engine writes.
    #[test]
    fn a_snapshot_and_its_chain_of_changes_restore_exactly_where_the_engine_stood() {
        for (policy, records) in all_cases() {
            let mut whole = Engine::new(&policy).unwrap();
            let expected = run(&mut whole, &records);
            let lines: Vec<&[u8]> = records.split_inclusive(|b| *b == b'\n').collect();
            for (save_every, crash_every) in [(1, 3), (2, 7), (5, 11), (3, 40)] {
                let mut engine = Engine::new(&policy).unwrap();
                let mut chain = vec![engine.export_state()];
                let mut out = Vec::new();
                for (i, line) in lines.iter().enumerate() {
                    out.extend(run(&mut engine, line));
                    if i % save_every == 0 {
                        chain.push(engine.export_changes());
                    }
                    if i % 97 == 96 {
                        chain = vec![engine.export_state()];
                    }
                    if i % crash_every == crash_every - 1 {
                        chain.push(engine.export_changes());
                        engine = Engine::new(&policy).unwrap();
                        for save in &chain {
                            engine.restore_state(save).unwrap();
                        }
                    }
                }
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&expected),
                    "saving changes after every {save_every} lines, re-created every {crash_every}"
                );
                assert_eq!(engine.stats(), whole.stats());
            }
        }
    }

    /// Changes name the save they follow: applied to another state, twice,
    /// or out of order, they are refused and the engine is unchanged.
    #[test]
    fn changes_apply_only_to_the_save_they_follow() {
        let lines: Vec<&[u8]> = SCENARIO.split_inclusive(|b| *b == b'\n').collect();
        let mut engine = Engine::new(POLICY).unwrap();
        run(&mut engine, &lines[..100].concat());
        let base = engine.export_state();
        run(&mut engine, &lines[100..150].concat());
        let first = engine.export_changes();
        run(&mut engine, &lines[150..].concat());
        let second = engine.export_changes();

        let mut fresh = Engine::new(POLICY).unwrap();
        let refused = |e: &mut Engine, save: &[u8]| {
            let (stats, last_save) = (e.stats(), e.last_save.get());
            let err = e.restore_state(save).unwrap_err();
            assert!(
                matches!(err, super::StateError::OutOfSequence { .. }),
                "{err:?}"
            );
            assert!(
                err.to_string()
                    .contains("restore the snapshot they start from"),
                "{err}"
            );
            assert_eq!((e.stats(), e.last_save.get()), (stats, last_save));
        };
        refused(&mut fresh, &first);
        let mut restored = Engine::new(POLICY).unwrap();
        restored.restore_state(&base).unwrap();
        restored.restore_state(&first).unwrap();
        refused(&mut restored, &first);
        let mut skipping = Engine::new(POLICY).unwrap();
        skipping.restore_state(&base).unwrap();
        refused(&mut skipping, &second);
        // One that learnt after its save does not take changes to that save.
        let mut learnt = Engine::new(POLICY).unwrap();
        learnt.restore_state(&base).unwrap();
        run(&mut learnt, lines[100]);
        let err = learnt.restore_state(&first).unwrap_err();
        assert!(err.to_string().contains("learnt more since"), "{err}");
        restored.restore_state(&second).unwrap();
        assert_eq!(restored.stats(), engine.stats());
    }

    /// An altered set of changes is refused like an altered snapshot.
    #[test]
    fn altered_changes_are_refused() {
        let mut engine = Engine::new(POLICY).unwrap();
        let base = engine.export_state();
        run(&mut engine, SCENARIO);
        let changes = engine.export_changes();
        let mut restored = Engine::new(POLICY).unwrap();
        restored.restore_state(&base).unwrap();
        for at in (0..changes.len()).step_by((changes.len() / 100).max(1)) {
            let mut damaged = changes.clone();
            damaged[at] ^= 0x01;
            assert!(
                restored.restore_state(&damaged).is_err(),
                "a flip at byte {at} was accepted"
            );
        }
        restored.restore_state(&changes).unwrap();
    }

    /// The point of changes: after a quiet period they are a small fraction
    /// of the snapshot, however large the state.
    #[test]
    fn changes_after_little_activity_are_much_smaller_than_a_snapshot() {
        let mut engine = Engine::new(POLICY).unwrap();
        let mut batch = String::new();
        for i in 0..500 {
            let ip = format!("10.20.{}.{}", i / 250, i % 250 + 2);
            batch.push_str(&format!(
                "{{\"type\":\"agent.spawn\",\"ts\":\"2026-11-24T14:00:00Z\",\"agent_id\":\"a-{i}\",\"agent_type\":\"data_collector_v1\",\"ip\":\"{ip}\"}}\n\
                 {{\"type\":\"flow\",\"ts\":\"2026-11-24T14:01:00Z\",\"src_ip\":\"{ip}\",\"src_port\":40000,\"dst_ip\":\"93.184.0.{}\",\"dst_port\":443,\"proto\":\"TCP\",\"bytes\":1000}}\n",
                i % 250
            ));
        }
        run(&mut engine, batch.as_bytes());
        let snapshot = engine.export_state();
        run(
            &mut engine,
            b"{\"type\":\"flow\",\"ts\":\"2026-11-24T14:02:00Z\",\"src_ip\":\"10.20.0.2\",\"src_port\":40001,\"dst_ip\":\"93.184.0.0\",\"dst_port\":443,\"proto\":\"TCP\",\"bytes\":1000}\n",
        );
        let changes = engine.export_changes();
        assert!(
            changes.len() * 50 < snapshot.len(),
            "changes {} bytes, snapshot {} bytes",
            changes.len(),
            snapshot.len()
        );
        let quiet = engine.export_changes();
        assert!(
            quiet.len() < changes.len(),
            "nothing changed: {} bytes",
            quiet.len()
        );
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
