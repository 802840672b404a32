//! raw_tp/sched_migrate_task: counted for the migrating task (arg 0), charged to its
//! cgroup at its next switch-out (the migrating task is usually not current).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use super::sched;
use crate::maps::count_error;

#[raw_tracepoint(tracepoint = "sched_migrate_task")]
pub fn sched_migrate_task(ctx: RawTracePointContext) -> u32 {
    match sched::task_state(ctx.arg(0)) {
        Ok(task) => task.pending_migrations += 1,
        Err(slot) => count_error(slot),
    }
    0
}
