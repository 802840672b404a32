//! Scheduler accounting shared by the sched_* tracepoints.
//!
//! Without CO-RE a program can read only the *current* task's cgroup
//! (bpf_get_current_cgroup_id). A task's run-queue wait ends when it switches in, when the
//! current task is still the one switching out; it is charged to the task's own cgroup at
//! its next switch-out, when it is current. That switch-out is on the same CPU, so the wait
//! waits in the CPU's `CpuSched`, not per task; so does the switch-in time, from which the
//! on-CPU time follows. Per task only what happens while it is off the CPU is kept: when
//! its wait began (wakeup or preemption) and its wakeups and migrations.
//!
//! Charging goes to the CPU's batch of the cgroup whose task switched out last; the batch
//! is flushed into `SCHED_STATS` only when a task of another cgroup switches out. Two tasks
//! of one cgroup ping-ponging on a CPU therefore touch no hash map at switch-out at all.
//!
//! Who delayed whom: the wait is credited to (victim = the waiting task's cgroup,
//! delayer = the cgroup of the task that held the CPU when the victim switched in). This
//! is an approximation: on a busy CPU several tasks may have run during the wait, and only
//! the last one is blamed. Waits that end after the CPU was idle blame nobody (delayer 0 is
//! not recorded), because an idle CPU is wakeup latency, not interference. A cgroup
//! delaying itself goes to the batch too, and reaches its diagonal cell at the flush.
//!
//! `TaskState` is shared between CPUs without a lock (bpf_spin_lock is not allowed in
//! tracing programs): a task is woken, migrated and switched by at most one CPU at a time,
//! except in rare migration windows, where a race costs one mis-measured wait.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use truce_common::abi::{CpuSched, DelayKey, DelayStats, SchedStats, TaskState, log2_bucket, probe_error};

use super::upsert;
use crate::maps::{CPU_SCHED, DELAY_MATRIX, SCHED_STATS, TASK_STATE};

static ZERO_SCHED: SchedStats = SchedStats {
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
static ZERO_TASK: TaskState = TaskState { enqueued_at_ns: 0, pending_wakeups: 0, pending_migrations: 0 };

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// This CPU's scheduler state.
#[inline(always)]
pub fn cpu_sched() -> Result<&'static mut CpuSched, u32> {
    match CPU_SCHED.get_ptr_mut(0) {
        // SAFETY: a per-CPU array value, only touched from this CPU (scheduler tracepoints
        // run with preemption off and do not nest with each other).
        Some(cpu) => Ok(unsafe { &mut *cpu }),
        None => Err(probe_error::SCHED_STATS_UPDATE),
    }
}

/// Charge the task leaving this CPU (the current task, of `cgroup`) to the CPU's batch:
/// its on-CPU time since it switched in, the wait it switched in with, its wakeups and
/// migrations, and the switch itself.
#[inline(always)]
pub fn charge_switch_out(cpu: &mut CpuSched, task_key: u64, cgroup: u64, involuntary: bool, now: u64) -> Result<(), u32> {
    let mut result = Ok(());
    if cpu.batch_cgroup != cgroup {
        result = flush(cpu);
        cpu.batch_cgroup = cgroup;
    }
    let batch = &mut cpu.batch;
    if involuntary {
        batch.involuntary_switches += 1;
    } else {
        batch.voluntary_switches += 1;
    }
    // Before the first switch after load the CPU's task is unknown: nothing to charge.
    if cpu.task != task_key {
        return result;
    }
    if cpu.switched_in_ns != 0 {
        batch.on_cpu_ns += now.saturating_sub(cpu.switched_in_ns);
    }
    batch.wakeups += u64::from(cpu.pending_wakeups);
    batch.migrations += u64::from(cpu.pending_migrations);
    let wait = cpu.pending_wait_ns;
    if wait == 0 {
        return result;
    }
    batch.rq_wait_ns += wait;
    batch.rq_waits += 1;
    if let Some(bucket) = batch.rq_wait_hist.get_mut(log2_bucket(wait)) {
        *bucket += 1;
    }
    let delayer = cpu.pending_delayer;
    if delayer == cgroup {
        cpu.batch_self_delay.wait_ns += wait;
        cpu.batch_self_delay.count += 1;
    } else if delayer != 0 {
        let key = DelayKey { victim: cgroup, delayer };
        match upsert(&DELAY_MATRIX, &key, &ZERO_DELAY, probe_error::DELAY_UPDATE) {
            Ok(cell) => {
                cell.wait_ns += wait;
                cell.count += 1;
            }
            Err(slot) => result = Err(slot),
        }
    }
    result
}

