//! raw_tp/sched_switch: charges the task switching out (the current task, so its cgroup is
//! readable) and measures the run-queue wait of the task switching in.
//!
//! A raw tracepoint, not the tracefs one: the hottest hook in the agent, and a raw
//! tracepoint skips building the trace record and needs no field reads at all. Its
//! arguments are TP_PROTO(bool preempt, prev, next, unsigned int prev_state); prev_state
//! joined in 5.18, so older kernels refuse the attach (reported, not guessed around).
//! Tasks are keyed by their task_struct address, which is unique while the task lives.
//!
//! Per switch of two ordinary tasks this costs one hash lookup (the incoming task's
//! state), plus one when the outgoing task was preempted (its wait starts now), plus a
//! flush into the per-cgroup maps when the outgoing task's cgroup differs from the last
//! one charged on this CPU (see `sched`).

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use truce_common::abi::CpuSched;

use super::{
    perf,
    sched::{charge_switch_out, cpu_sched, now_ns, task_state},
};
use crate::{
    globals::perf_enabled,
    maps::{TASK_STATE, count_error},
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
    // pid 0 is the per-CPU idle task: it neither waits nor delays anyone.
    let prev_is_idle = bpf_get_current_pid_tgid() as u32 == 0;

    let mask = perf_enabled();
    if mask != 0 {
        perf::charge_switch(cgroup, !prev_is_idle, mask);
    }
    let cpu = cpu_sched()?;
    let mut result = Ok(());
    if prev_is_idle {
        cpu.idle_task = prev;
    } else {
        // Preempted, or switched out while still runnable (yield): it waits from now on.
        let runnable = preempt != 0 || prev_state == 0;
        result = charge_switch_out(cpu, prev, cgroup, runnable, now);
        if runnable && prev_state & TASK_DEAD == 0 {
            match task_state(prev) {
                Ok(task) => task.enqueued_at_ns = now,
                Err(slot) => result = Err(slot),
            }
        }
    }
    let delayer = if prev_is_idle { 0 } else { cgroup };
    switch_in(cpu, next, delayer, now).and(result)
}

/// `next` takes the CPU: remember it and when, and take over the wait it ends now and the
/// wakeups and migrations it collected while off the CPU. A task with no state has not
/// been woken or preempted since load, so it has nothing pending and gets no entry.
#[inline(always)]
fn switch_in(cpu: &mut CpuSched, next: u64, delayer: u64, now: u64) -> Result<(), u32> {
    cpu.task = next;
    cpu.switched_in_ns = now;
    cpu.pending_wait_ns = 0;
    cpu.pending_delayer = 0;
    cpu.pending_wakeups = 0;
    cpu.pending_migrations = 0;
    if next == cpu.idle_task {
        return Ok(());
    }
    let Some(task) = TASK_STATE.get_ptr_mut(&next) else {
        return Ok(());
    };
    // SAFETY: a live map value for this program run (hash values are freed only after an
    // RCU grace period).
    let task = unsafe { &mut *task };
    if task.enqueued_at_ns != 0 {
        cpu.pending_wait_ns = now.saturating_sub(task.enqueued_at_ns);
        cpu.pending_delayer = delayer;
        task.enqueued_at_ns = 0;
    }
    if task.pending_wakeups | task.pending_migrations != 0 {
        cpu.pending_wakeups = task.pending_wakeups;
        cpu.pending_migrations = task.pending_migrations;
        task.pending_wakeups = 0;
        task.pending_migrations = 0;
    }
    Ok(())
}
