//! raw_tp/sched_switch: charges the task switching out (the current task, so its cgroup is
//! readable) and measures the run-queue wait of the task switching in.
//!
//! A raw tracepoint, not the tracefs one: the hottest hook in the agent, and a raw
//! tracepoint skips building the trace record and needs no field reads at all. Its
//! arguments are TP_PROTO(bool preempt, prev, next, unsigned int prev_state); prev_state
//! joined in 5.18, so older kernels refuse the attach (reported, not guessed around).
//! Tasks are keyed by their task_struct address, which is unique while the task lives.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};

use super::{
    perf,
    sched::{Leave, ZERO_TASK, charge, now_ns, task_state},
};
use crate::{
    globals::perf_enabled,
    maps::{IDLE_TASK, TASK_STATE, count_error},
};

/// TASK_DEAD in the raw task state: the task's last switch.
const TASK_DEAD: u64 = 0x80;

#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn sched_switch(ctx: RawTracePointContext) -> u32 {
    if let Err(slot) = try_sched_switch(&ctx) {
        count_error(slot);
    }
    0
}

fn try_sched_switch(ctx: &RawTracePointContext) -> Result<(), u32> {
    let preempt: u64 = ctx.arg(0);
    let prev: u64 = ctx.arg(1);
    let next: u64 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    let now = now_ns();
    // SAFETY: no preconditions; during sched_switch `current` is still the previous task.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: as above. pid 0 is the per-CPU idle task: it neither waits nor delays anyone.
    let prev_is_idle = unsafe { bpf_get_current_pid_tgid() } as u32 == 0;

    let mask = perf_enabled();
    if mask != 0 {
        perf::charge_switch(cgroup, !prev_is_idle, mask);
    }
    if !prev_is_idle {
        // Preempted, or switched out while still runnable (yield): it waits from now on.
        let runnable = preempt != 0 || prev_state == 0;
        let exiting = prev_state & TASK_DEAD != 0;
        switch_out(prev, runnable, exiting, cgroup, now)?;
    }
    if let Some(idle) = IDLE_TASK.get_ptr_mut(0) {
        // SAFETY: per-CPU array value, only touched from this CPU.
        let idle = unsafe { &mut *idle };
        if prev_is_idle {
            *idle = prev;
        } else if *idle == next {
            return Ok(());
        }
    }
    let delayer = if prev_is_idle { 0 } else { cgroup };
    switch_in(next, delayer, now)
}

#[inline(always)]
fn switch_out(task_key: u64, runnable: bool, exiting: bool, cgroup: u64, now: u64) -> Result<(), u32> {
    let leave = if runnable { Leave::Involuntary } else { Leave::Voluntary };
    match TASK_STATE.get_ptr_mut(&task_key) {
        Some(task) => {
            // SAFETY: a live map value for this program run.
            let task = unsafe { &mut *task };
            let oncpu = if task.oncpu_since_ns != 0 { now.saturating_sub(task.oncpu_since_ns) } else { 0 };
            let charged = charge(cgroup, task, oncpu, leave);
            if exiting {
                let _ = TASK_STATE.remove(&task_key);
            } else {
                task.oncpu_since_ns = 0;
                task.pending_wait_ns = 0;
                task.pending_delayer = 0;
                task.pending_wakeups = 0;
                task.pending_migrations = 0;
                task.enqueued_at_ns = if runnable { now } else { 0 };
            }
            charged
        }
        None => {
            // Unknown task (running since before load, or already charged at exit).
            let charged = charge(cgroup, &ZERO_TASK, 0, leave);
            if runnable && !exiting {
                task_state(task_key)?.enqueued_at_ns = now;
            }
            charged
        }
    }
}

#[inline(always)]
fn switch_in(task_key: u64, delayer: u64, now: u64) -> Result<(), u32> {
    let task = task_state(task_key)?;
    if task.enqueued_at_ns != 0 {
        task.pending_wait_ns += now.saturating_sub(task.enqueued_at_ns);
        task.pending_delayer = delayer;
        task.enqueued_at_ns = 0;
    }
    task.oncpu_since_ns = now;
    Ok(())
}
