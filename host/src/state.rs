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

    /// The saved snapshot; `None` on a first start (no file yet).
    pub fn load(&self) -> Result<Option<Vec<u8>>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading state {}", self.path.display())),
        }
    }

    /// Replaces the snapshot atomically.
    pub fn save(&self, snapshot: &[u8]) -> Result<()> {
        let tmp = self.sibling("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(snapshot)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // The rename itself is durable only once the directory is synced.
            #[cfg(unix)]
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
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
    writing: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Saver {
    pub fn new(file: StateFile) -> Saver {
        Saver {
            file: std::sync::Arc::new(file),
            writing: None,
        }
    }

    /// Starts writing `snapshot` once the previous write is done; returns how
    /// that previous write went, if there was one.
    pub fn save(&mut self, snapshot: Vec<u8>) -> Option<Result<()>> {
        let previous = self.finish();
        let file = self.file.clone();
        self.writing = Some(std::thread::spawn(move || file.save(&snapshot)));
        previous
    }

    /// Waits for the write in flight; how it went, if there was one.
    pub fn finish(&mut self) -> Option<Result<()>> {
        self.writing.take().map(|w| {
            w.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the state writer failed")))
        })
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
        file.save(b"snapshot").unwrap();
        assert_eq!(file.load().unwrap().as_deref(), Some(&b"snapshot"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn saves_atomically_loads_back_and_sets_a_bad_file_aside() {
        let dir = std::env::temp_dir().join(format!("clawwatch-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = StateFile::new(dir.join("state.msgpack"));
        assert_eq!(file.load().unwrap(), None, "no snapshot on a first start");
        file.save(b"one").unwrap();
        file.save(b"two").unwrap();
        assert_eq!(file.load().unwrap().as_deref(), Some(&b"two"[..]));
        assert!(!dir.join("state.msgpack.tmp").exists());
        let aside = file.set_aside().unwrap();
        assert_eq!(std::fs::read(aside).unwrap(), b"two");
        assert_eq!(file.load().unwrap(), None);

        let mut saver = Saver::new(StateFile::new(dir.join("state.msgpack")));
        assert!(
            saver.save(b"first".to_vec()).is_none(),
            "nothing written before"
        );
        assert!(matches!(saver.save(b"second".to_vec()), Some(Ok(()))));
        assert!(matches!(saver.finish(), Some(Ok(()))));
        assert_eq!(
            file.load().unwrap().as_deref(),
            Some(&b"second"[..]),
            "written in order"
        );
        assert!(saver.finish().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