/// Charge the running task (of `cgroup`) its on-CPU time up to `now` and restart its slice
/// there (the periodic tick; see `sched_tick`). No switch is counted.
#[inline(always)]
pub fn charge_running(cpu: &mut CpuSched, cgroup: u64, now: u64) -> Result<(), u32> {
    let mut result = Ok(());
    if cpu.batch_cgroup != cgroup {
        result = flush(cpu);
        cpu.batch_cgroup = cgroup;
    }
    cpu.batch.on_cpu_ns += now.saturating_sub(cpu.switched_in_ns);
    cpu.switched_in_ns = now;
    result
}

/// Move the batch into `SCHED_STATS` (and the diagonal `DELAY_MATRIX` cell) and empty it.
/// On failure the batch is still emptied: its counts are lost and the error is counted,
/// as an update failure always was.
#[inline(always)]
fn flush(cpu: &mut CpuSched) -> Result<(), u32> {
    let cgroup = cpu.batch_cgroup;
    if cgroup == 0 {
        return Ok(());
    }
    cpu.flushes += 1;
    let batch = &mut cpu.batch;
    let mut result = Ok(());
    match upsert(&SCHED_STATS, &cgroup, &ZERO_SCHED, probe_error::SCHED_STATS_UPDATE) {
        Ok(stats) => {
            stats.on_cpu_ns += batch.on_cpu_ns;
            stats.voluntary_switches += batch.voluntary_switches;
            stats.involuntary_switches += batch.involuntary_switches;
            stats.wakeups += batch.wakeups;
            stats.migrations += batch.migrations;
            if batch.rq_waits != 0 {
                stats.rq_wait_ns += batch.rq_wait_ns;
                stats.rq_waits += batch.rq_waits;
                for (total, add) in stats.rq_wait_hist.iter_mut().zip(batch.rq_wait_hist.iter()) {
                    *total += *add;
                }
            }
        }
        Err(slot) => result = Err(slot),
    }
    if batch.rq_waits != 0 {
        batch.rq_wait_ns = 0;
        batch.rq_waits = 0;
        for bucket in batch.rq_wait_hist.iter_mut() {
            *bucket = 0;
        }
    }
    batch.on_cpu_ns = 0;
    batch.voluntary_switches = 0;
    batch.involuntary_switches = 0;
    batch.wakeups = 0;
    batch.migrations = 0;

    let own = cpu.batch_self_delay;
    if own.count != 0 {
        cpu.batch_self_delay = DelayStats { wait_ns: 0, count: 0 };
        let key = DelayKey { victim: cgroup, delayer: cgroup };
        match upsert(&DELAY_MATRIX, &key, &ZERO_DELAY, probe_error::DELAY_UPDATE) {
            Ok(cell) => {
                cell.wait_ns += own.wait_ns;
                cell.count += own.count;
            }
            Err(slot) => result = Err(slot),
        }
    }
    result
}

/// The task's state (keyed by task_struct address), created empty when absent.
#[inline(always)]
pub fn task_state(task_key: u64) -> Result<&'static mut TaskState, u32> {
    if let Some(state) = TASK_STATE.get_ptr_mut(&task_key) {
        // SAFETY: the pointer is a live map value for this program run (hash values are
        // freed only after an RCU grace period).
        return Ok(unsafe { &mut *state });
    }
    // BPF_NOEXIST: a wakeup on another CPU may have created it meanwhile.
    let _ = TASK_STATE.insert(&task_key, &ZERO_TASK, 1);
    match TASK_STATE.get_ptr_mut(&task_key) {
        // SAFETY: as above.
        Some(state) => Ok(unsafe { &mut *state }),
        None => Err(probe_error::TASK_STATE_UPDATE),
    }
}
