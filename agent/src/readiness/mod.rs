//! Startup checks: can this host run the agent, what can it observe, what can it enforce,
//! and how to close each gap. `gather` reads the host (the only I/O); `assess` is a pure
//! function of those facts, so every verdict is unit-tested without the host; `render`
//! prints the doctor report and logs the daemon's one-line summary.
//!
//! The daemon logs the summary on start; `truce-agent doctor` prints the same checks with
//! the fix for each gap and exits non-zero only when the agent cannot run at all.

mod assess;
mod gather;
mod render;

pub use assess::{MIN_KERNEL, TESTED_KERNELS, assess, parse_kernel};
pub use gather::{ConfigFacts, gather};
pub use render::{log_summary, report_text};

use crate::cgroupfs::CgroupHost;
use crate::probes::{Capabilities, PerfStatus};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The daemon's start-up summary, from the probes it has loaded (logged, never printed).
pub fn announce(loaded: &Capabilities, config: &Path, host: Option<&str>) {
    log_summary(&assess(&gather(Some(Ok(loaded.clone())), Some((config, host)))));
}

/// What `gather` read from the host; the only input of [`assess`].
#[derive(Clone, Debug)]
pub struct HostFacts {
    /// `uname -r`, or empty when unknown.
    pub kernel_release: String,
    /// /sys/kernel/btf/vmlinux exists.
    pub btf: bool,
    /// cgroup v2 discovery, or why it failed.
    pub cgroup: Result<CgroupHost, String>,
    /// Where tracefs is mounted (None: not mounted), or why that could not be read.
    pub tracefs: Result<Option<PathBuf>, String>,
    /// /proc/pressure exists.
    pub psi: bool,
    /// kernel.perf_event_paranoid; Debian's 3 refuses perf_event_open without CAP_SYS_ADMIN.
    pub perf_event_paranoid: Option<i64>,
    /// The effective capability mask (CapEff), None when /proc/self/status is unreadable.
    pub effective_caps: Option<u64>,
    /// What loading the probes gave: None when not tried (missing privileges).
    pub probes: Option<Result<Capabilities, String>>,
    /// The hardware counters, from the loaded probes or a separate attempt.
    pub pmu: PerfStatus,
    /// The daemon's configuration, when one was given.
    pub config: Option<ConfigFacts>,
}

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    /// The agent runs, but something is not observed or not enforced.
    Gap,
    /// The agent cannot run.
    Blocking,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Gap => "gap",
            Level::Blocking => "BLOCKING",
        }
    }
}

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub finding: String,
    /// What to do about it (always set for gaps and blocking findings).
    pub fix: Option<String>,
}

/// Everything the checks concluded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub checks: Vec<Check>,
    /// Signal groups the agent will observe.
    pub observes: Vec<String>,
    /// Signal groups it will not, each with the reason.
    pub not_observed: Vec<(String, String)>,
    /// cgroup v2 controllers it can write (empty: observe-only).
    pub enforces: Vec<String>,
    /// Where it may write (enforce.roots), when a config was given.
    pub roots: Vec<String>,
}

impl Readiness {
    /// False when a blocking finding means `truce-agent run` cannot start.
    pub fn can_run(&self) -> bool {
        self.checks.iter().all(|c| c.level != Level::Blocking)
    }

    pub fn gaps(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.level != Level::Ok)
    }
}
