//! One file per attach point; shared bookkeeping in `sched` (scheduler accounting),
//! `perf` (counter deltas) and `net` (skb counting).

mod block_bio_queue;
mod block_rq_complete;
mod block_rq_complete_btf;
mod block_rq_issue;
mod net;
mod net_egress;
mod net_ingress;
mod perf;
mod sched;
mod sched_migrate_task;
mod sched_switch;
mod sched_tick;
mod sched_wakeup;
mod sched_wakeup_new;

use aya_ebpf::{maps::PerCpuHashMap, programs::TracePointContext};
use truce_common::abi::probe_error;

/// The monotonic clock (the block programs' request latency; the scheduler needs none).
#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

/// Read a tracepoint field at an offset taken from the tracefs format file.
#[inline(always)]
fn read_field<T>(ctx: &TracePointContext, offset: u32) -> Result<T, u32> {
    // SAFETY: the offset comes from the kernel's own format file for this tracepoint, and
    // bpf_probe_read_kernel (used by read_at) fails cleanly instead of faulting.
    unsafe { ctx.read_at::<T>(offset as usize) }.map_err(|_| probe_error::TRACEPOINT_READ)
}

/// The value for `key` on this CPU, created from `zero` when absent. `zero` is a static so
/// large values do not use up the 512-byte eBPF stack.
#[inline(always)]
fn upsert<K, V>(
    map: &PerCpuHashMap<K, V>,
    key: &K,
    zero: &'static V,
    slot: u32,
) -> Result<&'static mut V, u32> {
    if let Some(value) = map.get_ptr_mut(key) {
        // SAFETY: a per-CPU map value is only written from this CPU; the pointer stays valid
        // for the program run because per-CPU hash entries are only freed after an RCU
        // grace period.
        return Ok(unsafe { &mut *value });
    }
    // BPF_NOEXIST: another program on this CPU (an interrupt) may have created it first;
    // the lookup below then finds that entry.
    let _ = map.insert(key, zero, 1);
    match map.get_ptr_mut(key) {
        // SAFETY: as above.
        Some(value) => Ok(unsafe { &mut *value }),
        None => Err(slot),
    }
}
