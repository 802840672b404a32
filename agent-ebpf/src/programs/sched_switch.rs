//! tracepoint/sched/sched_switch: charges the task switching out (the current task, so its
//! cgroup is readable) and measures the run-queue wait of the task switching in.

use aya_ebpf::{helpers::bpf_get_current_cgroup_id, macros::tracepoint, programs::TracePointContext};

use super::{
    perf,
    read_field,
    sched::{Leave, ZERO_TASK, charge, now_ns, task_state},
};
use crate::{
    globals::{offsets, perf_enabled},
    maps::{TASK_STATE, count_error},
};

/// Bits of `prev_state` that mean the task blocked (TASK_REPORT, 0x7f, plus
/// TASK_REPORT_IDLE, 0x80). Preemption reports 0 or TASK_REPORT_MAX (0x100 on 5.14+),
/// neither of which has these bits.
const BLOCKED_BITS: u64 = 0xff;
/// EXIT_DEAD | EXIT_ZOMBIE as reported in `prev_state`: the task's last switch.
const EXITING_BITS: u64 = 0x10 | 0x20;

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    if let Err(slot) = try_sched_switch(&ctx) {
        count_error(slot);
    }
    0
}

fn try_sched_switch(ctx: &TracePointContext) -> Result<(), u32> {
    let off = offsets();
    let now = now_ns();
    let prev_pid: i32 = read_field(ctx, off.sched_switch_prev_pid)?;
    let next_pid: i32 = read_field(ctx, off.sched_switch_next_pid)?;
    let prev_state: u64 = if off.sched_switch_prev_state_size == 8 {
        read_field::<u64>(ctx, off.sched_switch_prev_state)?
    } else {
        u64::from(read_field::<u32>(ctx, off.sched_switch_prev_state)?)
    };
    // SAFETY: no preconditions; during sched_switch `current` is still the previous task.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };

    let mask = perf_enabled();
    if mask != 0 {
        perf::charge_switch(cgroup, prev_pid != 0, mask);
    }
    // pid 0 is the per-CPU idle task: it neither waits nor delays anyone.
    if prev_pid != 0 {
        switch_out(prev_pid as u32, prev_state, cgroup, now)?;
    }
    if next_pid != 0 {
        let delayer = if prev_pid != 0 { cgroup } else { 0 };
        switch_in(next_pid as u32, delayer, now)?;
    }
    Ok(())
}

#[inline(always)]
fn switch_out(pid: u32, state: u64, cgroup: u64, now: u64) -> Result<(), u32> {
    let exiting = state & EXITING_BITS != 0;
    let preempted = state & BLOCKED_BITS == 0;
    let leave = if preempted { Leave::Involuntary } else { Leave::Voluntary };
    match TASK_STATE.get_ptr_mut(&pid) {
        Some(task) => {
            // SAFETY: a live map value for this program run.
            let task = unsafe { &mut *task };
            let oncpu = if task.oncpu_since_ns != 0 { now.saturating_sub(task.oncpu_since_ns) } else { 0 };
            let charged = charge(cgroup, task, oncpu, leave);
            if exiting {
                let _ = TASK_STATE.remove(&pid);
            } else {
                task.oncpu_since_ns = 0;
                task.pending_wait_ns = 0;
                task.pending_delayer = 0;
                task.pending_wakeups = 0;
                task.pending_migrations = 0;
                // A preempted task is runnable right away: its wait starts now.
                task.enqueued_at_ns = if preempted { now } else { 0 };
            }
            charged
        }
        None => {
            // Unknown task (running since before load, or already charged at exit).
            let charged = charge(cgroup, &ZERO_TASK, 0, leave);
            if preempted && !exiting {
                task_state(pid)?.enqueued_at_ns = now;
            }
            charged
        }
    }
}

#[inline(always)]
fn switch_in(pid: u32, delayer: u64, now: u64) -> Result<(), u32> {
    let task = task_state(pid)?;
    if task.enqueued_at_ns != 0 {
        task.pending_wait_ns += now.saturating_sub(task.enqueued_at_ns);
        task.pending_delayer = delayer;
        task.enqueued_at_ns = 0;
    }
    task.oncpu_since_ns = now;
    Ok(())
}
