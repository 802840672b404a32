//! Writes stay confined: only cgroups under the configured roots, by canonical path.
//! `..`, symlinks and vanished cgroups are refused with the reason.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfinementError {
    #[error("cgroup path {path:?} is not absolute or contains `..` or `.`")]
    NotNormal { path: String },
    #[error("cgroup {path:?} is outside the configured roots {roots:?}")]
    OutsideRoots { path: String, roots: Vec<String> },
    #[error("cgroup {path:?} does not exist (vanished)")]
    Vanished { path: String },
    #[error("cgroup {path:?} resolves through a symlink to {resolved}")]
    Symlink { path: String, resolved: String },
}

/// True when `path` lies strictly below one of `roots`: a root itself is never written,
/// only the workloads below it.
pub fn under_roots(path: &str, roots: &[String]) -> bool {
    roots.iter().any(|r| {
        let r = r.trim_end_matches('/');
        path.len() > r.len() && path.starts_with(r) && path.as_bytes()[r.len()] == b'/'
    })
}

/// The cgroup2 mount and the subtrees truce may write under (paths relative to the mount).
#[derive(Clone, Debug)]
pub struct Confinement {
    mount: PathBuf,
    roots: Vec<String>,
}

impl Confinement {
    pub fn new(mount: PathBuf, roots: Vec<String>) -> Confinement {
        Confinement { mount, roots }
    }

    /// The directory to write in for `path` (relative to the mount, e.g. `/system.slice/a.service`).
    pub fn resolve(&self, path: &str) -> Result<PathBuf, ConfinementError> {
        let rel = Path::new(path);
        let normal = rel.is_absolute() && rel.components().skip(1).all(|c| matches!(c, Component::Normal(_)));
        if !normal {
            return Err(ConfinementError::NotNormal { path: path.into() });
        }
        if !under_roots(path, &self.roots) {
            return Err(ConfinementError::OutsideRoots { path: path.into(), roots: self.roots.clone() });
        }
        let dir = self.mount.join(path.trim_start_matches('/'));
        let canonical = std::fs::canonicalize(&dir).map_err(|_| ConfinementError::Vanished { path: path.into() })?;
        if canonical != dir {
            return Err(ConfinementError::Symlink { path: path.into(), resolved: canonical.display().to_string() });
        }
        Ok(canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_dotdot_outside_roots_vanished_and_symlinks() {
        let tmp = std::env::temp_dir().join(format!("truce-confine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("work/a")).expect("mkdir");
        std::fs::create_dir_all(tmp.join("other")).expect("mkdir");
        std::os::unix::fs::symlink(tmp.join("other"), tmp.join("work/link")).expect("symlink");
        let c = Confinement::new(tmp.clone(), vec!["/work".into()]);
        assert_eq!(c.resolve("/work/a"), Ok(tmp.join("work/a")));
        assert!(matches!(c.resolve("/work/../other"), Err(ConfinementError::NotNormal { .. })));
        assert!(matches!(c.resolve("work/a"), Err(ConfinementError::NotNormal { .. })));
        assert!(matches!(c.resolve("/work"), Err(ConfinementError::OutsideRoots { .. })));
        assert!(matches!(c.resolve("/workshop/a"), Err(ConfinementError::OutsideRoots { .. })));
        assert!(matches!(c.resolve("/other"), Err(ConfinementError::OutsideRoots { .. })));
        assert!(matches!(c.resolve("/work/gone"), Err(ConfinementError::Vanished { .. })));
        assert!(matches!(c.resolve("/work/link"), Err(ConfinementError::Symlink { .. })));
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
