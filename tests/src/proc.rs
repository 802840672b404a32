//! A child process the tests and the demo start: its output in a log file, signalled and
//! waited for by PID, its CPU time read from /proc, and killed on drop.

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process we started, with its output in a log file. Killed on drop.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path, cgroup: Option<&Path>) -> Result<Proc> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null());
        if let Some(cg) = cgroup {
            let procs = cg.join("cgroup.procs");
            // SAFETY: between fork and exec only a write(2) to a file: async-signal-safe
            // enough for std's pre_exec contract (no allocation happens in the child).
            let procs_c = std::ffi::CString::new(procs.as_os_str().as_encoded_bytes())?;
            unsafe {
                cmd.pre_exec(move || {
                    let fd = libc::open(procs_c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Proc {
            name: name.to_string(),
            log: log.to_path_buf(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// CPU time it has used so far (user + system, all threads), from /proc/PID/stat.
    pub fn cpu_time(&self) -> Option<Duration> {
        let (user, system) = self.stat_ticks()?;
        Some(ticks_to_duration(user + system))
    }

    /// (user, system) CPU time so far, all threads: how much of a daemon's cost is its own code
    /// and how much the kernel's work on its behalf (file reads, map reads, sends).
    pub fn cpu_split(&self) -> Option<(Duration, Duration)> {
        let (user, system) = self.stat_ticks()?;
        Some((ticks_to_duration(user), ticks_to_duration(system)))
    }

    fn stat_ticks(&self) -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the parenthesised command name, which may itself hold spaces.
        stat_ticks(stat.rsplit_once(')')?.1)
    }

    /// Context switches so far per live thread, keyed by thread id, with the thread's name:
    /// (voluntary: it blocked, so each is a wake-up to come; involuntary: it was preempted).
    pub fn thread_switches(&self) -> std::collections::BTreeMap<u32, (String, u64, u64)> {
        self.per_thread("status", |status| {
            let field = |prefix: &str| status.lines().find_map(|l| l.strip_prefix(prefix)).map(str::trim);
            let count = |prefix: &str| field(prefix).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let name = field("Name:").unwrap_or("?").to_string();
            Some((name, count("voluntary_ctxt_switches:"), count("nonvoluntary_ctxt_switches:")))
        })
    }

    /// CPU time per thread so far, keyed by thread id, with the thread's name (`comm`).
    /// Threads that exited are missing; a caller diffing two snapshots sees only live ones.
    pub fn thread_cpu_times(&self) -> std::collections::BTreeMap<u32, (String, Duration)> {
        self.per_thread("stat", |stat| {
            let (left, rest) = stat.rsplit_once(')')?;
            let comm = left.split_once('(').map_or("?", |(_, c)| c).to_string();
            let (user, system) = stat_ticks(rest)?;
            Some((comm, ticks_to_duration(user + system)))
        })
    }

    /// `parse` of /proc/PID/task/TID/`file` for every live thread, keyed by thread id; threads
    /// that exit meanwhile or whose file does not parse are left out.
    fn per_thread<T>(&self, file: &str, parse: impl Fn(&str) -> Option<T>) -> std::collections::BTreeMap<u32, T> {
        let mut out = std::collections::BTreeMap::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else { return out };
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
            let Ok(text) = std::fs::read_to_string(entry.path().join(file)) else { continue };
            if let Some(v) = parse(&text) {
                out.insert(tid, v);
            }
        }
        out
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// SIGTERM, then wait up to `grace` before SIGKILL. Returns whether it exited cleanly (0).
    pub fn terminate(mut self, grace: Duration) -> bool {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// SIGKILL: no chance to clean up (a crash).
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait for it to exit on its own; returns its output log.
    pub fn wait_output(mut self, limit: Duration) -> Result<String> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was not running", self.name)
        };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                let out = std::fs::read_to_string(&self.log).unwrap_or_default();
                if !status.success() {
                    bail!("{} exited with {status}: {}", self.name, out.trim());
                }
                return Ok(out);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not finish within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// (utime, stime) in clock ticks from the part of a /proc stat line after the command name's `)`.
fn stat_ticks(rest: &str) -> Option<(u64, u64)> {
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

/// The host's interrupt, softirq and stolen time so far, all CPUs (/proc/stat's aggregate
/// line): CPU time a clock on the CPU counts and the scheduler's per-task runtime
/// (`sum_exec_runtime`, with IRQ and steal time accounting) leaves out.
pub fn host_irq_and_steal_time() -> Result<Duration> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    irq_and_steal_ticks(&text).map(ticks_to_duration).with_context(|| format!("no aggregate cpu line in /proc/stat: {:?}", text.lines().next()))
}

/// irq + softirq + steal ticks of /proc/stat's first line (`cpu  user nice system idle iowait
/// irq softirq steal ...`).
fn irq_and_steal_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<u64> = stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().map(|f| f.parse().ok()).collect::<Option<_>>()?;
    Some(fields.get(5)? + fields.get(6)? + fields.get(7)?)
}

/// Clock ticks (the USER_HZ of /proc stat lines) as a duration.
fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// CPU time the calling thread has had, in ns (waits on a run queue do not count).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irq_softirq_and_steal_are_summed_from_the_aggregate_line() {
        let stat = "cpu  10 0 20 300 4 5 6 7 0 0\ncpu0 5 0 10 150 2 3 3 4 0 0\n";
        assert_eq!(irq_and_steal_ticks(stat), Some(18));
        assert_eq!(irq_and_steal_ticks("cpu0 1 2 3\n"), None);
        assert!(host_irq_and_steal_time().is_ok(), "this host's /proc/stat parses");
    }

    #[test]
    fn a_process_reads_the_same_cpu_time_whole_split_and_by_thread() {
        let log = std::env::temp_dir().join(format!("truce-proc-{}.log", std::process::id()));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exec sleep 30"]);
        let p = Proc::spawn("burner", cmd, &log, None).expect("spawn");
        // Burned and asleep: its counters no longer move while they are read.
        let start = std::time::Instant::now();
        while std::fs::read_to_string(format!("/proc/{}/stat", p.pid())).is_ok_and(|s| !s.contains("(sleep)")) {
            assert!(start.elapsed() < Duration::from_secs(20), "the burner never reached its sleep");
            std::thread::sleep(Duration::from_millis(20));
        }
        let whole = p.cpu_time().expect("cpu time");
        let (user, system) = p.cpu_split().expect("split");
        assert!(whole > Duration::ZERO, "the loop took no CPU time");
        assert_eq!(whole, user + system);
        let threads = p.thread_cpu_times();
        assert_eq!(threads.values().map(|(comm, t)| (comm.as_str(), *t)).collect::<Vec<_>>(), vec![("sleep", whole)]);
        let switches = p.thread_switches();
        assert_eq!(switches.values().map(|(name, ..)| name.as_str()).collect::<Vec<_>>(), vec!["sleep"]);
        p.kill();
        let _ = std::fs::remove_file(&log);
    }
}
