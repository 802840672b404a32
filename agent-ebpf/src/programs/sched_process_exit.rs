//! raw_tp/sched_process_exit: the exiting task is current, so what it collected since it
//! switched in (wakeups, migrations) moves to its CPU's pending counters, charged at its
//! final switch-out, and its state is dropped now.

use aya_ebpf::{helpers::bpf_get_current_task, macros::raw_tracepoint, programs::RawTracePointContext};

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
    let cpu = sched::cpu_sched()?;
    if cpu.task == task_key {
        cpu.pending_wakeups += task.pending_wakeups;
        cpu.pending_migrations += task.pending_migrations;
    }
    let _ = TASK_STATE.remove(&task_key);
    Ok(())
}
