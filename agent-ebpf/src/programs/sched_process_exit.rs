//! tracepoint/sched/sched_process_exit: the exiting task is current, so charge what it
//! still owes and drop its state now; its final switch-out then finds no state and does
//! not create one.

use aya_ebpf::{helpers::bpf_get_current_cgroup_id, macros::tracepoint, programs::TracePointContext};

use super::{read_field, sched};
use crate::{
    globals::offsets,
    maps::{TASK_STATE, count_error},
};

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    if let Err(slot) = try_sched_process_exit(&ctx) {
        count_error(slot);
    }
    0
}

fn try_sched_process_exit(ctx: &TracePointContext) -> Result<(), u32> {
    let pid: i32 = read_field(ctx, offsets().sched_exit_pid)?;
    let pid = pid as u32;
    let Some(task) = TASK_STATE.get_ptr_mut(&pid) else {
        return Ok(());
    };
    // SAFETY: a live map value for this program run.
    let task = unsafe { &*task };
    let now = sched::now_ns();
    let oncpu = if task.oncpu_since_ns != 0 { now.saturating_sub(task.oncpu_since_ns) } else { 0 };
    // SAFETY: no preconditions; the exiting task is current.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    let charged = sched::charge(cgroup, task, oncpu, sched::Leave::Exit);
    let _ = TASK_STATE.remove(&pid);
    charged
}
