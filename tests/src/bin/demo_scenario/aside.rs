//! The demo harness out of the workloads' way while it measures them.
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// This harness, moved out of the root cgroup into one of its own at `cpu.weight` 1 for the
/// demo's phases, and back (and the cgroup removed) when dropped. Left in the root cgroup, its
/// once-a-second poll (the agent's status, the knobs, a console line) competed with the
/// workloads at a full weight and showed up as the victim's slowest requests in every phase
/// with the agent (`--trace`, session 10). The instrument should not be a neighbour.
pub struct StepAside {
    dir: PathBuf,
    /// The cgroup this process was in, to go back to.
    home: PathBuf,
}

impl StepAside {
    pub fn new(mount: &Path) -> Result<StepAside> {
        let home = mount.join(truce_tests::cgroups::own_cgroup()?.trim_start_matches('/'));
        let dir = mount.join("truce-harness");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("cpu.weight"), "1").with_context(|| format!("writing 1 to {}/cpu.weight", dir.display()))?;
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).with_context(|| format!("moving this harness into {}", dir.display()))?;
        Ok(StepAside { dir, home })
    }
}

impl Drop for StepAside {
    fn drop(&mut self) {
        let _ = std::fs::write(self.home.join("cgroup.procs"), std::process::id().to_string());
        let _ = std::fs::remove_dir(&self.dir);
    }
}
