//! Tracepoint layouts from tracefs `format` files, so no kernel's layout is hard-coded.
use std::{collections::HashMap, fs, path::{Path, PathBuf}};

use truce_common::abi::TracepointOffsets;

use super::ProbeError;

/// One `field:` line of a format file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

/// Parse a tracefs `format` file into field name -> (offset, size). Lines that are not
/// field lines (name, ID, print fmt) are skipped; a malformed field line is skipped too,
/// and a field the probes need is then reported missing by [`require`].
pub fn parse_format(text: &str) -> HashMap<String, Field> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else { continue };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for (i, part) in rest.split(';').enumerate() {
            let part = part.trim();
            if i == 0 {
                decl = Some(part);
            } else if let Some(v) = part.strip_prefix("offset:") {
                offset = v.trim().parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse().ok();
            }
        }
        if let (Some(decl), Some(offset), Some(size)) = (decl, offset, size)
            && let Some(name) = field_name(decl)
        {
            fields.insert(name.to_owned(), Field { offset, size });
        }
    }
    fields
}

/// The identifier of a C declaration such as `char prev_comm[16]` or `__data_loc char[] comm`.
fn field_name(decl: &str) -> Option<&str> {
    let last = decl.split_whitespace().last()?;
    let name = last.split('[').next()?;
    (!name.is_empty()).then_some(name)
}

fn require(event: &str, fields: &HashMap<String, Field>, name: &'static str, sizes: &[u32]) -> Result<Field, ProbeError> {
    let field = *fields.get(name).ok_or_else(|| ProbeError::FormatField { event: event.to_owned(), field: name })?;
    if !sizes.contains(&field.size) {
        return Err(ProbeError::FormatLayout {
            event: event.to_owned(),
            field: name,
            reason: format!("has size {}, expected one of {sizes:?}", field.size),
        });
    }
    Ok(field)
}

/// Where tracefs is mounted, mounting it at /sys/kernel/tracing when it is not.
pub fn tracefs_root() -> Result<PathBuf, ProbeError> {
    let path = Path::new("/proc/self/mountinfo");
    let mountinfo = fs::read_to_string(path).map_err(|source| ProbeError::ReadProcFile { path: path.into(), source })?;
    if let Some(root) = find_tracefs(&mountinfo) {
        return Ok(root);
    }
    let target = PathBuf::from("/sys/kernel/tracing");
    nix::mount::mount(Some("nodev"), &target, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|source| ProbeError::TracefsMount { path: target.clone(), source })?;
    Ok(target)
}

/// Where tracefs is mounted now, without mounting it (for `doctor`, which changes nothing).
pub fn tracefs_mounted() -> Result<Option<PathBuf>, ProbeError> {
    let path = Path::new("/proc/self/mountinfo");
    let mountinfo = fs::read_to_string(path).map_err(|source| ProbeError::ReadProcFile { path: path.into(), source })?;
    Ok(find_tracefs(&mountinfo))
}

/// tracefs itself, or debugfs's `tracing` directory on kernels that only expose it there.
fn find_tracefs(mountinfo: &str) -> Option<PathBuf> {
    let mut debugfs = None;
    for line in mountinfo.lines() {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else { continue };
        let Some(mount_point) = left.split_whitespace().nth(4) else { continue };
        match right.split_whitespace().next() {
            Some("tracefs") => return Some(PathBuf::from(mount_point)),
            Some("debugfs") => debugfs = Some(PathBuf::from(mount_point).join("tracing")),
            _ => {}
        }
    }
    debugfs.filter(|p| p.join("events").is_dir())
}

fn read_event(root: &Path, group: &str, event: &str) -> Result<HashMap<String, Field>, ProbeError> {
    let path = root.join("events").join(group).join(event).join("format");
    let name = format!("{group}/{event}");
    let text = fs::read_to_string(&path).map_err(|source| ProbeError::FormatRead { event: name, path, source })?;
    Ok(parse_format(&text))
}

/// The block part of the offsets; without it only the block probes are unavailable.
pub fn block_offsets(root: &Path, off: &mut TracepointOffsets) -> Result<(), ProbeError> {
    let issue = read_event(root, "block", "block_rq_issue")?;
    let ev = "block/block_rq_issue";
    off.block_issue_dev = require(ev, &issue, "dev", &[4])?.offset;
    off.block_issue_sector = require(ev, &issue, "sector", &[8])?.offset;
    off.block_issue_bytes = require(ev, &issue, "bytes", &[4])?.offset;
    let rwbs = require(ev, &issue, "rwbs", &[8, 10, 12, 16])?;
    off.block_issue_rwbs = rwbs.offset;
    let complete = read_event(root, "block", "block_rq_complete")?;
    let ev = "block/block_rq_complete";
    off.block_complete_dev = require(ev, &complete, "dev", &[4])?.offset;
    off.block_complete_sector = require(ev, &complete, "sector", &[8])?.offset;
    let bio = read_event(root, "block", "block_bio_queue")?;
    let ev = "block/block_bio_queue";
    off.block_bio_dev = require(ev, &bio, "dev", &[4])?.offset;
    off.block_bio_sector = require(ev, &bio, "sector", &[8])?.offset;
    off.block_bio_nr_sector = require(ev, &bio, "nr_sector", &[4])?.offset;
    Ok(())
}

#[cfg(test)]
#[path = "tracefs_tests.rs"]
mod tests;
