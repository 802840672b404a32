//! tp_btf/sched_switch: charges the task switching out (the current task) and remembers
//! the kernel counters of the task switching in (see `sched`).
//!
//! A BTF-enabled raw tracepoint: like a raw tracepoint it skips building the trace record,
//! and its task pointers are typed, so their fields are direct loads. Its arguments are
//! TP_PROTO(bool preempt, prev, next, unsigned int prev_state); prev_state joined in 5.18,
//! so older kernels refuse the attach (reported, not guessed around).
//!
//! Per switch of two tasks of one cgroup this is a handful of loads and stores in the
//! per-CPU state: no helper call, no clock read, no hash lookup. A flush into the
//! per-cgroup maps follows when the outgoing task's cgroup differs from the last one
//! charged on this CPU, and a matrix update when a task waited behind another cgroup.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use super::{
    perf,
    sched::{charge_switch_out, cpu_sched, is_idle, switch_in, task_cgroup},
};
use crate::{globals::perf_enabled, maps::count_error};

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> u32 {
    if let Err(slot) = try_sched_switch(&ctx) {
        count_error(slot);
    }
    0
}

fn try_sched_switch(ctx: &BtfTracePointContext) -> Result<(), u32> {
    let preempt: u64 = ctx.arg(0);
    let prev: *const u8 = ctx.arg(1);
    let next: *const u8 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    // SAFETY: prev and next are the tracepoint's BTF-typed task_struct pointers.
    let prev_is_idle = unsafe { is_idle(prev) };
    // SAFETY: as above. The idle task's cgroup is nobody's: 0, never charged.
    let cgroup = if prev_is_idle { 0 } else { unsafe { task_cgroup(prev) } };

    let mask = perf_enabled();
    if mask != 0 {
        perf::charge_switch(cgroup, !prev_is_idle, mask);
    }
    let cpu = cpu_sched()?;
    let mut result = Ok(());
    if !prev_is_idle {
        // Preempted, or switched out while still runnable (yield).
        let involuntary = preempt != 0 || prev_state == 0;
        // SAFETY: as above.
        result = unsafe { charge_switch_out(cpu, prev, cgroup, involuntary) };
    }
    // SAFETY: as above.
    unsafe { switch_in(cpu, next, cgroup) };
    result
}
