//! Per-period signals: what the agent's collectors produce and the pure core consumes.
//!
//! A [`HostSample`] holds deltas over one collection period. Signals the host cannot
//! provide are absent (`None`) and listed in [`HostSample::unavailable`] with the reason;
//! nothing is ever filled in with zero or an estimate.

use crate::model::{DeviceId, Timestamp, WorkloadRef};
use serde::{Deserialize, Serialize};

/// Scheduler signals from the eBPF probes, over one period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSignals {
    pub on_cpu_ns: u64,
    pub rq_wait_ns: u64,
    pub rq_waits: u64,
    /// Run-queue wait percentiles from the period's log2 histogram (bucket upper bounds).
    pub rq_wait_p50_ns: Option<u64>,
    pub rq_wait_p99_ns: Option<u64>,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub wakeups: u64,
    pub migrations: u64,
}

impl CpuSignals {
    /// Share of runnable time spent waiting: wait / (run + wait). `None` when idle.
    pub fn rq_delay_share(&self) -> Option<f64> {
        let total = self.on_cpu_ns + self.rq_wait_ns;
        (total > 0).then(|| self.rq_wait_ns as f64 / total as f64)
    }
}

/// Block I/O issued by the workload on one device, over one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceIo {
    pub dev: DeviceId,
    pub read_ops: u64,
    pub read_bytes: u64,
    pub write_ops: u64,
    pub write_bytes: u64,
    pub latency_p50_ns: Option<u64>,
    pub latency_p99_ns: Option<u64>,
    /// Mean issue-to-completion latency; `None` without completions.
    pub latency_mean_ns: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetSignals {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// Hardware counters; present only where the PMU exists.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PerfSignals {
    pub cycles: u64,
    pub instructions: u64,
    pub llc_misses: u64,
}

impl PerfSignals {
    /// Cycles per instruction; `None` without instructions.
    pub fn cpi(&self) -> Option<f64> {
        (self.instructions > 0).then(|| self.cycles as f64 / self.instructions as f64)
    }
    /// LLC misses per thousand instructions.
    pub fn mpki(&self) -> Option<f64> {
        (self.instructions > 0).then(|| self.llc_misses as f64 * 1000.0 / self.instructions as f64)
    }
}

/// One PSI resource (`cpu.pressure`, `memory.pressure`, `io.pressure`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    pub some_avg10: f64,
    pub some_avg60: f64,
    pub some_total_us: u64,
    /// `full` is absent for the CPU at the root on some kernels.
    pub full_avg10: Option<f64>,
    pub full_total_us: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiSignals {
    pub cpu: Option<Pressure>,
    pub memory: Option<Pressure>,
    pub io: Option<Pressure>,
}

/// What the cgroup's own files say, over the period where they are counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupFileSignals {
    /// `cpu.stat usage_usec` delta.
    pub cpu_usage_us: Option<u64>,
    pub cpu_throttled_us: Option<u64>,
    pub cpu_nr_throttled: Option<u64>,
    /// `memory.current` (a level, not a delta).
    pub memory_current: Option<u64>,
    /// `memory.events` deltas.
    pub memory_high_events: Option<u64>,
    pub memory_max_events: Option<u64>,
    pub memory_oom_kills: Option<u64>,
    /// `io.stat` deltas summed over devices.
    pub io_rbytes: Option<u64>,
    pub io_wbytes: Option<u64>,
}

/// Everything measured for one workload in one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSample {
    pub workload: WorkloadRef,
    /// Human name derived from the path: systemd unit, container or pod.
    pub name: String,
    pub cpu: CpuSignals,
    pub io: Vec<DeviceIo>,
    /// `None` where the network probes do not run (turned off, or refused by the kernel):
    /// no traffic is not the same as traffic not measured.
    pub net: Option<NetSignals>,
    pub perf: Option<PerfSignals>,
    pub psi: PsiSignals,
    pub files: CgroupFileSignals,
}

/// One cell of the who-delayed-whom matrix, over one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DelayCell {
    pub victim: u64,
    pub delayer: u64,
    pub wait_ns: u64,
    pub count: u64,
}

/// Host-wide figures from procfs, over the period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostTotals {
    pub cpus: u32,
    /// Busy CPU time across all CPUs (from /proc/stat), in ns.
    pub cpu_busy_ns: u64,
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub psi: PsiSignals,
}

/// A signal the host cannot provide, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailable {
    pub signal: String,
    pub reason: String,
}

/// One collection period on one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    pub at: Timestamp,
    pub period_ms: u64,
    pub totals: HostTotals,
    pub workloads: Vec<WorkloadSample>,
    pub delays: Vec<DelayCell>,
    /// Probe failure counts this period, by name (from the eBPF ERRORS map).
    pub probe_errors: Vec<(String, u64)>,
    pub unavailable: Vec<Unavailable>,
}
