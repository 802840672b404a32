//! Listing the cgroups under the cgroup2 mount with their ids (directory inodes).

use super::CgroupError;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupEntry {
    /// The cgroup id, as `bpf_get_current_cgroup_id` returns it: the directory's inode.
    pub id: u64,
    /// Relative to the mount, starting with `/` (`/` is the root).
    pub path: String,
    pub dir: PathBuf,
}

/// Walk the hierarchy below `mount`, at most `max_depth` levels deep and `max_entries`
/// cgroups, so a host with a runaway number of cgroups cannot stall a collection period.
/// Cgroups that vanish during the walk are skipped.
pub fn walk(mount: &Path, max_depth: usize, max_entries: usize) -> Result<Vec<CgroupEntry>, CgroupError> {
    let meta = std::fs::metadata(mount).map_err(|e| CgroupError::read(mount.to_path_buf(), e))?;
    let mut out = vec![CgroupEntry { id: meta.ino(), path: "/".into(), dir: mount.to_path_buf() }];
    let mut stack = vec![(mount.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        if depth >= max_depth {
            continue;
        }
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for entry in rd.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let child = entry.path();
            let rel = child.strip_prefix(mount).map(|p| format!("/{}", p.display())).unwrap_or_default();
            out.push(CgroupEntry { id: meta.ino(), path: rel, dir: child.clone() });
            if out.len() >= max_entries {
                return Ok(out);
            }
            stack.push((child, depth + 1));
        }
    }
    Ok(out)
}
