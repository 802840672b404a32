//! The enforcement journal: every slot's original value, on disk (fsync'd) before the first
//! write to it, so a crash never leaves a limit without a way back. JSON lines, append-only;
//! truncated once everything has been restored.

use super::write::Slot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("failed to open the enforcement journal {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to append to the enforcement journal {path}")]
    Append {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Original { cgroup: String, slot: Slot, value: String },
    Restored { cgroup: String, slot: Slot },
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Originals not yet restored, by (cgroup, slot).
    pending: BTreeMap<(String, Slot), String>,
}

/// Replay the records: an original is pending until a later record says it was restored.
fn load(file: &std::fs::File, path: &Path) -> BTreeMap<(String, Slot), String> {
    let mut pending = BTreeMap::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Record>(&line) {
            Ok(Record::Original { cgroup, slot, value }) => {
                pending.entry((cgroup, slot)).or_insert(value);
            }
            Ok(Record::Restored { cgroup, slot }) => {
                pending.remove(&(cgroup, slot));
            }
            Err(err) => tracing::warn!(journal = %path.display(), line = n + 1, cause = %err, "skipping unreadable journal line"),
        }
    }
    pending
}

impl Journal {
    /// Open (or create) the journal and load what a previous run left unrestored.
    /// Unreadable lines are skipped with a warning: a torn last line is a record whose
    /// cgroup write never happened, since the write follows the fsync.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let open_err = |source| JournalError::Open { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = OpenOptions::new().create(true).read(true).append(true).open(path).map_err(open_err)?;
        let pending = load(&file, path);
        let mut journal = Journal { path: path.to_path_buf(), file, pending };
        journal.end_torn_line()?;
        Ok(journal)
    }

    /// What a journal holds unrestored, read without opening it for writing (for `explain`,
    /// while the daemon may be running). A missing journal holds nothing.
    pub fn read_pending(path: &Path) -> Result<Vec<(String, Slot, String)>, JournalError> {
        match std::fs::File::open(path) {
            Ok(file) => Ok(load(&file, path).into_iter().map(|((c, s), v)| (c, s, v)).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(JournalError::Open { path: path.to_path_buf(), source }),
        }
    }

    /// Terminate a torn last line so the next record starts on a line of its own.
    fn end_torn_line(&mut self) -> Result<(), JournalError> {
        use std::io::{Read, Seek, SeekFrom};
        let err = |source| JournalError::Open { path: self.path.clone(), source };
        let len = self.file.metadata().map_err(err)?.len();
        if len == 0 {
            return Ok(());
        }
        let mut last = [0u8; 1];
        let mut reader = &self.file;
        reader.seek(SeekFrom::Start(len - 1)).and_then(|_| reader.read_exact(&mut last)).map_err(err)?;
        if last[0] != b'\n' {
            self.file.write_all(b"\n").and_then(|_| self.file.sync_data()).map_err(err)?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Originals not yet restored: after a crash, these are the writes to undo.
    pub fn pending(&self) -> Vec<(String, Slot, String)> {
        self.pending.iter().map(|((c, s), v)| (c.clone(), s.clone(), v.clone())).collect()
    }

    pub fn original(&self, cgroup: &str, slot: &Slot) -> Option<&str> {
        self.pending.get(&(cgroup.to_string(), slot.clone())).map(String::as_str)
    }

    /// Journal the original before the first write to a slot; a no-op when already held.
    pub fn record_original(&mut self, cgroup: &str, slot: &Slot, value: &str) -> Result<(), JournalError> {
        let key = (cgroup.to_string(), slot.clone());
        if self.pending.contains_key(&key) {
            return Ok(());
        }
        self.append(&Record::Original { cgroup: cgroup.into(), slot: slot.clone(), value: value.into() })?;
        self.pending.insert(key, value.to_string());
        Ok(())
    }

    /// The slot is back at its original value.
    pub fn record_restored(&mut self, cgroup: &str, slot: &Slot) -> Result<(), JournalError> {
        if self.pending.remove(&(cgroup.to_string(), slot.clone())).is_none() {
            return Ok(());
        }
        if self.pending.is_empty() {
            // Nothing left to undo: start the next run with an empty journal.
            return self.file.set_len(0).and_then(|_| self.file.sync_data()).map_err(|source| JournalError::Append { path: self.path.clone(), source });
        }
        self.append(&Record::Restored { cgroup: cgroup.into(), slot: slot.clone() })
    }

    fn append(&mut self, r: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(r).map_err(|e| JournalError::Append { path: self.path.clone(), source: e.into() })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
            .map_err(|source| JournalError::Append { path: self.path.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(f: &str) -> Slot {
        Slot { file: f.into(), dev: None }
    }

    #[test]
    fn originals_survive_reopen_until_restored_and_torn_lines_are_skipped() {
        let dir = std::env::temp_dir().join(format!("truce-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("journal.jsonl");
        {
            let mut j = Journal::open(&path).expect("open");
            j.record_original("/a", &slot("cpu.max"), "max 100000").expect("append");
            j.record_original("/a", &slot("cpu.max"), "20000 100000").expect("second original is ignored");
            j.record_original("/b", &slot("cpu.weight"), "100").expect("append");
            j.record_restored("/b", &slot("cpu.weight")).expect("append");
        }
        // A crash mid-append leaves a torn line.
        OpenOptions::new().append(true).open(&path).and_then(|mut f| f.write_all(b"{\"op\":\"orig")).expect("tear");
        let mut j = Journal::open(&path).expect("reopen");
        j.record_original("/c", &slot("memory.high"), "max").expect("append after a torn line");
        j.record_restored("/c", &slot("memory.high")).expect("append");
        drop(j);
        let mut j = Journal::open(&path).expect("reopen");
        assert_eq!(j.pending(), vec![("/a".to_string(), slot("cpu.max"), "max 100000".to_string())]);
        j.record_restored("/a", &slot("cpu.max")).expect("restore");
        assert_eq!(std::fs::metadata(&path).map(|m| m.len()).ok(), Some(0), "compacted when nothing is pending");
        assert!(Journal::open(&path).expect("reopen").pending().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
