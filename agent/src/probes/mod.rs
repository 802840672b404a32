//! Loads and owns the eBPF probes of `truce-agent-ebpf`.
//!
//! [`spawn`] starts the one owner of `aya::Ebpf` and returns a [`ProbeHandle`] usable from
//! tokio: `snapshot()` returns cumulative per-cgroup counters ([`ProbeSnapshot`]),
//! `forget()` drops vanished cgroups from the maps, `shutdown()` detaches everything.
//! [`Probes`] is the same owner as a plain synchronous value, for tools and tests.
//! [`Capabilities`] says which probe groups attached and whether perf counters exist
//! (never zeros when they do not).

mod batch;
mod btf;
mod error;
mod load;
mod perf;
mod privilege;
mod skipped;
mod snapshot;
mod stats;
mod task;
mod tracefs;

pub use error::ProbeError;
pub use privilege::{effective_caps, missing as missing_privileges};
pub use load::{BLOCK_SIGNAL, BlockCompletion, Capabilities, CompletionProbe, NET_SIGNAL, GroupStatus, ProbeConfig, ProbeGroups, Probes, cgroup2_mount, error_chain, measured, turned_off_reason};
pub use perf::{PerfMode, PerfStatus, hardware_status};
pub use skipped::skipped_runs_label;
pub use snapshot::ProbeSnapshot;
pub use stats::{ProgramRunStats, RunStatsGuard, RunStatsStatus, counting_by_sysctl, enable_run_stats};
pub use task::{ProbeHandle, spawn};
pub use tracefs::{Field, parse_format, tracefs_mounted};
