//! tracepoint/sched/sched_wakeup: the woken task becomes runnable; its wait starts now.
//! Runs in the waker's context, so the wakeup is kept pending and charged to the wakee's
//! cgroup at its next switch-out.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::{read_field, sched};
use crate::{globals::offsets, maps::count_error};

#[tracepoint]
pub fn sched_wakeup(ctx: TracePointContext) -> u32 {
    if let Err(slot) = try_sched_wakeup(&ctx) {
        count_error(slot);
    }
    0
}

fn try_sched_wakeup(ctx: &TracePointContext) -> Result<(), u32> {
    let pid: i32 = read_field(ctx, offsets().sched_wakeup_pid)?;
    mark_runnable(pid as u32)
}

/// Shared with sched_wakeup_new (same event class, same layout).
#[inline(always)]
pub fn mark_runnable(pid: u32) -> Result<(), u32> {
    if pid == 0 {
        return Ok(());
    }
    let task = sched::task_state(pid)?;
    task.enqueued_at_ns = sched::now_ns();
    task.pending_wakeups += 1;
    Ok(())
}
