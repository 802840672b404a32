//! tracepoint/sched/sched_migrate_task: counted for the migrating task, charged to its
//! cgroup at its next switch-out (the migrating task is usually not current).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use super::{read_field, sched};
use crate::{globals::offsets, maps::count_error};

#[tracepoint]
pub fn sched_migrate_task(ctx: TracePointContext) -> u32 {
    if let Err(slot) = try_sched_migrate_task(&ctx) {
        count_error(slot);
    }
    0
}

fn try_sched_migrate_task(ctx: &TracePointContext) -> Result<(), u32> {
    let pid: i32 = read_field(ctx, offsets().sched_migrate_pid)?;
    if pid == 0 {
        return Ok(());
    }
    sched::task_state(pid as u32)?.pending_migrations += 1;
    Ok(())
}
