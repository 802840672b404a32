//! What a stage of the daemon's period costs in CPU time on the thread that ran it. Logged
//! with the period (debug): under a contended CPU the wall time of a stage says how long it
//! waited, its thread CPU time what it took from the workloads it serves.

use std::time::Duration;

/// CPU time this thread has used so far (CLOCK_THREAD_CPUTIME_ID).
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into memory we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// A stage's CPU time on the current thread, from `start` to `micros`.
#[derive(Clone, Copy, Debug)]
pub struct CpuSpan(Option<Duration>);

impl CpuSpan {
    pub fn start() -> CpuSpan {
        CpuSpan(thread_cpu_time())
    }

    /// Microseconds of this thread's CPU since `start` (0 when the clock is unreadable).
    pub fn micros(&self) -> u64 {
        match (self.0, thread_cpu_time()) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_micros() as u64,
            _ => 0,
        }
    }
}
