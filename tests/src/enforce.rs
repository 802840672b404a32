//! Cgroups and workloads for the enforcement tests in the VM (tests/tests/vm_cgroup.rs).
//!
//! Workloads are forked children that move themselves into their cgroup before doing any
//! work, so nothing they do is charged elsewhere. Between fork and `_exit` they only make
//! raw syscalls on memory prepared before the fork: the test harness is multi-threaded, and
//! after fork only async-signal-safe calls are sound.
use anyhow::{Context, Result, bail};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::vm_guest::CGROUP2;

/// A cgroup made for one test, killed and removed on drop (children first).
#[derive(Debug)]
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    /// `/sys/fs/cgroup/truce-vmtest-<name>`, replacing a leftover of an earlier run.
    pub fn top(name: &str) -> Result<Self> {
        let path = Path::new(CGROUP2).join(format!("truce-vmtest-{name}"));
        if path.exists() {
            remove_tree(&path)?;
        }
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn child(&self, name: &str) -> Result<Self> {
        let path = self.path.join(name);
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    /// Enable controllers for this cgroup's children.
    pub fn delegate(&self, controllers: &[&str]) -> Result<()> {
        let line: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
        self.write("cgroup.subtree_control", &line.join(" "))
    }

    pub fn write(&self, file: &str, value: &str) -> Result<()> {
        let p = self.path.join(file);
        std::fs::write(&p, value).with_context(|| format!("writing {value:?} to {}", p.display()))?;
        // Read back: the kernel may normalise, but a silently ignored write is a test bug.
        let back = self.read(file)?;
        println!("{}: {} = {}", self.path.display(), file, back.trim());
        Ok(())
    }

    pub fn read(&self, file: &str) -> Result<String> {
        let p = self.path.join(file);
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    /// A value of a flat-keyed file such as cpu.stat or memory.events.
    pub fn key(&self, file: &str, key: &str) -> Result<u64> {
        let text = self.read(file)?;
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == key)
            .with_context(|| format!("{} has no key {key}:\n{text}", self.path.join(file).display()))?
            .1
            .trim()
            .parse()
            .with_context(|| format!("{key} in {} is not a number", self.path.join(file).display()))
    }

    pub fn usage_usec(&self) -> Result<u64> {
        self.key("cpu.stat", "usage_usec")
    }

    /// Fork a child that joins this cgroup and runs `work` until it finishes or is killed.
    pub fn spawn(&self, work: Work) -> Result<Child> {
        let procs = CString::new(self.path.join("cgroup.procs").into_os_string().into_encoded_bytes())
            .context("cgroup path contains a NUL byte")?;
        let prepared = Prepared::new(&work)?;
        // SAFETY: the child only calls async-signal-safe functions (open, write, close,
        // sched_setaffinity, mmap, pwrite, pause, _exit) on memory allocated before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            bail!("fork failed: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; `child_main` never returns.
            unsafe { child_main(&procs, &work, &prepared) }
        }
        let child = Child { pid, reaped: false };
        // Wait until the move is visible, so measurements start with the child inside.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let listed = self.read("cgroup.procs")?.lines().any(|l| l.trim() == pid.to_string());
            if listed {
                return Ok(child);
            }
            // A short job (an unthrottled write) may join and finish before a look finds it
            // listed: gone from cgroup.procs, it still proves the join by its exit (exit 10 is
            // the join failing). Looked at without reaping, so `wait_success` still gets it.
            // SAFETY: waitid on our own child into a zeroed siginfo; si_pid/si_status read
            // the fields waitid filled for a CLD_EXITED child.
            let exited = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let rc = libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
                (rc == 0 && info.si_pid() == pid).then(|| (info.si_code, info.si_status()))
            };
            match exited {
                Some((libc::CLD_EXITED, 10)) => bail!("child {pid} could not join {} (exit 10)", self.path.display()),
                Some(_) => return Ok(child),
                None => {}
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("child {pid} never appeared in {}", self.path.display())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.path) {
            eprintln!("could not remove test cgroup {}: {e:#}", self.path.display());
        }
    }
}

/// Kill everything in the subtree (cgroup.kill, 5.14+) and rmdir it, deepest first.
fn remove_tree(path: &Path) -> Result<()> {
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.filter_map(Result::ok) {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            }
        }
    }
    let _ = std::fs::write(path.join("cgroup.kill"), "1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // EBUSY while killed processes are still exiting.
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
}

