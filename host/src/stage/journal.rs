//! The write-ahead journal beside `--state PATH`: every batch the engine took
//! since the last snapshot (and every reload and idle time advance), synced
//! to disk before that batch's output leaves, so the records an acked carrier
//! acknowledged are never forgotten, even after `kill -9`: a restart restores
//! the snapshot and replays the journal.
//!
//! Journals are numbered (`PATH.journal.N`). A snapshot is headed by the first
//! number it does not cover; once it is safely written, older journals go.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What changed the engine's state, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Batch {
        bytes: Vec<u8>,
        stream: Option<String>,
    },
    Advance(i64),
    Reload(String),
}

pub struct Journal {
    base: PathBuf,
    generation: u64,
    file: std::fs::File,
}

fn file_of(base: &Path, generation: u64) -> PathBuf {
    let mut name = base.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".journal.{generation}"));
    base.with_file_name(name)
}

/// The journals beside `base`, by number.
fn generations(base: &Path) -> Vec<u64> {
    let prefix = format!(
        "{}.journal.",
        base.file_name().unwrap_or_default().to_string_lossy()
    );
    let dir = match base.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let mut found: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(&prefix)?
                .parse()
                .ok()
        })
        .collect();
    found.sort_unstable();
    found
}

impl Journal {
    /// Appends to journal `generation` beside `base` (created if needed).
    pub fn open(base: &Path, generation: u64) -> Result<Journal> {
        let path = file_of(base, generation);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening the journal {}", path.display()))?;
        Ok(Journal {
            base: base.to_path_buf(),
            generation,
            file,
        })
    }

    /// The newest journal number beside `base`, or `at_least`.
    pub fn newest(base: &Path, at_least: u64) -> u64 {
        generations(base).last().copied().unwrap_or(0).max(at_least)
    }

    /// Writes one step and syncs it: once this returns, it survives a crash.
    pub fn append(&mut self, step: &Step) -> Result<()> {
        let mut entry = Vec::new();
        let (kind, payload): (u8, Vec<u8>) = match step {
            Step::Batch { bytes, stream } => {
                let stream = stream.as_deref().unwrap_or("");
                let mut p = Vec::with_capacity(bytes.len() + stream.len() + 2);
                p.extend_from_slice(&(stream.len() as u16).to_le_bytes());
                p.extend_from_slice(stream.as_bytes());
                p.extend_from_slice(bytes);
                (1, p)
            }
            Step::Advance(now) => (2, now.to_le_bytes().to_vec()),
            Step::Reload(policy) => (3, policy.as_bytes().to_vec()),
        };
        entry.push(kind);
        entry.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        entry.extend_from_slice(&payload);
        self.file
            .write_all(&entry)
            .and_then(|()| self.file.sync_data())
            .with_context(|| {
                format!(
                    "writing the journal {}",
                    file_of(&self.base, self.generation).display()
                )
            })
    }

    /// Starts the next journal; returns its number (what a snapshot taken
    /// now does not cover).
    pub fn rotate(&mut self) -> Result<u64> {
        *self = Journal::open(&self.base, self.generation + 1)?;
        Ok(self.generation)
    }

    /// Deletes the journals a safely written snapshot covers (numbers below `generation`).
    pub fn remove_before(&self, generation: u64) {
        for g in generations(&self.base)
            .into_iter()
            .filter(|g| *g < generation)
        {
            let _ = std::fs::remove_file(file_of(&self.base, g));
        }
    }

    /// The steps of every journal numbered `from` or later, in order. A step
    /// cut short at the end of a journal (a crash mid-write) was never synced,
    /// so never acknowledged: it is left out.
    pub fn read_from(base: &Path, from: u64) -> Result<Vec<Step>> {
        let mut steps = Vec::new();
        for g in generations(base).into_iter().filter(|g| *g >= from) {
            let path = file_of(base, g);
            let bytes = std::fs::read(&path)
                .with_context(|| format!("reading the journal {}", path.display()))?;
            let mut rest = &bytes[..];
            while rest.len() >= 5 {
                let kind = rest[0];
                let len = u32::from_le_bytes(rest[1..5].try_into().expect("4 bytes")) as usize;
                let Some(payload) = rest.get(5..5 + len) else {
                    break;
                };
                steps.push(match kind {
                    1 if payload.len() >= 2 => {
                        let n = u16::from_le_bytes([payload[0], payload[1]]) as usize;
                        let stream =
                            String::from_utf8_lossy(payload.get(2..2 + n).unwrap_or_default());
                        Step::Batch {
                            bytes: payload.get(2 + n..).unwrap_or_default().to_vec(),
                            stream: (!stream.is_empty()).then(|| stream.into_owned()),
                        }
                    }
                    2 if payload.len() == 8 => {
                        Step::Advance(i64::from_le_bytes(payload.try_into().expect("8 bytes")))
                    }
                    3 => Step::Reload(String::from_utf8_lossy(payload).into_owned()),
                    _ => anyhow::bail!(
                        "journal {} is damaged at a step of kind {kind}",
                        path.display()
                    ),
                });
                rest = &rest[5 + len..];
            }
        }
        Ok(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_come_back_in_order_across_journals_and_a_torn_tail_is_left_out() {
        let dir = std::env::temp_dir().join(format!("clawwatch-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("state.msgpack");
        let steps = [
            Step::Batch {
                bytes: b"{\"a\":1}\n".to_vec(),
                stream: Some("pmacct".into()),
            },
            Step::Reload("[monitor]\n".into()),
            Step::Advance(1_795_530_600_000_000_000),
            Step::Batch {
                bytes: b"{\"b\":2}\n".to_vec(),
                stream: None,
            },
        ];
        let mut journal = Journal::open(&base, 0).unwrap();
        journal.append(&steps[0]).unwrap();
        journal.append(&steps[1]).unwrap();
        assert_eq!(journal.rotate().unwrap(), 1);
        journal.append(&steps[2]).unwrap();
        journal.append(&steps[3]).unwrap();
        // A crash mid-write: half an entry at the end.
        std::fs::OpenOptions::new()
            .append(true)
            .open(file_of(&base, 1))
            .unwrap()
            .write_all(&[1, 200, 0])
            .unwrap();
        assert_eq!(Journal::read_from(&base, 0).unwrap(), steps);
        assert_eq!(Journal::read_from(&base, 1).unwrap(), steps[2..]);
        journal.remove_before(1);
        assert_eq!(Journal::read_from(&base, 0).unwrap(), steps[2..]);
        assert_eq!(Journal::newest(&base, 0), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
