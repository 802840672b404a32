//! Every map of the probes. Names are the statics' names and must match
//! `truce_common::names` (a privileged test checks that each one resolves after load).
//! Counters are cumulative and per CPU, so the hot path never takes a lock or an atomic.

use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray, PerCpuHashMap, PerfEventArray},
};
use truce_common::abi::{
    BioOrigin, BlockKey, BlockStats, CpuSched, DelayKey, DelayStats, InflightKey, InflightRq, NetStats, PerfStats,
    SchedStats, probe_error,
};

/// Cgroups tracked at once per map; the agent deletes entries of vanished cgroups.
const MAX_CGROUPS: u32 = 16_384;

/// cgroup id -> scheduler counters of its tasks.
#[map]
pub static SCHED_STATS: PerCpuHashMap<u64, SchedStats> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// (victim cgroup, delayer cgroup) -> run-queue wait the victim spent while the delayer
/// held the CPU: the raw interference matrix.
#[map]
pub static DELAY_MATRIX: PerCpuHashMap<DelayKey, DelayStats> =
    PerCpuHashMap::with_max_entries(65_536, 0);

/// (issuing cgroup, device) -> block I/O counters.
#[map]
pub static BLOCK_STATS: PerCpuHashMap<BlockKey, BlockStats> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// (device, sector) -> request issued but not yet completed. LRU, so requests whose
/// completion we never see cannot fill it.
#[map]
pub static BLOCK_INFLIGHT: LruHashMap<InflightKey, InflightRq> =
    LruHashMap::with_max_entries(16_384, 0);

/// (device, sector) of a queued bio -> cgroup id of the task that queued it and the bio's
/// end, consumed at block_rq_issue. LRU: bios merged into a larger request leave entries
/// nobody consumes.
#[map]
pub static BLOCK_BIO_ORIGIN: LruHashMap<InflightKey, BioOrigin> = LruHashMap::with_max_entries(16_384, 0);

/// cgroup id -> network counters from the cgroup_skb programs.
#[map]
pub static NET_STATS: PerCpuHashMap<u64, NetStats> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// cgroup id -> hardware counter deltas charged while its tasks ran.
#[map]
pub static PERF_STATS: PerCpuHashMap<u64, PerfStats> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// One counter fd per CPU (size set by the loader to the number of CPUs); only read,
/// never used for output.
#[map]
pub static PERF_CYCLES: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
pub static PERF_INSTRUCTIONS: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
pub static PERF_LLC_MISSES: PerfEventArray<u32> = PerfEventArray::new(0);

/// The counter readings at the last switch on this CPU, to charge deltas.
#[map]
pub static PERF_LAST: PerCpuArray<PerfStats> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scheduler state: the task on it, that task's kernel counters at switch-in,
/// and the batched counters of the running cgroup and of one other (see `truce_common::abi::CpuSched`). A per-CPU array lookup
/// is inlined by the verifier, so it costs no helper call.
#[map]
pub static CPU_SCHED: PerCpuArray<CpuSched> = PerCpuArray::with_max_entries(1, 0);

/// Probe failures by `truce_common::abi::probe_error` index.
#[map]
pub static ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(probe_error::SLOTS, 0);

/// Count one probe failure; never logs, so it is safe on every hot path.
#[inline(always)]
pub fn count_error(slot: u32) {
    if let Some(counter) = ERRORS.get_ptr_mut(slot) {
        // SAFETY: the pointer comes from a per-CPU array lookup, so no other CPU writes it.
        // A softirq program (cgroup_skb) interrupting a tracepoint program on the same CPU
        // can at worst lose one increment, which is acceptable for an error counter.
        unsafe { *counter += 1 };
    }
}
