//! The engine's state on disk (`run --state PATH`): restored at start, saved
//! periodically and at shutdown, so a restart — even `kill -9` — loses at most
//! the records since the last snapshot.
//!
//! A snapshot is replaced atomically (written beside it, synced, renamed), so
//! a crash mid-write leaves the previous one intact. One that cannot be read is
//! reported, moved aside for inspection and never stops the start.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct StateFile {
    path: PathBuf,
}

/// What heads a snapshot file, before the number of the first journal it does not cover.
const HEADER: &[u8] = b"clawwatch-snapshot\n";

/// The snapshot's name when `--state` names a directory.
pub const FILE_IN_DIRECTORY: &str = "clawwatch-state.msgpack";

impl StateFile {
    /// `path` is the snapshot file, or a directory to keep it in.
    pub fn new(path: PathBuf) -> StateFile {
        let path = if path.is_dir() {
            path.join(FILE_IN_DIRECTORY)
        } else {
            path
        };
        StateFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved snapshot and the first journal it does not cover; `None` on
    /// a first start (no file yet).
    pub fn load(&self) -> Result<Option<(u64, Vec<u8>)>> {
        match std::fs::read(&self.path) {
            Ok(mut bytes) => {
                if bytes.len() >= HEADER.len() + 8 && bytes.starts_with(HEADER) {
                    let at = HEADER.len();
                    let generation =
                        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
                    bytes.drain(..at + 8);
                    Ok(Some((generation, bytes)))
                } else {
                    Ok(Some((0, bytes)))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading state {}", self.path.display())),
        }
    }

    /// Replaces the snapshot atomically, headed by the first journal it does
    /// not cover.
    pub fn save(&self, snapshot: &[u8], generation: u64) -> Result<()> {
        // Written beside it, synced, renamed over it, and the directory synced:
        // a crash at any point leaves the previous snapshot or this one, whole.
        let write = || -> std::io::Result<()> {
            let mut file = atomic_write_file::AtomicWriteFile::open(&self.path)?;
            file.write_all(HEADER)?;
            file.write_all(&generation.to_le_bytes())?;
            file.write_all(snapshot)?;
            file.commit()
        };
        write().with_context(|| format!("saving state to {}", self.path.display()))
    }

    /// Moves an unusable snapshot out of the way (to `PATH.rejected`), so the
    /// next save does not destroy what an operator may want to inspect.
    pub fn set_aside(&self) -> Option<PathBuf> {
        let aside = self.sibling("rejected");
        std::fs::rename(&self.path, &aside).ok().map(|()| aside)
    }

    fn sibling(&self, extension: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".");
        name.push(extension);
        self.path.with_file_name(name)
    }
}

/// Writes snapshots on a thread of its own, so the pipeline waits only for
/// the engine's export, not for the disk. One write at a time, in order.
pub struct Saver {
    file: std::sync::Arc<StateFile>,
    writing: Option<std::thread::JoinHandle<Result<u64>>>,
}

impl Saver {
    pub fn new(file: StateFile) -> Saver {
        Saver {
            file: std::sync::Arc::new(file),
            writing: None,
        }
    }

    /// Starts writing `snapshot` once the previous write is done; returns how
    /// that previous write went (the journal it started at, when it worked).
    pub fn save(&mut self, snapshot: Vec<u8>, generation: u64) -> Option<Result<u64>> {
        let previous = self.finish();
        let file = self.file.clone();
        self.writing = Some(std::thread::spawn(move || {
            file.save(&snapshot, generation).map(|()| generation)
        }));
        previous
    }

    /// Waits for the write in flight; how it went, if there was one.
    pub fn finish(&mut self) -> Option<Result<u64>> {
        self.writing.take().map(|w| {
            w.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the state writer failed")))
        })
    }
}

/// The state kept durable for `run --state`: snapshots written in the
/// background, and between them the journal of every step since, synced
/// before the step's output leaves.
pub struct Durable {
    saver: Saver,
    journal: crate::stage::journal::Journal,
}

impl Durable {
    /// Restored from `file` (the snapshot, then the journal after it) into
    /// `monitor`, and a fresh snapshot taken at once. `restored` says whether
    /// the snapshot was used; the journal is replayed only then (or when
    /// there was none).
    pub fn start(
        file: StateFile,
        monitor: &mut crate::component::Monitor,
        covered_from: u64,
    ) -> Result<(Durable, usize)> {
        let steps = crate::stage::journal::Journal::read_from(file.path(), covered_from)?;
        let replayed = steps.len();
        for step in &steps {
            replay(monitor, step);
        }
        let newest = crate::stage::journal::Journal::newest(file.path(), covered_from);
        let journal = crate::stage::journal::Journal::open(file.path(), newest)?;
        let mut durable = Durable {
            saver: Saver::new(file),
            journal,
        };
        // A snapshot at start: what was replayed need not be again.
        let saved = durable.save(monitor);
        let finished = durable.finish();
        if let Some(Err(e)) = saved.or(finished) {
            return Err(e);
        }
        Ok((durable, replayed))
    }

    /// Journals a step the engine took; once this returns it survives a crash.
    pub fn record(&mut self, step: &crate::stage::journal::Step) -> Result<()> {
        self.journal.append(step)
    }

    /// Takes a snapshot and starts writing it; returns how the previous write
    /// went. Journals a written snapshot covers are deleted.
    pub fn save(&mut self, monitor: &mut crate::component::Monitor) -> Option<Result<()>> {
        let generation = match self.journal.rotate() {
            Ok(g) => g,
            Err(e) => return Some(Err(e)),
        };
        let previous = match monitor.export_state() {
            Ok(snapshot) => self.saver.save(snapshot, generation),
            Err(e) => return Some(Err(e)),
        };
        self.settle(previous)
    }

    /// Waits for the write in flight; how it went, if there was one.
    pub fn finish(&mut self) -> Option<Result<()>> {
        let finished = self.saver.finish();
        self.settle(finished)
    }

    fn settle(&mut self, outcome: Option<Result<u64>>) -> Option<Result<()>> {
        outcome.map(|r| r.map(|covered_from| self.journal.remove_before(covered_from)))
    }
}

/// Applies one journaled step again (its output was written before).
pub fn replay(monitor: &mut crate::component::Monitor, step: &crate::stage::journal::Step) {
    use crate::stage::journal::Step;
    match step {
        Step::Batch { bytes, stream } => {
            monitor.set_stream(stream.clone());
            monitor.process(bytes);
        }
        Step::Advance(now) => {
            monitor.advance_to(*now);
        }
        Step::Reload(policy) => {
            if let Err(e) = monitor.reload(policy) {
                tracing::warn!(error = %e, "a journaled policy no longer loads");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_holds_the_snapshot_under_a_fixed_name() {
        let dir = std::env::temp_dir().join(format!("clawwatch-state-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = StateFile::new(dir.clone());
        assert_eq!(file.path(), dir.join(FILE_IN_DIRECTORY));
        file.save(b"snapshot", 3).unwrap();
        assert_eq!(file.load().unwrap(), Some((3, b"snapshot".to_vec())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn saves_atomically_loads_back_and_sets_a_bad_file_aside() {
        let dir = std::env::temp_dir().join(format!("clawwatch-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = StateFile::new(dir.join("state.msgpack"));
        assert_eq!(file.load().unwrap(), None, "no snapshot on a first start");
        file.save(b"one", 0).unwrap();
        file.save(b"two", 1).unwrap();
        assert_eq!(file.load().unwrap(), Some((1, b"two".to_vec())));
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["state.msgpack"], "no temporary file is left behind");
        let aside = file.set_aside().unwrap();
        assert!(std::fs::read(aside).unwrap().ends_with(b"two"));
        assert_eq!(file.load().unwrap(), None);

        let mut saver = Saver::new(StateFile::new(dir.join("state.msgpack")));
        assert!(
            saver.save(b"first".to_vec(), 1).is_none(),
            "nothing written before"
        );
        assert!(matches!(saver.save(b"second".to_vec(), 2), Some(Ok(1))));
        assert!(matches!(saver.finish(), Some(Ok(2))));
        assert_eq!(
            file.load().unwrap(),
            Some((2, b"second".to_vec())),
            "written in order"
        );
        assert!(saver.finish().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
