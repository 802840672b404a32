//! tp_btf/sched_wakeup_new: a new task (arg 0) is runnable for the first time; counted as
//! a wakeup of its cgroup, like sched_wakeup.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use super::sched::{TaskEvent, count_event};
use crate::maps::count_error;

#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> u32 {
    // SAFETY: arg 0 is the tracepoint's BTF-typed task_struct pointer.
    if let Err(slot) = unsafe { count_event(ctx.arg(0), TaskEvent::Wakeup) } {
        count_error(slot);
    }
    0
}
