//! Generated samples for the pure core's unit tests (1 s periods, 2 CPUs).

use truce_common::model::{Timestamp, WorkloadId, WorkloadRef};
use truce_common::signal::{
    CgroupFileSignals, CpuSignals, DelayCell, HostSample, HostTotals, NetSignals, PsiSignals, WorkloadSample,
};

pub const PERIOD_MS: u64 = 1000;

/// A workload that ran `on_ms` and waited `wait_ms` in the run queue this period.
pub fn workload(id: u64, name: &str, on_ms: u64, wait_ms: u64) -> WorkloadSample {
    WorkloadSample {
        workload: WorkloadRef { id: WorkloadId(id), path: format!("/test.slice/{name}") },
        name: name.to_string(),
        cpu: CpuSignals {
            on_cpu_ns: on_ms * 1_000_000,
            rq_wait_ns: wait_ms * 1_000_000,
            rq_waits: 100,
            rq_wait_p50_ns: Some(wait_ms * 10_000),
            rq_wait_p99_ns: Some(wait_ms * 100_000),
            ..CpuSignals::default()
        },
        io: Vec::new(),
        net: Some(NetSignals::default()),
        perf: None,
        psi: PsiSignals::default(),
        files: CgroupFileSignals::default(),
    }
}

/// Period number `t` (1 s each) with these workloads and delay cells.
pub fn host(t: u64, workloads: Vec<WorkloadSample>, delays: Vec<DelayCell>) -> HostSample {
    let busy: u64 = workloads.iter().map(|w| w.cpu.on_cpu_ns).sum();
    HostSample {
        at: Timestamp(1_700_000_000_000 + t * PERIOD_MS),
        period_ms: PERIOD_MS,
        totals: HostTotals { cpus: 2, cpu_busy_ns: busy, ..HostTotals::default() },
        workloads,
        delays,
        probe_errors: Vec::new(),
        unavailable: Vec::new(),
    }
}
