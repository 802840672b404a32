//! raw_tp/sched_process_exit: the exiting task is current, so charge what it still owes
//! and drop its state now; its final switch-out then finds no state and creates none.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_task},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};

use super::sched;
use crate::maps::{TASK_STATE, count_error};

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(_ctx: RawTracePointContext) -> u32 {
    if let Err(slot) = try_sched_process_exit() {
        count_error(slot);
    }
    0
}

fn try_sched_process_exit() -> Result<(), u32> {
    // SAFETY: no preconditions; the exiting task is current.
    let task_key = unsafe { bpf_get_current_task() };
    let Some(task) = TASK_STATE.get_ptr_mut(&task_key) else {
        return Ok(());
    };
    // SAFETY: a live map value for this program run.
    let task = unsafe { &*task };
    let now = sched::now_ns();
    let oncpu = if task.oncpu_since_ns != 0 { now.saturating_sub(task.oncpu_since_ns) } else { 0 };
    // SAFETY: no preconditions; the exiting task is current.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    let charged = sched::charge(cgroup, task, oncpu, sched::Leave::Exit);
    let _ = TASK_STATE.remove(&task_key);
    charged
}
