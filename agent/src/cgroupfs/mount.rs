//! Finding the cgroup2 mount and deciding what truce may do on this host.
//!
//! Never assume /sys/fs/cgroup: on hybrid hosts cgroup v2 sits at /sys/fs/cgroup/unified
//! with no controllers, while cgroup v1 owns cpu, memory and io. truce then observes
//! (eBPF cgroup ids still work) but cannot enforce.

use super::CgroupError;
use serde::Serialize;
use std::path::PathBuf;

/// The controllers truce enforces with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Controller {
    Cpu,
    Memory,
    Io,
    Pids,
}

impl Controller {
    pub const ALL: [Controller; 4] = [Controller::Cpu, Controller::Memory, Controller::Io, Controller::Pids];
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Memory => "memory",
            Controller::Io => "io",
            Controller::Pids => "pids",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ControllerState {
    /// Listed in the v2 root's `cgroup.controllers`: truce can enable and write it.
    Enforceable { enabled_at_root: bool },
    /// A cgroup v1 hierarchy owns it; writing it is the host's own management's business.
    OwnedByV1 { mount: PathBuf },
    /// Neither hierarchy offers it (kernel built without it, or disabled on the command line).
    Missing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Probes and cgroup files work; limits cannot be written.
    ObserveOnly,
    /// cpu, memory and io are all enforceable through cgroup v2.
    Enforce,
}

#[derive(Clone, Debug, Serialize)]
pub struct CgroupHost {
    pub mount: PathBuf,
    /// cgroup v1 hierarchies are mounted too.
    pub hybrid: bool,
    pub controllers: Vec<(Controller, ControllerState)>,
    pub mode: Mode,
}

impl CgroupHost {
    pub fn state(&self, c: Controller) -> Option<&ControllerState> {
        self.controllers.iter().find(|(k, _)| *k == c).map(|(_, s)| s)
    }

    /// One plain sentence on what this host allows, for the readiness summary.
    pub fn summary(&self) -> String {
        let list = |want: fn(&ControllerState) -> bool| {
            let names: Vec<&str> = self.controllers.iter().filter(|(_, s)| want(s)).map(|(c, _)| c.name()).collect();
            if names.is_empty() { "none".to_string() } else { names.join(",") }
        };
        let enforce = list(|s| matches!(s, ControllerState::Enforceable { .. }));
        let v1 = list(|s| matches!(s, ControllerState::OwnedByV1 { .. }));
        match self.mode {
            Mode::Enforce => format!("cgroup2 at {}: observe and enforce (controllers: {enforce})", self.mount.display()),
            Mode::ObserveOnly => format!(
                "cgroup2 at {}{}: observe only (enforceable: {enforce}; owned by cgroup v1: {v1})",
                self.mount.display(),
                if self.hybrid { " (hybrid)" } else { "" }
            ),
        }
    }
}

/// Discover from the live system.
pub fn discover() -> Result<CgroupHost, CgroupError> {
    let mountinfo = PathBuf::from("/proc/self/mountinfo");
    let text = std::fs::read_to_string(&mountinfo).map_err(|e| CgroupError::read(mountinfo.clone(), e))?;
    let mounts = parse_mountinfo(&text);
    let v2 = mounts.iter().find(|m| m.fstype == "cgroup2").ok_or(CgroupError::NoCgroup2 { mountinfo })?;
    let controllers_file = v2.mount_point.join("cgroup.controllers");
    let available = std::fs::read_to_string(&controllers_file).map_err(|e| CgroupError::read(controllers_file, e))?;
    let enabled = std::fs::read_to_string(v2.mount_point.join("cgroup.subtree_control")).unwrap_or_default();
    Ok(discover_from(&mounts, &available, &enabled))
}

/// One line of /proc/self/mountinfo, reduced to what discovery needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: String,
}

pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            // Fields: id parent maj:min root mount-point options [optional...] - fstype source super-options
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let _source = r.next();
            let super_options = r.next().unwrap_or("").to_string();
            Some(MountEntry { mount_point: PathBuf::from(unescape_octal(mount_point)), fstype, super_options })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Pure decision from parsed mounts and the v2 root's controller files.
pub fn discover_from(mounts: &[MountEntry], available: &str, enabled: &str) -> CgroupHost {
    let v2_mount = mounts.iter().find(|m| m.fstype == "cgroup2").map(|m| m.mount_point.clone()).unwrap_or_default();
    let v1: Vec<&MountEntry> = mounts.iter().filter(|m| m.fstype == "cgroup").collect();
    let avail: Vec<&str> = available.split_whitespace().collect();
    let on: Vec<&str> = enabled.split_whitespace().collect();
    let controllers: Vec<(Controller, ControllerState)> = Controller::ALL
        .iter()
        .map(|&c| {
            let state = if avail.contains(&c.name()) {
                ControllerState::Enforceable { enabled_at_root: on.contains(&c.name()) }
            } else if let Some(m) = v1.iter().find(|m| owns_v1(m, c)) {
                ControllerState::OwnedByV1 { mount: m.mount_point.clone() }
            } else {
                ControllerState::Missing
            };
            (c, state)
        })
        .collect();
    let enforce = [Controller::Cpu, Controller::Memory, Controller::Io].iter().all(|c| {
        controllers.iter().any(|(k, s)| k == c && matches!(s, ControllerState::Enforceable { .. }))
    });
    CgroupHost {
        mount: v2_mount,
        hybrid: !v1.is_empty(),
        controllers,
        mode: if enforce { Mode::Enforce } else { Mode::ObserveOnly },
    }
}

fn owns_v1(m: &MountEntry, c: Controller) -> bool {
    // v1's io controller is called blkio.
    let name = if c == Controller::Io { "blkio" } else { c.name() };
    m.super_options.split(',').any(|o| o == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const UNIFIED: &str = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

    #[test]
    fn hybrid_host_is_observe_only_and_names_v1_owners() {
        let host = discover_from(&parse_mountinfo(HYBRID), "", "");
        assert_eq!(host.mount, PathBuf::from("/sys/fs/cgroup/unified"));
        assert!(host.hybrid);
        assert_eq!(host.mode, Mode::ObserveOnly);
        assert_eq!(
            host.state(Controller::Io),
            Some(&ControllerState::OwnedByV1 { mount: PathBuf::from("/sys/fs/cgroup/blkio") })
        );
        assert!(host.summary().contains("observe only"), "{}", host.summary());
    }

    #[test]
    fn unified_host_with_controllers_enforces() {
        let host = discover_from(&parse_mountinfo(UNIFIED), "cpuset cpu io memory pids\n", "cpu memory\n");
        assert_eq!(host.mode, Mode::Enforce);
        assert!(!host.hybrid);
        assert_eq!(host.state(Controller::Io), Some(&ControllerState::Enforceable { enabled_at_root: false }));
        assert_eq!(host.state(Controller::Cpu), Some(&ControllerState::Enforceable { enabled_at_root: true }));
    }

    #[test]
    fn unified_host_missing_io_is_observe_only() {
        let host = discover_from(&parse_mountinfo(UNIFIED), "cpu memory pids", "");
        assert_eq!(host.mode, Mode::ObserveOnly);
        assert_eq!(host.state(Controller::Io), Some(&ControllerState::Missing));
    }

    #[test]
    fn mount_points_with_spaces_are_unescaped() {
        let m = parse_mountinfo("1 2 0:1 / /mnt/a\\040b rw - cgroup2 cgroup2 rw\n");
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/a b"));
    }
}
