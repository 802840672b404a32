//! Scheduler accounting shared by the sched_* tracepoints.
//!
//! Without CO-RE a program can read only the *current* task's cgroup
//! (bpf_get_current_cgroup_id). A task's run-queue wait ends when it switches in, when the
//! current task is still the one switching out. So the wait is measured at switch-in, kept
//! in the task's `TaskState` (keyed by task_struct address), and charged to the task's own cgroup at its
//! next switch-out, when it is current. On-CPU time is charged at the same moment.
//!
//! Who delayed whom: the wait is credited to (victim = the waiting task's cgroup,
//! delayer = the cgroup of the task that held the CPU when the victim switched in). This
//! is an approximation: on a busy CPU several tasks may have run during the wait, and only
//! the last one is blamed. Waits that end after the CPU was idle blame nobody (delayer 0 is
//! not recorded), because an idle CPU is wakeup latency, not interference.
//!
//! `TaskState` is shared between CPUs without a lock (bpf_spin_lock is not allowed in
//! tracing programs): a task is woken, migrated and switched by at most one CPU at a time,
//! except in rare migration windows, where a race costs one mis-measured wait.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use truce_common::abi::{DelayKey, DelayStats, SchedStats, TaskState, log2_bucket, probe_error};

use super::upsert;
use crate::maps::{DELAY_MATRIX, SCHED_STATS, TASK_STATE};

pub static ZERO_SCHED: SchedStats = SchedStats {
    on_cpu_ns: 0,
    rq_wait_ns: 0,
    rq_waits: 0,
    voluntary_switches: 0,
    involuntary_switches: 0,
    wakeups: 0,
    migrations: 0,
    _reserved: 0,
    rq_wait_hist: [0; truce_common::abi::HIST_BUCKETS],
};
static ZERO_DELAY: DelayStats = DelayStats { wait_ns: 0, count: 0 };
pub static ZERO_TASK: TaskState = TaskState {
    enqueued_at_ns: 0,
    oncpu_since_ns: 0,
    pending_wait_ns: 0,
    pending_delayer: 0,
    pending_wakeups: 0,
    pending_migrations: 0,
};

/// How a task left the CPU, for the switch counters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Not a switch (the task is exiting and is charged early).
    Exit,
    Voluntary,
    Involuntary,
}

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Charge a task's on-CPU time and its pending wait, wakeups and migrations to `cgroup`.
#[inline(always)]
pub fn charge(cgroup: u64, task: &TaskState, oncpu_ns: u64, leave: Leave) -> Result<(), u32> {
    let stats = upsert(&SCHED_STATS, &cgroup, &ZERO_SCHED, probe_error::SCHED_STATS_UPDATE)?;
    stats.on_cpu_ns += oncpu_ns;
    match leave {
        Leave::Voluntary => stats.voluntary_switches += 1,
        Leave::Involuntary => stats.involuntary_switches += 1,
        Leave::Exit => {}
    }
    stats.wakeups += u64::from(task.pending_wakeups);
    stats.migrations += u64::from(task.pending_migrations);
    let wait = task.pending_wait_ns;
    if wait == 0 {
        return Ok(());
    }
    stats.rq_wait_ns += wait;
    stats.rq_waits += 1;
    if let Some(bucket) = stats.rq_wait_hist.get_mut(log2_bucket(wait)) {
        *bucket += 1;
    }
    if task.pending_delayer != 0 {
        let key = DelayKey { victim: cgroup, delayer: task.pending_delayer };
        let cell = upsert(&DELAY_MATRIX, &key, &ZERO_DELAY, probe_error::DELAY_UPDATE)?;
        cell.wait_ns += wait;
        cell.count += 1;
    }
    Ok(())
}

/// The task's state (keyed by task_struct address), created empty when absent.
#[inline(always)]
pub fn task_state(task_key: u64) -> Result<&'static mut TaskState, u32> {
    if let Some(state) = TASK_STATE.get_ptr_mut(&task_key) {
        // SAFETY: the pointer is a live map value for this program run (hash values are
        // freed only after an RCU grace period).
        return Ok(unsafe { &mut *state });
    }
    let _ = TASK_STATE.insert(&task_key, &ZERO_TASK, 1);
    match TASK_STATE.get_ptr_mut(&task_key) {
        // SAFETY: as above.
        Some(state) => Ok(unsafe { &mut *state }),
        None => Err(probe_error::TASK_STATE_UPDATE),
    }
}
