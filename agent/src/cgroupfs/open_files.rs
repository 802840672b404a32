//! Cgroup files kept open between periods. Every period reads seven files per cgroup; opening
//! each by path walks the path and allocates a kernfs open file, and closing frees it again,
//! which cost more than the read itself (`perf` on the agent: 11 % of its CPU in `open`).
//! A kernfs file regenerates its content on a read at offset 0, so an open descriptor read
//! with `pread` sees the current values, and only the read is paid.
//!
//! A file that is absent (controller off) is tried again every period, as before. A read that
//! fails with ENODEV (the cgroup or its controller went away) drops the descriptor; the
//! cgroup is then reported vanished if its directory is gone, and the file absent otherwise.

use super::files::{absent_or_error, counters_with, pressure_with, read_optional};
use super::{CgroupCounters, CgroupEntry, CgroupError};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use truce_common::signal::PsiSignals;

/// At most this many cgroups keep their files open: seven descriptors each, well below the
/// usual soft limit of 1024. The others are read by path every period.
pub const MAX_OPEN_CGROUPS: usize = 64;

/// One cgroup's open files, by name.
struct OpenCgroup {
    dir: PathBuf,
    files: HashMap<&'static str, File>,
}

#[derive(Default)]
pub struct CgroupFiles {
    open: HashMap<u64, OpenCgroup>,
}

impl CgroupFiles {
    pub fn new() -> CgroupFiles {
        CgroupFiles::default()
    }

    /// Descriptors held now (for tests and logs).
    pub fn open_descriptors(&self) -> usize {
        self.open.values().map(|c| c.files.len()).sum()
    }

    /// Read every listed cgroup's counters and pressure. Cgroups that vanished meanwhile are
    /// left out; other failures are logged and left out too, so one broken cgroup cannot stop
    /// the period. Descriptors of cgroups no longer listed are closed.
    pub fn read(&mut self, cgroups: &[CgroupEntry]) -> HashMap<u64, (CgroupCounters, PsiSignals)> {
        self.open.retain(|id, c| cgroups.iter().any(|e| e.id == *id && e.dir == c.dir));
        let mut out = HashMap::with_capacity(cgroups.len());
        for c in cgroups {
            if !self.open.contains_key(&c.id) && self.open.len() < MAX_OPEN_CGROUPS {
                self.open.insert(c.id, OpenCgroup { dir: c.dir.clone(), files: HashMap::new() });
            }
            let read = match self.open.get_mut(&c.id) {
                Some(open) => counters_with(|f| open.read(f)).and_then(|k| Ok((k, pressure_with(|f| open.read(f))?))),
                None => counters_with(|f| read_optional(&c.dir, f)).and_then(|k| Ok((k, pressure_with(|f| read_optional(&c.dir, f))?))),
            };
            match read {
                Ok(v) => {
                    out.insert(c.id, v);
                }
                Err(CgroupError::Vanished { .. }) => {
                    self.open.remove(&c.id);
                }
                Err(err) => tracing::debug!(cgroup = %c.path, cause = %err, "skipping cgroup files this period"),
            }
        }
        out
    }
}

impl OpenCgroup {
    /// The file's current text, `None` if it is absent; opened on first use.
    fn read(&mut self, name: &'static str) -> Result<Option<String>, CgroupError> {
        if !self.files.contains_key(name) {
            match File::open(self.dir.join(name)) {
                Ok(f) => {
                    self.files.insert(name, f);
                }
                // Absent, vanished or controller off (tried again next period).
                Err(e) => return absent_or_error(&self.dir, name, e),
            }
        }
        let Some(file) = self.files.get(name) else { return Ok(None) };
        match read_from_start(file) {
            Ok(text) => Ok(Some(text)),
            Err(e) => {
                self.files.remove(name);
                if e.raw_os_error() == Some(libc::ENODEV) {
                    if self.dir.exists() { Ok(None) } else { Err(CgroupError::Vanished { path: self.dir.clone() }) }
                } else {
                    Err(CgroupError::read(self.dir.join(name), e))
                }
            }
        }
    }
}

/// The whole file from offset 0 (kernfs regenerates it), without moving the file position.
fn read_from_start(file: &File) -> io::Result<String> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = file.read_at(&mut chunk, out.len() as u64)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dir_of(files: &CgroupFiles, id: u64) -> Option<&Path> {
        files.open.get(&id).map(|c| c.dir.as_path())
    }

    fn entry(id: u64, dir: &Path) -> CgroupEntry {
        CgroupEntry { id, path: format!("/t{id}"), dir: dir.to_path_buf() }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("truce-open-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn an_open_file_is_read_again_from_the_start_each_period() {
        let d = tempdir("reread");
        std::fs::write(d.join("cpu.stat"), "usage_usec 100\nthrottled_usec 0\nnr_throttled 0\n").expect("write");
        let mut files = CgroupFiles::new();
        let first = files.read(&[entry(1, &d)]);
        assert_eq!(first[&1].0.cpu_usage_us, Some(100));
        assert_eq!(files.open_descriptors(), 1, "absent files hold no descriptor");
        // Rewritten in place (a regular file stands in for kernfs regenerating its text).
        std::fs::OpenOptions::new().write(true).open(d.join("cpu.stat")).and_then(|f| f.write_all_at(b"usage_usec 250\n", 0)).expect("rewrite");
        let second = files.read(&[entry(1, &d)]);
        assert_eq!(second[&1].0.cpu_usage_us, Some(250));
        assert_eq!(second[&1].0.memory_current, None, "an absent file stays absent");
        std::fs::write(d.join("memory.current"), "4096\n").expect("write");
        assert_eq!(files.read(&[entry(1, &d)])[&1].0.memory_current, Some(4096), "a file that appears is opened");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_cgroup_no_longer_listed_closes_its_files_and_a_vanished_one_is_left_out() {
        let (a, b) = (tempdir("a"), tempdir("b"));
        for d in [&a, &b] {
            std::fs::write(d.join("cpu.stat"), "usage_usec 1\n").expect("write");
        }
        let mut files = CgroupFiles::new();
        assert_eq!(files.read(&[entry(1, &a), entry(2, &b)]).len(), 2);
        assert_eq!(files.read(&[entry(2, &b)]).len(), 1);
        assert!(dir_of(&files, 1).is_none(), "the unlisted cgroup's descriptors are closed");
        std::fs::remove_dir_all(&b).expect("remove");
        // A regular file stays readable after unlink, unlike kernfs: the failed open decides
        // for files not yet open, so a listed but removed directory is left out once reopened.
        let mut fresh = CgroupFiles::new();
        assert!(fresh.read(&[entry(2, &b)]).is_empty(), "a vanished cgroup is left out");
        let _ = std::fs::remove_dir_all(&a);
    }

    #[test]
    fn past_the_limit_cgroups_are_read_by_path() {
        let d = tempdir("limit");
        std::fs::write(d.join("cpu.stat"), "usage_usec 7\n").expect("write");
        let entries: Vec<CgroupEntry> = (0..MAX_OPEN_CGROUPS as u64 + 5).map(|i| entry(i, &d)).collect();
        let mut files = CgroupFiles::new();
        let out = files.read(&entries);
        assert_eq!(out.len(), entries.len());
        assert!(out.values().all(|(c, _)| c.cpu_usage_us == Some(7)));
        assert_eq!(files.open_descriptors(), MAX_OPEN_CGROUPS);
        let _ = std::fs::remove_dir_all(&d);
    }
}
