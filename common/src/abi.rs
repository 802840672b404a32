//! The kernel/user ABI: map keys and values written by `truce-agent-ebpf` and read by the agent.
//!
//! Every type is `#[repr(C)]` with fixed-width fields and explicit padding, and its size is
//! asserted so a change on one side cannot silently shift the other. No `bool`, `usize`,
//! enums or `Option` cross this boundary. Counters are cumulative; the agent computes deltas.

/// Buckets of every log2 latency histogram. Bucket `i` counts values in `[2^i, 2^(i+1))` ns
/// (bucket 0 also holds 0); the last bucket holds everything from `2^31` ns (~2.1 s) up.
pub const HIST_BUCKETS: usize = 32;

/// Index of the log2 bucket for `ns`, written so the eBPF verifier sees a bounded result.
#[inline(always)]
pub fn log2_bucket(ns: u64) -> usize {
    if ns == 0 {
        return 0;
    }
    let b = 63 - ns.leading_zeros() as usize;
    if b >= HIST_BUCKETS { HIST_BUCKETS - 1 } else { b }
}

/// Scheduler counters per cgroup v2 id (per-CPU map value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedStats {
    /// Time the cgroup's tasks spent on a CPU.
    pub on_cpu_ns: u64,
    /// Time the cgroup's tasks spent runnable but waiting for a CPU.
    pub rq_wait_ns: u64,
    /// Number of run-queue waits measured (one per switch-in after a wakeup or preemption).
    pub rq_waits: u64,
    /// Switches out because the task blocked.
    pub voluntary_switches: u64,
    /// Switches out while still runnable (preempted).
    pub involuntary_switches: u64,
    pub wakeups: u64,
    pub migrations: u64,
    pub _reserved: u64,
    /// log2 histogram of run-queue wait, in ns (see [`log2_bucket`]).
    pub rq_wait_hist: [u64; HIST_BUCKETS],
}
const _: () = assert!(core::mem::size_of::<SchedStats>() == 320);

/// Key of the who-delayed-whom matrix: `victim` waited in a run queue while `delayer` held the CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DelayKey {
    pub victim: u64,
    pub delayer: u64,
}
const _: () = assert!(core::mem::size_of::<DelayKey>() == 16);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelayStats {
    pub wait_ns: u64,
    pub count: u64,
}
const _: () = assert!(core::mem::size_of::<DelayStats>() == 16);

/// Per-CPU scheduler state (`CPU_SCHED`, one value per CPU).
///
/// The task switching out of a CPU is always the one that last switched in on that CPU,
/// so what its on-CPU time and run-queue wait are measured against is kept here, read from
/// the kernel's own per-task counters at switch-in: `se.sum_exec_runtime` (what cpu.stat
/// adds up) and `sched_info.run_delay` (what /proc/PID/schedstat reports). The kernel adds
/// the wait a task ends to its run_delay just after the sched_switch tracepoint, so the
/// difference at its switch-out is exactly that wait. No per-task map is needed.
///
/// Counters go to `batch`, which holds one cgroup's unflushed counters and is flushed into
/// `SCHED_STATS` (and its diagonal `DELAY_MATRIX` cell) only when a task of another cgroup
/// switches out on this CPU. Wakeups and migrations are counted where they happen, for the
/// woken or migrated task's cgroup: into `batch` when it is that cgroup, else into the
/// `events_*` slot, flushed when a third cgroup comes along. User space adds both to its
/// snapshots, so totals stay exact.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSched {
    /// task_struct address of the task that last switched in here; 0 before the first switch.
    pub task: u64,
    /// `task`'s se.sum_exec_runtime when it switched in (or at the last tick).
    pub exec_in_ns: u64,
    /// `task`'s sched_info.run_delay when it switched in.
    pub run_delay_in_ns: u64,
    /// Cgroup that held the CPU when `task` switched in (0: the CPU was idle).
    pub delayer: u64,
    /// Cgroup whose counters `batch` holds; 0 when empty.
    pub batch_cgroup: u64,
    /// Number of flushes of `batch` so far (how often the running cgroup changed).
    pub flushes: u64,
    pub batch: SchedStats,
    /// Waits of `batch_cgroup`'s tasks behind its own tasks: the diagonal matrix cell.
    pub batch_self_delay: DelayStats,
    /// Cgroup (not `batch_cgroup`) whose wakeups and migrations the next two fields hold;
    /// 0 when empty.
    pub events_cgroup: u64,
    pub events_wakeups: u64,
    pub events_migrations: u64,
    pub _reserved: u64,
}
const _: () = assert!(core::mem::size_of::<CpuSched>() == 416);

