//! raw_tp/sched_process_free: the task_struct (arg 0) is about to be freed, so its address
//! may be reused. Its state was normally dropped at exit; a migration between exit and the
//! final switch can re-create it, and this keeps such entries from filling TASK_STATE.
//! Runs once per task, off the scheduler hot path.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use crate::maps::TASK_STATE;

#[raw_tracepoint(tracepoint = "sched_process_free")]
pub fn sched_process_free(ctx: RawTracePointContext) -> u32 {
    let task_key: u64 = ctx.arg(0);
    // Absent (the usual case, removed at exit) is not an error.
    let _ = TASK_STATE.remove(&task_key);
    0
}
