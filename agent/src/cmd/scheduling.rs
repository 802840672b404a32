//! The scheduling policy of the agent's own threads (`cpu_policy`).
//!
//! The agent works in bursts: every period (and at a pressure onset) a sample, a decision and
//! a report pass through several threads, each waking the next. Under SCHED_OTHER every such
//! wakeup may preempt whatever runs, and a latency-sensitive workload that was running waits
//! for the agent's slice. Measured in the benchmark VM (docs/benchmarks.md, mitigation runs
//! 33–36), a stand-in daemon that only spins the agent's CPU in bursts cost the victim about
//! what the agent does, whatever the daemons' `cpu.weight`. SCHED_BATCH keeps the weight
//! (under contention the agent still gets its share, so a reaction is not starved) and takes
//! away only the wakeup preemption: the kernel lets a batch task preempt nobody on wakeup, it
//! runs when the CPU frees or when the tick finds it owed time.

use crate::config::CpuPolicy;
use std::io;

/// Put every thread of this process under `policy`; threads created later inherit it from
/// the thread that creates them. Returns how many threads were set.
pub fn apply(policy: CpuPolicy) -> io::Result<usize> {
    let kernel_policy = match policy {
        CpuPolicy::Batch => libc::SCHED_BATCH,
        CpuPolicy::Normal => libc::SCHED_OTHER,
    };
    let param = libc::sched_param { sched_priority: 0 };
    let mut set = 0;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) else { continue };
        // SAFETY: sched_setscheduler(2) on a thread of this process, with a parameter that
        // outlives the call. It keeps the thread's nice value.
        if unsafe { libc::sched_setscheduler(tid, kernel_policy, &param) } != 0 {
            let err = io::Error::last_os_error();
            // A thread that exited since the directory was read is no error.
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(err);
            }
            continue;
        }
        set += 1;
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy the calling thread runs under, as the kernel reports it.
    fn current() -> io::Result<libc::c_int> {
        // SAFETY: sched_getscheduler(2) on the calling thread; no memory is passed.
        let policy = unsafe { libc::sched_getscheduler(0) };
        if policy < 0 { Err(io::Error::last_os_error()) } else { Ok(policy) }
    }

    #[test]
    fn every_thread_and_the_threads_spawned_after_take_the_policy() {
        let early = std::thread::spawn(|| std::thread::park_timeout(std::time::Duration::from_secs(5)));
        let set = apply(CpuPolicy::Batch).expect("SCHED_BATCH needs no privilege");
        assert!(set >= 2, "this thread and the parked one: {set}");
        assert_eq!(current().expect("policy"), libc::SCHED_BATCH);
        let later = std::thread::spawn(|| current().expect("policy")).join().expect("thread");
        assert_eq!(later, libc::SCHED_BATCH, "a thread spawned afterwards inherits it");
        early.thread().unpark();
        early.join().expect("thread");
        apply(CpuPolicy::Normal).expect("back to SCHED_OTHER");
        assert_eq!(current().expect("policy"), libc::SCHED_OTHER);
    }
}
