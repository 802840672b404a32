//! tp_btf/sched_migrate_task: the task (arg 0) moves to another CPU. Counted for its
//! cgroup where it happens (the migrating task is usually not current).

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use super::sched::{TaskEvent, count_event};
use crate::maps::count_error;

#[btf_tracepoint(function = "sched_migrate_task")]
pub fn sched_migrate_task(ctx: BtfTracePointContext) -> u32 {
    // SAFETY: arg 0 is the tracepoint's BTF-typed task_struct pointer.
    if let Err(slot) = unsafe { count_event(ctx.arg(0), TaskEvent::Migration) } {
        count_error(slot);
    }
    0
}
