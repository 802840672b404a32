//! Map, program and global names, used by both the eBPF programs and the loader.
//!
//! A privileged test checks that every name here resolves after load, so a rename
//! on one side cannot silently detach a probe.

/// Per-CPU hash: cgroup id -> [`crate::abi::SchedStats`].
pub const SCHED_STATS: &str = "SCHED_STATS";
/// Per-CPU hash: [`crate::abi::DelayKey`] -> [`crate::abi::DelayStats`] (who delayed whom).
pub const DELAY_MATRIX: &str = "DELAY_MATRIX";
/// Per-CPU hash: [`crate::abi::BlockKey`] -> [`crate::abi::BlockStats`].
pub const BLOCK_STATS: &str = "BLOCK_STATS";
/// Hash: [`crate::abi::InflightKey`] -> [`crate::abi::InflightRq`], requests issued but not completed.
pub const BLOCK_INFLIGHT: &str = "BLOCK_INFLIGHT";
/// LRU hash: [`crate::abi::InflightKey`] -> cgroup id of the task that queued the bio.
/// block_rq_issue may run in a kworker (e.g. under mq-deadline), so the submitter's cgroup
/// is captured at block_bio_queue, which runs in the submitter's context.
pub const BLOCK_BIO_ORIGIN: &str = "BLOCK_BIO_ORIGIN";
/// Per-CPU hash: cgroup id -> [`crate::abi::NetStats`].
pub const NET_STATS: &str = "NET_STATS";
/// Per-CPU hash: cgroup id -> [`crate::abi::PerfStats`].
pub const PERF_STATS: &str = "PERF_STATS";
/// Perf event arrays, one fd per CPU, opened by the agent when the PMU has the event.
pub const PERF_CYCLES: &str = "PERF_CYCLES";
pub const PERF_INSTRUCTIONS: &str = "PERF_INSTRUCTIONS";
pub const PERF_LLC_MISSES: &str = "PERF_LLC_MISSES";
/// Per-CPU array: last counter readings per CPU, to charge deltas at each switch.
pub const PERF_LAST: &str = "PERF_LAST";
/// Per-CPU array of one [`crate::abi::CpuSched`]: the task on the CPU, its pending wait, and
/// the running cgroup's unflushed scheduler counters (added to every snapshot).
pub const CPU_SCHED: &str = "CPU_SCHED";
/// Per-CPU array indexed by [`crate::abi::ProbeError`]: probe failures, never logged on a hot path.
pub const ERRORS: &str = "ERRORS";

/// Program names (the function names in agent-ebpf). The scheduler ones are BTF-enabled
/// raw tracepoints named after the kernel tracepoint they attach to.
pub const PROG_SCHED_SWITCH: &str = "sched_switch";
pub const PROG_SCHED_WAKEUP: &str = "sched_wakeup";
pub const PROG_SCHED_WAKEUP_NEW: &str = "sched_wakeup_new";
pub const PROG_SCHED_MIGRATE: &str = "sched_migrate_task";
/// 10 Hz per-CPU clock charging the running task's on-CPU time (a perf_event program).
pub const PROG_SCHED_TICK: &str = "sched_tick";
pub const PROG_BLOCK_BIO_QUEUE: &str = "block_bio_queue";
pub const PROG_BLOCK_ISSUE: &str = "block_rq_issue";
pub const PROG_BLOCK_COMPLETE: &str = "block_rq_complete";
/// The BTF-typed block_rq_complete, attached instead of the classic one where the kernel's
/// BTF has the fields it reads.
pub const PROG_BLOCK_COMPLETE_BTF: &str = "block_rq_complete_btf";
pub const PROG_NET_INGRESS: &str = "net_ingress";
pub const PROG_NET_EGRESS: &str = "net_egress";

/// Every map the loader must find after load.
pub const ALL_MAPS: &[&str] = &[
    SCHED_STATS,
    DELAY_MATRIX,
    BLOCK_STATS,
    BLOCK_INFLIGHT,
    BLOCK_BIO_ORIGIN,
    NET_STATS,
    PERF_STATS,
    PERF_CYCLES,
    PERF_INSTRUCTIONS,
    PERF_LLC_MISSES,
    PERF_LAST,
    CPU_SCHED,
    ERRORS,
];

/// Every program the loader must find after load.
pub const ALL_PROGRAMS: &[&str] = &[
    PROG_SCHED_SWITCH,
    PROG_SCHED_WAKEUP,
    PROG_SCHED_WAKEUP_NEW,
    PROG_SCHED_MIGRATE,
    PROG_SCHED_TICK,
    PROG_BLOCK_BIO_QUEUE,
    PROG_BLOCK_ISSUE,
    PROG_BLOCK_COMPLETE,
    PROG_BLOCK_COMPLETE_BTF,
    PROG_NET_INGRESS,
    PROG_NET_EGRESS,
];

/// Globals set by the loader (`EbpfLoader::set_global`) before load.
pub mod globals {
    /// [`crate::abi::TracepointOffsets`] read from tracefs `format` files.
    pub const OFFSETS: &str = "OFFSETS";
    /// [`crate::abi::KernelOffsets`] read from the kernel's BTF.
    pub const KERNEL_OFFSETS: &str = "KERNEL_OFFSETS";
    /// [`crate::abi::BlockKernelOffsets`] read from the kernel's BTF (zeros when absent).
    pub const BLOCK_KERNEL_OFFSETS: &str = "BLOCK_KERNEL_OFFSETS";
    /// Bit mask (`crate::abi::perf_slot`) of the perf event arrays that hold opened
    /// counters; 0 when there is no PMU, so the programs never read an empty array.
    pub const PERF_ENABLED: &str = "PERF_ENABLED";
}