/// What a forked child does inside its cgroup.
#[derive(Clone, Debug)]
pub enum Work {
    /// Spin on one CPU (or any, if `cpu` is None) until killed.
    Burn { cpu: Option<usize> },
    /// Map and touch `bytes` of anonymous memory in 1 MiB steps, then wait to be killed
    /// (or exit 0 if `exit_when_done`).
    Allocate { bytes: usize, exit_when_done: bool },
    /// Write `bytes` to `device` with O_DIRECT in 1 MiB blocks, then exit 0.
    DirectWrite { device: PathBuf, bytes: usize },
}

const BLOCK: usize = 1 << 20;

/// Memory the child needs, allocated before the fork.
struct Prepared {
    device: Option<CString>,
    buffer: *mut libc::c_void,
}

impl Prepared {
    fn new(work: &Work) -> Result<Self> {
        let mut p = Prepared { device: None, buffer: std::ptr::null_mut() };
        if let Work::DirectWrite { device, .. } = work {
            p.device = Some(CString::new(device.as_os_str().as_encoded_bytes()).context("device path contains NUL")?);
            let mut buf = std::ptr::null_mut();
            // SAFETY: posix_memalign writes a valid pointer on success; O_DIRECT needs the
            // buffer aligned to the logical block size (4096 covers every device).
            let rc = unsafe { libc::posix_memalign(&mut buf, 4096, BLOCK) };
            if rc != 0 {
                bail!("posix_memalign failed: {rc}");
            }
            // SAFETY: buf points to BLOCK writable bytes.
            unsafe { std::ptr::write_bytes(buf.cast::<u8>(), 0xa5, BLOCK) };
            p.buffer = buf;
        }
        Ok(p)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.buffer.is_null() {
            // SAFETY: allocated by posix_memalign in `new`, freed once.
            unsafe { libc::free(self.buffer) };
        }
    }
}

/// The forked child. Exit codes: 0 done, 10 joining the cgroup failed, 11 affinity failed,
/// 12 mmap failed, 13 open failed, 14 write failed.
///
/// # Safety
/// Only to be called in a freshly forked child.
unsafe fn child_main(procs: &CString, work: &Work, prepared: &Prepared) -> ! {
    // SAFETY (whole body): raw syscalls on pre-allocated memory, as the caller promises.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        // "0" means the writing process itself.
        if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            libc::_exit(10);
        }
        libc::close(fd);
        match work {
            Work::Burn { cpu } => {
                if let Some(cpu) = cpu {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(*cpu, &mut set);
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                        libc::_exit(11);
                    }
                }
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            Work::Allocate { bytes, exit_when_done } => {
                let mut done = 0;
                while done < *bytes {
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        BLOCK,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    if p == libc::MAP_FAILED {
                        libc::_exit(12);
                    }
                    // Touch every page so it is charged, not just reserved.
                    let mut off = 0;
                    while off < BLOCK {
                        std::ptr::write_volatile(p.cast::<u8>().add(off), 1);
                        off += 4096;
                    }
                    done += BLOCK;
                }
                if *exit_when_done {
                    libc::_exit(0);
                }
                loop {
                    libc::pause();
                }
            }
            Work::DirectWrite { bytes, .. } => {
                let Some(dev) = &prepared.device else { libc::_exit(13) };
                let fd = libc::open(dev.as_ptr(), libc::O_WRONLY | libc::O_DIRECT | libc::O_CLOEXEC);
                if fd < 0 {
                    libc::_exit(13);
                }
                let mut off = 0usize;
                while off < *bytes {
                    let n = libc::pwrite(fd, prepared.buffer, BLOCK, off as libc::off_t);
                    if n != BLOCK as isize {
                        libc::_exit(14);
                    }
                    off += BLOCK;
                }
                libc::close(fd);
                libc::_exit(0);
            }
        }
    }
}

/// A forked workload; SIGKILLed and reaped on drop.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    /// Wait for a workload that ends by itself; fails with its exit code otherwise.
    pub fn wait_success(mut self) -> Result<()> {
        let mut status = 0;
        // SAFETY: waiting for our own child; status is a valid out-pointer.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.reaped = true;
        if rc != self.pid {
            bail!("waitpid({}) failed: {}", self.pid, std::io::Error::last_os_error());
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bail!("workload {} failed: wait status {status:#x} (exit codes: see enforce::child_main)", self.pid);
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signalling and reaping our own child by pid.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// CPU time the cgroup used per wall-clock second over `window` (1.0 = one full CPU).
pub fn cpu_share(cgroup: &Cgroup, window: Duration) -> Result<f64> {
    let (u0, t0) = (cgroup.usage_usec()?, Instant::now());
    std::thread::sleep(window);
    let (u1, t1) = (cgroup.usage_usec()?, Instant::now());
    Ok(u1.saturating_sub(u0) as f64 / t1.duration_since(t0).as_micros() as f64)
}