/// Byte offsets of the kernel fields the scheduler programs read, taken from the kernel's
/// BTF (/sys/kernel/btf/vmlinux) at load time, so no kernel's layout is hard-coded.
/// Nested members are flattened (`task_run_delay` is task_struct.sched_info.run_delay).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// task_struct.pid (pid_t): 0 is a CPU's idle task.
    pub task_pid: u32,
    /// task_struct.cgroups (struct css_set *).
    pub task_cgroups: u32,
    /// task_struct.se.sum_exec_runtime (u64, ns on a CPU).
    pub task_sum_exec_runtime: u32,
    /// task_struct.sched_info.run_delay (unsigned long long, ns waiting on a run queue).
    pub task_run_delay: u32,
    /// css_set.dfl_cgrp (struct cgroup *, the cgroup v2 one).
    pub css_set_dfl_cgrp: u32,
    /// cgroup.kn (struct kernfs_node *).
    pub cgroup_kn: u32,
    /// kernfs_node.id (u64: the cgroup id, i.e. the directory's inode).
    pub kernfs_node_id: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 32);

/// Byte offsets of the kernel fields the BTF-typed block_rq_complete reads (see agent-ebpf
/// `block_rq_complete_btf`), from the kernel's BTF. Apart from [`KernelOffsets`] because a
/// BTF without them (not seen on any kernel the agent loads on, 5.18+) loses only that
/// program: the classic tracepoint takes its place.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockKernelOffsets {
    /// request.__sector (sector_t, u64).
    pub request_sector: u32,
    /// request.q (struct request_queue *).
    pub request_q: u32,
    /// request_queue.disk (struct gendisk *).
    pub queue_disk: u32,
    /// gendisk.major (int).
    pub disk_major: u32,
    /// gendisk.first_minor (int).
    pub disk_first_minor: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(core::mem::size_of::<BlockKernelOffsets>() == 32);

/// Block I/O counters per issuing cgroup and device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    pub cgroup_id: u64,
    /// Kernel `dev_t` (major << 20 | minor).
    pub dev: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<BlockKey>() == 16);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStats {
    pub read_ops: u64,
    pub read_bytes: u64,
    pub write_ops: u64,
    pub write_bytes: u64,
    /// Flushes, discards and other requests that move no data.
    pub other_ops: u64,
    /// Sum of issue-to-completion latency, in ns.
    pub latency_ns: u64,
    pub latency_hist: [u64; HIST_BUCKETS],
}
const _: () = assert!(core::mem::size_of::<BlockStats>() == 304);

/// A request between issue and completion, keyed by device and start sector.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InflightKey {
    pub dev: u32,
    pub _pad: u32,
    pub sector: u64,
}
const _: () = assert!(core::mem::size_of::<InflightKey>() == 16);

/// Who queued a bio, and where it ends, keyed by its (device, start sector) until a request
/// starting there is issued. The end carries the cgroup over to the rest of a bio the
/// block layer split into several requests (see the block_rq_issue program).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BioOrigin {
    pub cgroup_id: u64,
    /// First sector after the bio.
    pub end_sector: u64,
}
const _: () = assert!(core::mem::size_of::<BioOrigin>() == 16);

/// Operation kinds in [`InflightRq::op`].
pub const BLOCK_OP_READ: u32 = 0;
pub const BLOCK_OP_WRITE: u32 = 1;
pub const BLOCK_OP_OTHER: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InflightRq {
    pub issued_at_ns: u64,
    pub cgroup_id: u64,
    pub bytes: u32,
    pub op: u32,
}
const _: () = assert!(core::mem::size_of::<InflightRq>() == 24);

/// Network counters per cgroup, from cgroup_skb programs on the cgroup2 root.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}
const _: () = assert!(core::mem::size_of::<NetStats>() == 32);

/// Hardware counter deltas charged to the cgroup that was running (only when a PMU exists).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerfStats {
    pub cycles: u64,
    pub instructions: u64,
    pub llc_misses: u64,
    pub _reserved: u64,
}
const _: () = assert!(core::mem::size_of::<PerfStats>() == 32);

