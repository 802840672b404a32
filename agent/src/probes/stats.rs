//! The kernel's own accounting of the probes: run time and run count per program
//! (`bpf_prog_info.run_time_ns` / `run_cnt`). The kernel keeps them only while BPF stats are
//! on (`BPF_ENABLE_STATS`, held by an fd, or `sysctl kernel.bpf_stats_enabled=1`); that costs
//! two clock reads per program run, so the agent turns them on only when asked.

use super::Probes;
use std::os::fd::OwnedFd;

/// One program's totals since load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramRunStats {
    pub program: String,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// Whether the kernel is counting, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunStatsStatus {
    Counting,
    Unavailable { reason: String },
}

/// Keeps kernel BPF run-time stats on while it lives (the kernel counts while any such fd is open).
#[derive(Debug)]
pub struct RunStatsGuard {
    _fd: OwnedFd,
}

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Ask the kernel to count (Linux 5.8+, CAP_SYS_ADMIN).
pub fn enable_run_stats() -> Result<RunStatsGuard, String> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map(|fd| RunStatsGuard { _fd: fd })
        .map_err(|e| format!("BPF_ENABLE_STATS refused: {}", super::error_chain(&e)))
}

/// Whether the kernel counts right now without us: the sysctl is on.
pub fn counting_by_sysctl() -> bool {
    std::fs::read_to_string(SYSCTL).is_ok_and(|s| s.trim() == "1")
}

impl Probes {
    /// Run time and count of every loaded program. The figures are only meaningful while
    /// the kernel counts (see [`RunStatsStatus`]); otherwise they stay where they were.
    pub fn run_stats(&self) -> Vec<ProgramRunStats> {
        let mut out: Vec<ProgramRunStats> = self
            .ebpf
            .programs()
            .filter_map(|(name, program)| {
                // Programs of a group that did not attach were never loaded: no info, skipped.
                let info = program.info().ok()?;
                Some(ProgramRunStats { program: name.to_string(), run_time_ns: info.run_time().as_nanos() as u64, run_count: info.run_count() })
            })
            .collect();
        out.sort_by(|a, b| a.program.cmp(&b.program));
        out
    }
}
