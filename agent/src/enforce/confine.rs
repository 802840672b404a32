//! Writes stay confined: only cgroups under the configured roots, by canonical path.
//! `..`, symlinks and vanished cgroups are refused with the reason, and so are the agent's own
//! cgroup and the cgroups above it: with `roots = ["/system.slice"]` the agent's unit is one of
//! the services below the root, and a cut to it (or to a slice holding it) would throttle the
//! agent that has to react and revert.

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
    #[error("cgroup {path:?} holds truce-agent itself ({own}): the agent never limits itself")]
    HoldsAgent { path: String, own: String },
}

/// True when `path` lies strictly below one of `roots`: a root itself is never written,
/// only the workloads below it.
pub fn under_roots(path: &str, roots: &[String]) -> bool {
    roots.iter().any(|r| {
        let r = r.trim_end_matches('/');
        path.len() > r.len() && path.starts_with(r) && path.as_bytes()[r.len()] == b'/'
    })
}

/// True when `path` is the cgroup `own` or one above it (paths relative to the mount).
pub fn holds(path: &str, own: &str) -> bool {
    let path = path.trim_end_matches('/');
    own == path || (own.starts_with(path) && own.as_bytes().get(path.len()) == Some(&b'/'))
}

/// Which cgroups this agent may manage: those under the roots, except its own cgroup and the
/// ones above it.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub roots: Vec<String>,
    /// The agent's own cgroup (the `0::` line of /proc/self/cgroup), when known.
    pub own: Option<String>,
}

impl Scope {
    pub fn new(roots: Vec<String>, own: Option<String>) -> Scope {
        Scope { roots, own }
    }

    /// This process's scope: its cgroup read from /proc/self/cgroup (unknown when unreadable,
    /// which is logged: then only the roots confine).
    pub fn for_this_process(roots: Vec<String>) -> Scope {
        let own = match std::fs::read_to_string("/proc/self/cgroup") {
            Ok(text) => text.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim().to_owned()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /proc/self/cgroup: the agent cannot tell its own cgroup from a workload's");
                None
            }
        };
        Scope { roots, own }
    }

    /// True for a workload this agent may bid for and write to.
    pub fn manages(&self, path: &str) -> bool {
        under_roots(path, &self.roots) && !self.holds_agent(path)
    }

    /// True when `path` is the agent's own cgroup or one above it.
    pub fn holds_agent(&self, path: &str) -> bool {
        self.own.as_deref().is_some_and(|own| holds(path, own))
    }
}

/// The cgroup2 mount and the subtrees truce may write under (paths relative to the mount).
#[derive(Clone, Debug)]
pub struct Confinement {
    mount: PathBuf,
    scope: Scope,
}

impl Confinement {
    pub fn new(mount: PathBuf, scope: Scope) -> Confinement {
        Confinement { mount, scope }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The directory to write a new value in for `path` (relative to the mount, e.g.
    /// `/system.slice/a.service`).
    pub fn resolve(&self, path: &str) -> Result<PathBuf, ConfinementError> {
        let dir = self.resolve_restore(path)?;
        match &self.scope.own {
            Some(own) if self.scope.holds_agent(path) => Err(ConfinementError::HoldsAgent { path: path.into(), own: own.clone() }),
            _ => Ok(dir),
        }
    }

    /// The directory to write a journaled original back in: the agent's own cgroup is not
    /// refused here, since undoing a write is always allowed (a journal from a version
    /// that did not know its own cgroup may hold one).
    pub fn resolve_restore(&self, path: &str) -> Result<PathBuf, ConfinementError> {
        let rel = Path::new(path);
        let normal = rel.is_absolute() && rel.components().skip(1).all(|c| matches!(c, Component::Normal(_)));
        if !normal {
            return Err(ConfinementError::NotNormal { path: path.into() });
        }
        if !under_roots(path, &self.scope.roots) {
            return Err(ConfinementError::OutsideRoots { path: path.into(), roots: self.scope.roots.clone() });
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
        let c = Confinement::new(tmp.clone(), Scope::new(vec!["/work".into()], None));
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

    #[test]
    fn the_agents_own_cgroup_and_those_above_it_are_never_managed_nor_written() {
        let tmp = std::env::temp_dir().join(format!("truce-confine-own-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("system.slice/truce.slice/truce-agent.service")).expect("mkdir");
        std::fs::create_dir_all(tmp.join("system.slice/web.service")).expect("mkdir");
        let scope = Scope::new(vec!["/system.slice".into()], Some("/system.slice/truce.slice/truce-agent.service".into()));
        assert!(scope.manages("/system.slice/web.service"));
        assert!(!scope.manages("/system.slice/truce.slice/truce-agent.service"), "its own cgroup");
        assert!(!scope.manages("/system.slice/truce.slice"), "a slice holding it");
        assert!(scope.manages("/system.slice/truce.slice2"), "a name that merely starts the same");
        let c = Confinement::new(tmp.clone(), scope);
        assert_eq!(c.resolve("/system.slice/web.service"), Ok(tmp.join("system.slice/web.service")));
        assert!(matches!(c.resolve("/system.slice/truce.slice/truce-agent.service"), Err(ConfinementError::HoldsAgent { .. })));
        assert!(matches!(c.resolve("/system.slice/truce.slice"), Err(ConfinementError::HoldsAgent { .. })));
        assert!(c.resolve_restore("/system.slice/truce.slice").is_ok(), "an original may always be written back");
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
