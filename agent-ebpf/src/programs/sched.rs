//! Scheduler accounting shared by the sched_* programs.
//!
//! No per-task map: the kernel already keeps per task what the probes need. At a task's
//! switch-in its `se.sum_exec_runtime` and `sched_info.run_delay` are copied into the
//! CPU's `CpuSched`; at its switch-out (on the same CPU, where it is current and its
//! cgroup is at hand) the differences are its on-CPU time and the run-queue wait it ended
//! at that switch-in (the kernel adds that wait to run_delay in `sched_info_arrive`, just
//! after the sched_switch tracepoint). Field offsets come from the kernel's BTF
//! (`KERNEL_OFFSETS`), and the programs are BTF-enabled raw tracepoints, so the task
//! pointers they get are typed and their fields are plain loads checked by the verifier,
//! not helper calls.
//!
//! Wakeups and migrations happen to tasks that are not current. They are counted right
//! there for the task's own cgroup (read through task->cgroups->dfl_cgrp->kn->id), into
//! the CPU's batch when it holds that cgroup, else into the CPU's event slot.
//!
//! Charging goes to the CPU's batch of the cgroup whose task switched out last; the batch
//! is flushed into `SCHED_STATS` only when a task of another cgroup switches out. Two tasks
//! of one cgroup ping-ponging on a CPU therefore touch no hash map at all.
//!
//! Who delayed whom: the wait is credited to (victim = the waiting task's cgroup,
//! delayer = the cgroup of the task that held the CPU when the victim switched in). This
//! is an approximation: on a busy CPU several tasks may have run during the wait, and only
//! the last one is blamed. Waits that end after the CPU was idle blame nobody (delayer 0 is
//! not recorded), because an idle CPU is wakeup latency, not interference. A cgroup
//! delaying itself goes to the batch too, and reaches its diagonal cell at the flush.
//!
//! What the kernel's run_delay adds up differs from a wakeup-to-switch-in stamp in one
//! case: a waiting task moved to another CPU's queue (load balancing) has the wait on the
//! first queue added to run_delay at that move, while it is off every CPU; that part is
//! not seen here (the per-slice difference cannot see it, and keeping it would need the
//! per-task map this design removes). The wait on the queue it finally ran from is counted.
//!
//! Every scheduler program runs with interrupts off (under the run-queue lock or in
//! __schedule), so they never interleave on one CPU and `CpuSched` needs no lock.

use aya_ebpf::helpers::generated::bpf_probe_read_kernel;
use truce_common::abi::{CpuSched, DelayKey, DelayStats, SchedStats, log2_bucket, probe_error};

use super::upsert;
use crate::{
    globals::kernel_offset,
    maps::{CPU_SCHED, DELAY_MATRIX, SCHED_STATS},
};

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

/// A `T` at `offset` bytes into the kernel object `object` points to.
///
/// # Safety
/// `object` must be a BTF-typed pointer the program got from its context (or a field
/// load of one), and `offset` a `kernel_offset` of a `T`-sized field of that type: the
/// verifier then checks the load against the kernel's BTF and turns it into a
/// fault-tolerant load, so a stale pointer reads garbage instead of faulting.
#[inline(always)]
pub unsafe fn field<T: Copy>(object: *const u8, offset: u32) -> T {
    // SAFETY: as documented above.
    unsafe { core::ptr::read_volatile(object.add(offset as usize).cast::<T>()) }
}

/// The cgroup v2 id of `task` (what bpf_get_current_cgroup_id returns for the current
/// task): task->cgroups->dfl_cgrp->kn->id.
///
/// # Safety
/// `task` is a BTF-typed task_struct pointer (see [`field`]).
#[inline(always)]
pub unsafe fn task_cgroup(task: *const u8) -> u64 {
    // SAFETY: each pointer is a BTF-typed field load of the previous one (see `field`).
    unsafe {
        let css_set: *const u8 = field(task, kernel_offset(|o| &o.task_cgroups));
        let cgroup: *const u8 = field(css_set, kernel_offset(|o| &o.css_set_dfl_cgrp));
        let kn: *const u8 = field(cgroup, kernel_offset(|o| &o.cgroup_kn));
        field(kn, kernel_offset(|o| &o.kernfs_node_id))
    }
}

/// True for a CPU's idle task (pid 0), which neither waits nor delays anyone.
///
/// # Safety
/// `task` is a BTF-typed task_struct pointer (see [`field`]).
#[inline(always)]
pub unsafe fn is_idle(task: *const u8) -> bool {
    // SAFETY: as documented above.
    unsafe { field::<i32>(task, kernel_offset(|o| &o.task_pid)) == 0 }
}

/// This CPU's scheduler state.
#[inline(always)]
pub fn cpu_sched() -> Result<&'static mut CpuSched, u32> {
    match CPU_SCHED.get_ptr_mut(0) {
        // SAFETY: a per-CPU array value, only touched from this CPU by programs that run
        // with interrupts off and so never interleave.
        Some(cpu) => Ok(unsafe { &mut *cpu }),
        None => Err(probe_error::SCHED_STATS_UPDATE),
    }
}

