//! raw_tp/sched_wakeup: the woken task (arg 0) becomes runnable; its wait starts now.
//! Runs in the waker's context, so the wakeup is kept pending and charged to the wakee's
//! cgroup after its next switch-in. One map access: the stamp and the count share a value.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use super::sched;
use crate::maps::count_error;

#[raw_tracepoint(tracepoint = "sched_wakeup")]
pub fn sched_wakeup(ctx: RawTracePointContext) -> u32 {
    if let Err(slot) = mark_runnable(ctx.arg(0)) {
        count_error(slot);
    }
    0
}

/// Shared with sched_wakeup_new (same TP_PROTO: the task).
#[inline(always)]
pub fn mark_runnable(task_key: u64) -> Result<(), u32> {
    let task = sched::task_state(task_key)?;
    task.enqueued_at_ns = sched::now_ns();
    task.pending_wakeups += 1;
    Ok(())
}
