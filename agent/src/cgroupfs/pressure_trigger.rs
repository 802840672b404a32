//! PSI triggers ("Monitoring for pressure thresholds" in the kernel's psi.rst): write
//! `some <stall µs> <window µs>` to a cgroup's `*.pressure` file, keep it open, and the kernel
//! raises POLLPRI on it when the cgroup's stall time in any such window passes the threshold.
//! The daemon uses them to sample at the onset of contention instead of up to a period later.
//!
//! The kernel bounds the window to 500 ms ..= 10 s and rate-limits one event per window per
//! trigger. Each cgroup with a trigger gets the kernel's `psimon` poller, so the daemon arms
//! only the workloads it may enforce.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The kernel's bounds on a trigger's window.
pub const MIN_WINDOW: Duration = Duration::from_millis(500);
pub const MAX_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("{path}: the stall threshold ({stall:?}) must be above 0 and below the window ({window:?}), and the window within 500 ms..=10 s")]
    Bounds { path: PathBuf, stall: Duration, window: Duration },
    #[error("cannot open {path} for a PSI trigger")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel refused the PSI trigger on {path} (PSI disabled, or a kernel before 5.2?)")]
    Refused {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot poll the PSI trigger on {path}")]
    Poll {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a wait on a trigger ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerEvent {
    /// The stall passed the threshold within the window.
    Fired,
    /// The file reports an error: its cgroup was removed. The trigger is dead.
    Gone,
}

/// One armed trigger; the kernel drops it when this is dropped (the file closes).
#[derive(Debug)]
pub struct PressureTrigger {
    fd: AsyncFd<File>,
    path: PathBuf,
}

impl PressureTrigger {
    /// Arm a `some` trigger on `file` (e.g. `<cgroup>/cpu.pressure`). Needs a tokio runtime.
    pub fn arm(file: &Path, stall: Duration, window: Duration) -> Result<PressureTrigger, TriggerError> {
        let path = file.to_path_buf();
        if stall.is_zero() || stall >= window || !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
            return Err(TriggerError::Bounds { path, stall, window });
        }
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(file)
            .map_err(|source| TriggerError::Open { path: path.clone(), source })?;
        // One write: the kernel parses the whole buffer, nul-terminated as psi.rst's example.
        let spec = format!("some {} {}\0", stall.as_micros(), window.as_micros());
        f.write_all(spec.as_bytes()).map_err(|source| TriggerError::Refused { path: path.clone(), source })?;
        // SAFETY: the File owns its descriptor and the AsyncFd owns the File, so the descriptor
        // stays open and the same for as long as it is registered.
        let fd = unsafe { AsyncFd::register_with_interest(f, Interest::PRIORITY) }
            .map_err(|e| TriggerError::Poll { path: path.clone(), source: e.into_parts().1 })?;
        Ok(PressureTrigger { fd, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wait for the next event. Readiness is edge-triggered, so a removed cgroup reports
    /// `Gone` once rather than spinning.
    pub async fn next(&self) -> Result<TriggerEvent, TriggerError> {
        let mut guard = self.fd.ready(Interest::PRIORITY).await.map_err(|source| TriggerError::Poll { path: self.path.clone(), source })?;
        let ready = guard.ready();
        guard.clear_ready();
        if ready.is_error() {
            return Ok(TriggerEvent::Gone);
        }
        Ok(TriggerEvent::Fired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounds_are_checked_before_the_kernel_sees_them() {
        let f = Path::new("/nonexistent/cpu.pressure");
        for (stall, window) in [(0, 500), (600, 500), (10, 400), (10, 11_000)] {
            let e = PressureTrigger::arm(f, Duration::from_millis(stall), Duration::from_millis(window)).expect_err("out of bounds");
            assert!(matches!(e, TriggerError::Bounds { .. }), "{stall}/{window}: {e}");
        }
        let e = PressureTrigger::arm(f, Duration::from_millis(50), Duration::from_millis(500)).expect_err("no such file");
        assert!(matches!(e, TriggerError::Open { .. }), "{e}");
    }
}
