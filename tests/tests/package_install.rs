//! The packages, installed into the VM guest's root and run the way their systemd units run
//! them: the agent's ExecStart under the unit's capability bounding set and no_new_privs, the
//! arbiter's ExecStart as an unprivileged user with its certificates where LoadCredential
//! puts them. Workloads under the default enforce root compete for a CPU until the arbiter's
//! decisions change their cgroups; then SIGTERM, as `systemctl stop` sends it, must leave
//! every value as it was before the agent started.
//!
//! The packages come from `cargo xtask package --profile dev` (the release build differs only
//! in optimisation); xtask puts them in the guest and names them in TRUCE_AGENT_DEB and
//! TRUCE_ARBITER_DEB.
use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use truce_tests::enforce::{Cgroup, Work};
use truce_tests::unit_file::{bounding_set, exec_start};
use truce_tests::vm_guest::{CGROUP2, in_test_vm};

/// The files truce may write (enforce/write.rs), read before and after.
const LIMIT_FILES: [&str; 7] = ["cpu.max", "cpu.weight", "memory.high", "memory.max", "io.max", "io.weight", "pids.max"];
const AGENT_UNIT: &str = "/lib/systemd/system/truce-agent.service";
const ARBITER_UNIT: &str = "/lib/systemd/system/truce-arbiter.service";
/// What systemd's LoadCredential would create for the arbiter.
const CREDENTIALS: &str = "/run/credentials/truce-arbiter.service";
/// `nobody`: the arbiter runs unprivileged, as under User=truce-arbiter.
const ARBITER_UID: u32 = 65534;

