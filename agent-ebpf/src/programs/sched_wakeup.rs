//! tp_btf/sched_wakeup: the woken task (arg 0) becomes runnable. Runs in the waker's
//! context, so the wakeup is counted for the woken task's cgroup read from its task_struct
//! (see `sched::count_event`). Its wait needs no stamp: the kernel's run_delay has it.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use super::sched::{TaskEvent, count_event};
use crate::maps::count_error;

#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> u32 {
    // SAFETY: arg 0 is the tracepoint's BTF-typed task_struct pointer.
    if let Err(slot) = unsafe { count_event(ctx.arg(0), TaskEvent::Wakeup) } {
        count_error(slot);
    }
    0
}