/// Indices into the per-CPU `ERRORS` array. Never renumber; append.
pub mod probe_error {
    /// No longer raised: the per-task map it counted failures of is gone (the scheduler
    /// programs read the kernel's own per-task counters). Kept so no slot is renumbered.
    pub const TASK_STATE_UPDATE: u32 = 0;
    pub const SCHED_STATS_UPDATE: u32 = 1;
    pub const DELAY_UPDATE: u32 = 2;
    pub const TRACEPOINT_READ: u32 = 3;
    pub const BLOCK_INFLIGHT_UPDATE: u32 = 4;
    pub const BLOCK_STATS_UPDATE: u32 = 5;
    pub const BLOCK_UNMATCHED_COMPLETION: u32 = 6;
    pub const NET_STATS_UPDATE: u32 = 7;
    pub const PERF_READ: u32 = 8;
    pub const PERF_STATS_UPDATE: u32 = 9;
    pub const BLOCK_BIO_ORIGIN_UPDATE: u32 = 10;
    /// Slots in the `ERRORS` array.
    pub const SLOTS: u32 = 16;
    /// Human names, indexed like the constants above.
    pub const NAMES: [&str; 11] = [
        "task_state_update",
        "sched_stats_update",
        "delay_update",
        "tracepoint_read",
        "block_inflight_update",
        "block_stats_update",
        "block_unmatched_completion",
        "net_stats_update",
        "perf_read",
        "perf_stats_update",
        "block_bio_origin_update",
    ];
}

/// Bits of the `PERF_ENABLED` global: which perf event arrays hold an opened counter.
/// The slot names say which hardware counter the agent puts there; a test may put a
/// software clock into the cycles slot to exercise the same attribution path.
pub mod perf_slot {
    pub const CYCLES: u32 = 1;
    pub const INSTRUCTIONS: u32 = 2;
    pub const LLC_MISSES: u32 = 4;
}

/// Byte offsets of the tracepoint fields the programs read, taken from
/// `/sys/kernel/tracing/events/<group>/<event>/format` at load time, so no kernel's layout is
/// hard-coded. Sizes are recorded where they differ between kernels.
///
/// The `sched_*` fields are not read by the programs any more: the scheduler probes became
/// BTF-typed tracepoints (their arguments are the TP_PROTO, not the record). They stay so the
/// layout does not shift.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointOffsets {
    pub sched_switch_prev_pid: u32,
    pub sched_switch_prev_state: u32,
    /// 4 or 8: `prev_state` changed from int to long across kernels.
    pub sched_switch_prev_state_size: u32,
    pub sched_switch_next_pid: u32,
    pub sched_wakeup_pid: u32,
    pub sched_migrate_pid: u32,
    pub sched_exit_pid: u32,
    pub block_issue_dev: u32,
    pub block_issue_sector: u32,
    pub block_issue_bytes: u32,
    pub block_issue_rwbs: u32,
    pub block_complete_dev: u32,
    pub block_complete_sector: u32,
    pub block_bio_dev: u32,
    pub block_bio_sector: u32,
    /// Was padding; the layout is unchanged.
    pub block_bio_nr_sector: u32,
}
const _: () = assert!(core::mem::size_of::<TracepointOffsets>() == 64);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: every type below is #[repr(C)], made only of fixed-width integers and arrays of
    // them, with explicit padding fields, so any bit pattern is valid and there are no holes.
    unsafe impl aya::Pod for SchedStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DelayKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DelayStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BlockKernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CpuSched {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BlockKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BlockStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for InflightKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for InflightRq {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BioOrigin {}
    // SAFETY: as above.
    unsafe impl aya::Pod for NetStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PerfStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TracepointOffsets {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_bucket_bounds() {
        assert_eq!(log2_bucket(0), 0);
        assert_eq!(log2_bucket(1), 0);
        assert_eq!(log2_bucket(2), 1);
        assert_eq!(log2_bucket(3), 1);
        assert_eq!(log2_bucket(1024), 10);
        assert_eq!(log2_bucket(u64::MAX), HIST_BUCKETS - 1);
        assert_eq!(log2_bucket(1 << 31), 31);
    }
}
