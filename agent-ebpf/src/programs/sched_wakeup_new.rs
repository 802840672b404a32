//! tracepoint/sched/sched_wakeup_new: a new task is runnable for the first time.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::{read_field, sched_wakeup::mark_runnable};
use crate::{globals::offsets, maps::count_error};

#[tracepoint]
pub fn sched_wakeup_new(ctx: TracePointContext) -> u32 {
    if let Err(slot) = try_sched_wakeup_new(&ctx) {
        count_error(slot);
    }
    0
}

fn try_sched_wakeup_new(ctx: &TracePointContext) -> Result<(), u32> {
    // sched_wakeup and sched_wakeup_new share the sched_wakeup_template layout; the loader
    // checks that the pid offsets agree.
    let pid: i32 = read_field(ctx, offsets().sched_wakeup_pid)?;
    mark_runnable(pid as u32)
}