#[test]
#[ignore = "installs packages into the root and changes cgroup v2 limits: runs inside the VM via `cargo xtask vm-test`"]
fn the_packaged_agent_run_like_its_unit_restores_every_cgroup_value_on_sigterm() -> Result<()> {
    let test = "the_packaged_agent_run_like_its_unit_restores_every_cgroup_value_on_sigterm";
    if !in_test_vm(test) {
        return Ok(());
    }
    for var in ["TRUCE_AGENT_DEB", "TRUCE_ARBITER_DEB"] {
        let deb = std::env::var(var).with_context(|| format!("{var} unset: the VM harness must put the packages in the guest"))?;
        install(Path::new(&deb))?;
    }
    for f in ["/usr/bin/truce-agent", "/usr/bin/truce-arbiter", "/etc/truce/agent.toml", "/etc/truce/arbiter.toml", AGENT_UNIT, ARBITER_UNIT] {
        ensure!(Path::new(f).is_file(), "the packages did not install {f}");
    }
    let agent_unit = std::fs::read_to_string(AGENT_UNIT)?;
    let arbiter_unit = std::fs::read_to_string(ARBITER_UNIT)?;

    // Certificates as the operator's guide says, for the host named in the shipped config.
    let host = truce_agent::config::AgentConfig::parse(&std::fs::read_to_string("/etc/truce/agent.toml")?, Path::new("/etc/truce/agent.toml"))?.host;
    run_ok(Command::new("/usr/bin/truce-arbiter").args(["certs", "init", "--dir", "/etc/truce/certs"]))?;
    run_ok(Command::new("/usr/bin/truce-arbiter").args(["certs", "issue", "--dir", "/etc/truce/certs", "--host", &host]))?;
    let _arbiter = start_arbiter(&arbiter_unit)?;

    // Workloads under the shipped enforce root, three burners sharing one CPU: each waits
    // in the run queue most of the time, so each bids for CPU.
    let root = Path::new(CGROUP2).join("truce.slice");
    std::fs::create_dir_all(&root)?;
    let slice = Cgroup { path: root };
    slice.delegate(&["cpu", "memory", "io", "pids"])?;
    let workloads: Vec<Cgroup> = ["a", "b", "c"].iter().map(|n| slice.child(n)).collect::<Result<_>>()?;
    let cpu = Some(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) - 1);
    let _burners: Vec<_> = workloads.iter().map(|w| w.spawn(Work::Burn { cpu })).collect::<Result<_>>()?;
    let dirs: Vec<PathBuf> = std::iter::once(slice.path.clone()).chain(workloads.iter().map(|w| w.path.clone())).collect();
    let original = limits(&dirs)?;
    println!("original limits: {original:#?}");

    let argv = exec_start(&agent_unit, &[])?;
    let caps = bounding_set(&agent_unit)?;
    println!("agent ExecStart: {argv:?}, bounding set {caps:?}");
    doctor_under(&argv[0], &caps, Expect::Ready)?;
    doctor_under(&argv[0], &[], Expect::Blocked("CAP_BPF"))?;
    // CAP_SYS_ADMIN is in the unit only for Debian's perf_event_paranoid=3: without it the
    // agent cannot open perf events there, and with paranoid 2 the other three suffice.
    const CAP_SYS_ADMIN: u32 = 21;
    let without_admin: Vec<u32> = caps.iter().copied().filter(|&c| c != CAP_SYS_ADMIN).collect();
    let paranoid_file = "/proc/sys/kernel/perf_event_paranoid";
    let paranoid = std::fs::read_to_string(paranoid_file)?.trim().to_string();
    println!("kernel.perf_event_paranoid = {paranoid}");
    if paranoid.parse::<i64>()? >= 3 {
        doctor_under(&argv[0], &without_admin, Expect::Blocked("perf_event_paranoid"))?;
    }
    std::fs::write(paranoid_file, "2")?;
    let relaxed = doctor_under(&argv[0], &without_admin, Expect::Ready);
    std::fs::write(paranoid_file, &paranoid)?;
    relaxed?;

    std::fs::create_dir_all("/var/lib/truce")?;
    // As an operator would: a workload policy makes `a` the one that matters. Three identical
    // burners can otherwise ask for exactly their equal shares, and then no decision is due
    // (a 6.1 CI run waited 240 s for one); with `a` at priority 50 the market raises `a` and
    // cuts `b` and `c`.
    std::fs::write("/etc/truce/workloads.toml", "[[workload]]\nmatch = \"/truce.slice/a\"\npriority = 50\n")?;
    let config = std::fs::read_to_string("/etc/truce/agent.toml")?;
    let config = config.replacen("[arbiter]", "workloads = \"/etc/truce/workloads.toml\"\n\n[arbiter]", 1);
    ensure!(config.contains("workloads = \"/etc/truce/workloads.toml\""), "the shipped agent.toml has no [arbiter] table to put the key before");
    std::fs::write("/etc/truce/agent.toml", config)?;
    let log = PathBuf::from("/tmp/truce-agent.log");
    let mut agent = Daemon::spawn(Command::new(&argv[0]).args(&argv[1..]), &log, |c| with_bounding_set(c, &caps))?;
    let deadline = Instant::now() + Duration::from_secs(240);
    let changed = loop {
        if let Some(status) = agent.child.try_wait()? {
            bail!("the agent exited with {status} while running:\n{}", agent.log());
        }
        let now = limits(&dirs)?;
        let changed: Vec<String> = now.iter().filter(|(k, v)| original.get(*k) != Some(v)).map(|(k, v)| format!("{k}: {} -> {}", original[k].trim(), v.trim())).collect();
        if !changed.is_empty() && agent.log().contains("cgroup write") {
            break changed;
        }
        if Instant::now() > deadline {
            bail!("no decision changed a cgroup within 240 s; agent log:\n{}", agent.log());
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("changed while the agent ran: {changed:#?}");
    let text = agent.log();
    ensure!(text.contains("readiness") && text.contains("enforces=cpu, memory, io, pids under /truce.slice"), "no readiness summary naming what it enforces:\n{text}");

    // systemctl stop: SIGTERM to the main process (KillMode=mixed), then wait.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.child.id() as i32), nix::sys::signal::Signal::SIGTERM)?;
    let status = agent.wait(Duration::from_secs(60))?;
    let text = agent.log();
    ensure!(status.success(), "the agent exited with {status} on SIGTERM:\n{text}");
    ensure!(text.contains("every cgroup truce touched is restored"), "the agent did not report a full restore:\n{text}");
    let after = limits(&dirs)?;
    let differ: Vec<String> = original.iter().filter(|(k, v)| after.get(*k) != Some(v)).map(|(k, v)| format!("{k}: was {:?}, now {:?}", v.trim(), after.get(k).map(|s| s.trim()))).collect();
    ensure!(differ.is_empty(), "cgroup values not restored after SIGTERM:\n{}\nagent log:\n{text}", differ.join("\n"));
    println!("all {} values restored after {} changed", original.len(), changed.len());
    Ok(())
}

/// What dpkg would unpack: the package's data archive, into the root.
fn install(deb: &Path) -> Result<()> {
    run_ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg("/")).map(|_| ())
}

fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed with {}: {}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every limit file of every cgroup, path -> content.
fn limits(dirs: &[PathBuf]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for d in dirs {
        for f in LIMIT_FILES {
            let p = d.join(f);
            if p.exists() {
                out.insert(p.display().to_string(), std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?);
            }
        }
    }
    Ok(out)
}

/// Run the child with only `caps` in its bounding set and no_new_privs, as systemd does for
/// CapabilityBoundingSet= and NoNewPrivileges=yes. As root, the bounding set is then exactly
/// what the process gets.
fn with_bounding_set(cmd: &mut Command, caps: &[u32]) {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    let drop: Vec<u32> = (0..=last).filter(|c| !caps.contains(c)).collect();
    // SAFETY: only prctl between fork and exec, on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for &c in &drop {
                if libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

enum Expect {
    Ready,
    /// Exit 1 with a blocking finding that mentions this.
    Blocked(&'static str),
}

/// `truce-agent doctor` under a bounding set.
fn doctor_under(bin: &str, caps: &[u32], expect: Expect) -> Result<()> {
    let mut cmd = Command::new(bin);
    cmd.args(["doctor", "--config", "/etc/truce/agent.toml"]);
    with_bounding_set(&mut cmd, caps);
    let out = cmd.output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("doctor with bounding set {caps:?} ({}):\n{text}", out.status);
    match expect {
        Expect::Ready => {
            ensure!(out.status.success() && text.contains("verdict:      ready"), "doctor says the agent cannot run with bounding set {caps:?}");
            ensure!(text.contains("enforces:     cpu, memory, io, pids under /truce.slice"), "doctor does not report enforcement");
        }
        Expect::Blocked(what) => {
            ensure!(out.status.code() == Some(1) && text.contains("BLOCKING") && text.contains(what), "doctor with bounding set {caps:?} must block (exit 1) and mention {what}");
        }
    }
    Ok(())
}

fn start_arbiter(unit: &str) -> Result<Daemon> {
    use std::os::unix::fs::{PermissionsExt, chown};
    std::fs::create_dir_all(CREDENTIALS)?;
    for f in ["ca.pem", "arbiter.pem", "arbiter.key"] {
        let dest = Path::new(CREDENTIALS).join(f);
        std::fs::copy(Path::new("/etc/truce/certs").join(f), &dest)?;
        chown(&dest, Some(ARBITER_UID), Some(ARBITER_UID))?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o400))?;
    }
    let state = Path::new("/var/lib/truce-arbiter");
    std::fs::create_dir_all(state)?;
    chown(state, Some(ARBITER_UID), Some(ARBITER_UID))?;
    let argv = exec_start(unit, &[("CREDENTIALS_DIRECTORY", CREDENTIALS)])?;
    let caps = bounding_set(unit)?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(state);
    let mut arbiter = Daemon::spawn(&mut cmd, Path::new("/tmp/truce-arbiter.log"), |c| {
        // The bounding set first (dropping needs CAP_SETPCAP, which root still has), then the
        // user, as systemd orders them. std's uid() would switch before pre_exec runs.
        with_bounding_set(c, &caps);
        // SAFETY: setgroups/setgid/setuid only, between fork and exec.
        unsafe {
            c.pre_exec(|| {
                if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(ARBITER_UID) != 0 || libc::setuid(ARBITER_UID) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })?;
    // It binds before it logs anything else; give it a moment and make sure it stayed up.
    std::thread::sleep(Duration::from_secs(2));
    if let Some(status) = arbiter.child.try_wait()? {
        bail!("the arbiter exited with {status}:\n{}", arbiter.log());
    }
    Ok(arbiter)
}

/// A daemon with its stderr in a file; SIGKILLed on drop if still running.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(cmd: &mut Command, log: &Path, setup: impl FnOnce(&mut Command)) -> Result<Daemon> {
        let file = std::fs::File::create(log)?;
        cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        setup(cmd);
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        Ok(Daemon { child, log: log.to_path_buf() })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("still running {} s after SIGTERM:\n{}", limit.as_secs(), self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