/// `task` takes the CPU (its switch-in; `delayer` held the CPU until now, 0 when idle):
/// remember its kernel counters to measure its slice against at its switch-out.
///
/// # Safety
/// `task` is a BTF-typed task_struct pointer (see [`field`]).
#[inline(always)]
pub unsafe fn switch_in(cpu: &mut CpuSched, task: *const u8, delayer: u64) {
    cpu.task = task as u64;
    cpu.delayer = delayer;
    // SAFETY: as documented above.
    unsafe {
        cpu.exec_in_ns = field(task, kernel_offset(|o| &o.task_sum_exec_runtime));
        cpu.run_delay_in_ns = field(task, kernel_offset(|o| &o.task_run_delay));
    }
}

/// Charge the task leaving this CPU (the current task `task`, of `cgroup`) to the CPU's
/// batch: its on-CPU time since it switched in, the wait it switched in with, and the
/// switch itself.
///
/// # Safety
/// `task` is a BTF-typed task_struct pointer (see [`field`]).
#[inline(always)]
pub unsafe fn charge_switch_out(cpu: &mut CpuSched, task: *const u8, cgroup: u64, involuntary: bool) -> Result<(), u32> {
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
    if cpu.task != task as u64 {
        return result;
    }
    // SAFETY: as documented above.
    let (exec, run_delay): (u64, u64) =
        unsafe { (field(task, kernel_offset(|o| &o.task_sum_exec_runtime)), field(task, kernel_offset(|o| &o.task_run_delay))) };
    batch.on_cpu_ns += exec.saturating_sub(cpu.exec_in_ns);
    let wait = run_delay.saturating_sub(cpu.run_delay_in_ns);
    if wait == 0 {
        return result;
    }
    batch.rq_wait_ns += wait;
    batch.rq_waits += 1;
    if let Some(bucket) = batch.rq_wait_hist.get_mut(log2_bucket(wait)) {
        *bucket += 1;
    }
    let delayer = cpu.delayer;
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

/// Charge the running task (of `cgroup`) its on-CPU time up to `exec` (its
/// sum_exec_runtime now) and restart its slice there (the periodic tick; see
/// `sched_tick`). No switch is counted.
#[inline(always)]
pub fn charge_running(cpu: &mut CpuSched, cgroup: u64, exec: u64) -> Result<(), u32> {
    let mut result = Ok(());
    if cpu.batch_cgroup != cgroup {
        result = flush(cpu);
        cpu.batch_cgroup = cgroup;
    }
    cpu.batch.on_cpu_ns += exec.saturating_sub(cpu.exec_in_ns);
    cpu.exec_in_ns = exec;
    result
}

/// What happened to a task that is (usually) not current.
#[derive(Clone, Copy)]
pub enum TaskEvent {
    Wakeup,
    Migration,
}

/// Count `event` for `task`'s cgroup on this CPU.
///
/// # Safety
/// `task` is a BTF-typed task_struct pointer (see [`field`]).
#[inline(always)]
pub unsafe fn count_event(task: *const u8, event: TaskEvent) -> Result<(), u32> {
    // SAFETY: as documented above.
    let cgroup = unsafe { task_cgroup(task) };
    let cpu = cpu_sched()?;
    if cgroup == cpu.batch_cgroup {
        match event {
            TaskEvent::Wakeup => cpu.batch.wakeups += 1,
            TaskEvent::Migration => cpu.batch.migrations += 1,
        }
        return Ok(());
    }
    let mut result = Ok(());
    if cpu.events_cgroup != cgroup {
        result = flush_events(cpu);
        cpu.events_cgroup = cgroup;
    }
    match event {
        TaskEvent::Wakeup => cpu.events_wakeups += 1,
        TaskEvent::Migration => cpu.events_migrations += 1,
    }
    result
}

/// Move the event slot into `SCHED_STATS` and empty it (counts lost on failure, which is
/// counted, as for `flush`).
#[inline(always)]
fn flush_events(cpu: &mut CpuSched) -> Result<(), u32> {
    let cgroup = cpu.events_cgroup;
    let (wakeups, migrations) = (cpu.events_wakeups, cpu.events_migrations);
    cpu.events_wakeups = 0;
    cpu.events_migrations = 0;
    if cgroup == 0 || (wakeups | migrations) == 0 {
        return Ok(());
    }
    let stats = upsert(&SCHED_STATS, &cgroup, &ZERO_SCHED, probe_error::SCHED_STATS_UPDATE)?;
    stats.wakeups += wakeups;
    stats.migrations += migrations;
    Ok(())
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

/// The current task's sum_exec_runtime, from a program whose context has no BTF-typed
/// task pointer (the perf_event tick): one bpf_probe_read_kernel.
#[inline(always)]
pub fn current_exec_runtime(current: u64) -> Result<u64, u32> {
    let mut exec: u64 = 0;
    let src = (current + u64::from(kernel_offset(|o| &o.task_sum_exec_runtime))) as *const core::ffi::c_void;
    // SAFETY: the helper copies 8 bytes into `exec` and fails cleanly on a bad address.
    let rc = unsafe { bpf_probe_read_kernel((&raw mut exec).cast(), 8, src) };
    if rc < 0 { Err(probe_error::TRACEPOINT_READ) } else { Ok(exec) }
}
