//! raw_tp/sched_wakeup_new: a new task (arg 0) is runnable for the first time.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use super::sched_wakeup::mark_runnable;
use crate::maps::count_error;

#[raw_tracepoint(tracepoint = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: RawTracePointContext) -> u32 {
    if let Err(slot) = mark_runnable(ctx.arg(0)) {
        count_error(slot);
    }
    0
}
