//! Processes the tests start inside test cgroups: a CPU burner and an O_DIRECT writer.
//! Each one moves itself into its cgroup before it does any work, and is killed and
//! reaped on drop, so a failing test leaves nothing running.
use std::{
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{Context, Result, bail};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::cgroups::TestCgroup;

/// A child process, killed (by its pid) and reaped on drop.
#[derive(Debug)]
pub struct Workload {
    child: Child,
}

impl Workload {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (on-CPU ns, run-queue wait ns) of the process's main thread from
    /// /proc/<pid>/schedstat, the kernel's own per-task accounting.
    pub fn schedstat(&self) -> Result<(u64, u64)> {
        let text = fs::read_to_string(format!("/proc/{}/schedstat", self.pid())).context("reading schedstat")?;
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(run)), Some(Ok(wait))) => Ok((run, wait)),
            _ => bail!("unexpected schedstat {text:?}"),
        }
    }

    /// The CPU the process last ran on (/proc/<pid>/stat, field 39).
    pub fn last_cpu(&self) -> Result<u32> {
        let text = fs::read_to_string(format!("/proc/{}/stat", self.pid())).context("reading stat")?;
        // Fields after the parenthesised command name: field 3 onwards, so 39 is the 37th.
        let rest = text.rsplit_once(')').map(|(_, r)| r).context("no command name in stat")?;
        rest.split_whitespace().nth(36).and_then(|f| f.parse().ok()).with_context(|| format!("no processor field in {text:?}"))
    }

    /// Pin the process to one CPU.
    pub fn pin(&self, cpu: usize) -> Result<()> {
        let mut set = CpuSet::new();
        set.set(cpu)?;
        sched_setaffinity(Pid::from_raw(self.pid() as i32), &set).context("sched_setaffinity")?;
        Ok(())
    }

    /// Wait for a workload that ends by itself; fails if it exits non-zero.
    pub fn wait_success(mut self) -> Result<()> {
        let status = self.child.wait()?;
        if !status.success() {
            bail!("workload exited with {status}");
        }
        Ok(())
    }

    /// Kill and reap now (instead of at drop), so its last CPU time is accounted.
    pub fn stop(mut self) {
        self.kill_and_reap();
    }

    fn kill_and_reap(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Pin two CPU burners to `cpu` and let them run 3 s windows until they have shared it: `a`
/// waited at least half a window, by the kernel's own run_delay. Returns the windows taken.
///
/// In about one 6.1 boot in five one burner ran a whole window alone (run_delay said so, and
/// the probes agreed with it to the ns): it showed in cgroup.procs before the cpuset
/// controller's attach had run, and that attach reset its CPUs to the cgroup's, undoing the
/// pin. `spawn_in` now waits for the burner's own write to return, so the retry is a guard.
pub fn share_one_cpu(a: &Workload, b: &Workload, cpu: usize) -> Result<u32> {
    let mut windows = 0;
    loop {
        a.pin(cpu)?;
        b.pin(cpu)?;
        let (_, waited_before) = a.schedstat()?;
        std::thread::sleep(std::time::Duration::from_secs(3));
        let (_, waited) = a.schedstat()?;
        windows += 1;
        if waited - waited_before > 500_000_000 {
            return Ok(windows);
        }
        let cpus = (a.last_cpu()?, b.last_cpu()?);
        println!("the burners did not share CPU {cpu}: a waited {} ns in 3 s, last on CPUs {cpus:?}", waited - waited_before);
        anyhow::ensure!(windows < 3, "the burners pinned to CPU {cpu} never shared it in {windows} windows (last on CPUs {cpus:?})");
    }
}

/// `sh` that writes its own pid into the cgroup, says so on its stdout, then runs `script`.
///
/// Returns once the shell has said so, i.e. once its write to cgroup.procs has returned. The
/// pid shows in cgroup.procs before that (the kernel moves the task, then runs each
/// controller's attach), and the cpuset controller's attach resets the task's CPUs to the
/// cgroup's: a test that pinned a burner as soon as it showed could have the pin undone.
fn spawn_in(cgroup: &TestCgroup, script: &str, args: &[&str]) -> Result<Workload> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > \"$0\" && echo moved && exec >/dev/null && {script}"))
        .arg(cgroup.procs_file())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning sh")?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut workload = Workload { child };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("reading the workload's stdout")?;
    if line.trim() != "moved" {
        let status = workload.child.wait().context("waiting for the workload")?;
        bail!("workload {} did not move itself into {} ({status})", workload.pid(), cgroup.path.display());
    }
    Ok(workload)
}

/// A shell busy loop: one full CPU, in one thread, until dropped.
pub fn cpu_burner(cgroup: &TestCgroup) -> Result<Workload> {
    spawn_in(cgroup, "while :; do :; done", &[])
}

/// dd writing `mib` MiB of zeros to `file` with O_DIRECT (so the writer's own context
/// submits the I/O; no page-cache writeback by kernel threads).
pub fn direct_writer(cgroup: &TestCgroup, file: &Path, mib: u32) -> Result<Workload> {
    let of = format!("of={}", file.display());
    let count = format!("count={mib}");
    spawn_in(cgroup, "exec dd if=/dev/zero \"$1\" bs=1M \"$2\" oflag=direct conv=fsync status=none", &[&of, &count])
}

/// dd writing 4 KiB blocks of zeros to `file` with O_DIRECT until stopped (up to 1 GiB): a
/// neighbour that keeps the device's queue busy, so other writers' requests are requeued
/// and dispatched by whoever runs the queue next.
pub fn small_direct_writer(cgroup: &TestCgroup, file: &Path) -> Result<Workload> {
    let of = format!("of={}", file.display());
    spawn_in(cgroup, "exec dd if=/dev/zero \"$1\" bs=4k count=262144 oflag=direct status=none", &[&of])
}

/// bash sending `bytes` zero bytes to 127.0.0.1:`port` over TCP.
pub fn tcp_sender(cgroup: &TestCgroup, port: u16, bytes: u64) -> Result<Workload> {
    let script = "exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1 && head -c $2 /dev/zero >&3' bash \"$1\" \"$2\"";
    spawn_in(cgroup, script, &[&port.to_string(), &bytes.to_string()])
}
