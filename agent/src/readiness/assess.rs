//! The verdicts: a pure function of [`HostFacts`].
use super::{Check, HostFacts, Level, Readiness};
use crate::cgroupfs::{Controller, ControllerState, Mode};
use crate::probes::{CompletionProbe, GroupStatus, PerfStatus, missing_privileges};

/// tp_btf/sched_switch reads prev_state, an argument since 5.18: older kernels refuse the attach.
pub const MIN_KERNEL: (u32, u32) = (5, 18);
/// Kernels the VM suite runs on every change.
pub const TESTED_KERNELS: [(u32, u32); 2] = [(6, 1), (6, 12)];

/// `6.12.117+deb12-amd64` -> (6, 12).
pub fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn check(name: &'static str, level: Level, finding: impl Into<String>, fix: Option<&str>) -> Check {
    Check { name, level, finding: finding.into(), fix: fix.map(str::to_string) }
}

pub fn assess(f: &HostFacts) -> Readiness {
    let mut r = Readiness { checks: Vec::new(), observes: Vec::new(), not_observed: Vec::new(), enforces: Vec::new(), roots: Vec::new() };
    r.checks.push(privileges(f));
    r.checks.push(kernel(&f.kernel_release));
    r.checks.push(if f.btf {
        check("btf", Level::Ok, "/sys/kernel/btf/vmlinux present", None)
    } else {
        check(
            "btf",
            Level::Blocking,
            "/sys/kernel/btf/vmlinux absent: the scheduler probes are BTF-typed tracepoints and read task fields at its offsets",
            Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu, Fedora and RHEL kernels are)"),
        )
    });
    cgroup(f, &mut r);
    probes(f, &mut r);
    r.checks.push(pmu(&f.pmu, f.perf_event_paranoid));
    match &f.pmu {
        PerfStatus::Available { .. } => r.observes.push("perf counters (CPI, LLC misses)".into()),
        PerfStatus::Unavailable { reason } => r.not_observed.push(("perf counters (CPI, LLC misses)".into(), reason.clone())),
    }
    if f.psi {
        r.checks.push(check("psi", Level::Ok, "/proc/pressure present", None));
        r.observes.push("pressure (PSI)".into());
    } else {
        r.checks.push(check("psi", Level::Gap, "/proc/pressure absent", Some("boot with psi=1 (kernels built with CONFIG_PSI_DEFAULT_DISABLED)")));
        r.not_observed.push(("pressure (PSI)".into(), "no /proc/pressure".into()));
    }
    config(f, &mut r);
    r
}

fn privileges(f: &HostFacts) -> Check {
    match f.effective_caps.map(missing_privileges) {
        None => check("privileges", Level::Blocking, "cannot read CapEff from /proc/self/status", Some("run on Linux with /proc mounted")),
        Some(None) => check("privileges", Level::Ok, "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN effective", None),
        Some(Some(missing)) => check(
            "privileges",
            Level::Blocking,
            format!("missing {missing}"),
            Some("run as root, or with these capabilities (the packaged systemd unit and the Kubernetes DaemonSet grant exactly them)"),
        ),
    }
}

fn kernel(release: &str) -> Check {
    let tested = TESTED_KERNELS.iter().map(|(a, b)| format!("{a}.{b}")).collect::<Vec<_>>().join(" and ");
    match parse_kernel(release) {
        None => check("kernel", Level::Gap, format!("cannot parse the kernel release {release:?}"), Some("check `uname -r`; truce needs 5.18 or newer")),
        Some(v) if v < MIN_KERNEL => check(
            "kernel",
            Level::Blocking,
            format!("{release} is older than {}.{}: the scheduler probe reads sched_switch's prev_state, added in 5.18", MIN_KERNEL.0, MIN_KERNEL.1),
            Some("upgrade the kernel to 5.18 or newer (tested: 6.1, 6.12; on Debian 12 `apt install linux-image-amd64`)"),
        ),
        Some(v) if TESTED_KERNELS.contains(&v) || v > TESTED_KERNELS[1] => check("kernel", Level::Ok, format!("{release} (tested: {tested})"), None),
        Some(_) => check("kernel", Level::Ok, format!("{release} (supported; the test suite runs on {tested})"), None),
    }
}

fn cgroup(f: &HostFacts, r: &mut Readiness) {
    let host = match &f.cgroup {
        Ok(h) => h,
        Err(why) => {
            r.checks.push(check("cgroup2", Level::Blocking, why.clone(), Some("mount cgroup2 (systemd does at boot; by hand: mount -t cgroup2 none /sys/fs/cgroup)")));
            return;
        }
    };
    r.observes.push("cgroup files (cpu.stat, memory, io.stat)".into());
    let mut finding = host.summary();
    let not_enabled: Vec<&str> = host
        .controllers
        .iter()
        .filter(|(_, s)| matches!(s, ControllerState::Enforceable { enabled_at_root: false }))
        .map(|(c, _)| c.name())
        .collect();
    if !not_enabled.is_empty() {
        finding.push_str(&format!("; not enabled in the root's cgroup.subtree_control: {}", not_enabled.join(",")));
    }
    r.enforces = host
        .controllers
        .iter()
        .filter(|(_, s)| matches!(s, ControllerState::Enforceable { .. }))
        .map(|(c, _)| c.name().to_string())
        .collect();
    match host.mode {
        Mode::Enforce => {
            let pids_missing = matches!(host.state(Controller::Pids), Some(ControllerState::Missing));
            let level = if pids_missing || !not_enabled.is_empty() { Level::Gap } else { Level::Ok };
            let fix = match (pids_missing, not_enabled.is_empty()) {
                (true, _) => Some("the kernel has no pids controller (CONFIG_CGROUP_PIDS); pids limits stay unenforced"),
                (false, false) => Some("enable them for truce's roots: echo +cpu +memory +io +pids > <cgroup2>/cgroup.subtree_control (systemd enables what units use)"),
                (false, true) => None,
            };
            r.checks.push(check("cgroup2", level, finding, fix));
        }
        Mode::ObserveOnly => {
            r.enforces.clear();
            let fix = if host.hybrid {
                "cgroup v1 owns cpu, memory or io (hybrid mode): boot with systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all so cgroup v2 owns every controller"
            } else {
                "the kernel lacks a cgroup v2 controller truce needs (cpu: CONFIG_CFS_BANDWIDTH, memory: CONFIG_MEMCG, io: CONFIG_BLK_CGROUP); use a distribution kernel"
            };
            r.checks.push(check("cgroup2", Level::Gap, format!("{finding}; decisions are reported but not applied"), Some(fix)));
        }
    }
}

fn probes(f: &HostFacts, r: &mut Readiness) {
    match &f.tracefs {
        Ok(Some(p)) => r.checks.push(check("tracefs", Level::Ok, format!("mounted at {}", p.display()), None)),
        Ok(None) => r.checks.push(check(
            "tracefs",
            Level::Gap,
            "not mounted: block I/O probes need tracepoint layouts from it (the agent mounts it at /sys/kernel/tracing when it has CAP_SYS_ADMIN)",
            Some("mount -t tracefs nodev /sys/kernel/tracing (systemd's sys-kernel-tracing.mount does at boot; in Kubernetes mount the host's /sys/kernel/tracing)"),
        )),
        Err(why) => r.checks.push(check("tracefs", Level::Gap, why.clone(), Some("mount /proc so mountinfo is readable"))),
    }
    let caps = match &f.probes {
        None => {
            r.not_observed.push(("eBPF probes".into(), "not loaded: missing privileges".into()));
            return;
        }
        Some(Err(why)) => {
            let fix = if why.contains("perf_event_open") && why.contains("ermission denied") {
                perf_denied_fix(f.perf_event_paranoid)
            } else {
                "check the kernel (5.18+, CONFIG_BPF_SYSCALL, CONFIG_BPF_EVENTS) and that no LSM policy denies bpf(); the error above names the program".to_string()
            };
            r.checks.push(Check { name: "probes", level: Level::Blocking, finding: format!("loading the eBPF probes failed: {why}"), fix: Some(fix) });
            return;
        }
        Some(Ok(caps)) => caps,
    };
    // The optional groups the config turns off are the operator's choice, not a gap, whether
    // or not this kernel could run them.
    let wanted = f.config.as_ref().and_then(|c| c.loaded.as_ref().ok()).map_or_else(Default::default, |l| l.probes);
    let groups = [
        ("scheduler (CPU, run-queue delay, who delayed whom)", &caps.sched, None),
        ("block I/O (bytes, latency per device)", &caps.block, (!wanted.block).then_some("probes.block")),
        ("network (bytes per cgroup)", &caps.net, (!wanted.net).then_some("probes.net")),
    ];
    let (mut down, mut off) = (Vec::new(), Vec::new());
    for (name, status, turned_off) in groups {
        match (status, turned_off) {
            (_, Some(key)) => {
                r.not_observed.push((name.to_string(), crate::probes::turned_off_reason(key)));
                off.push(key);
            }
            (GroupStatus::Attached, None) => r.observes.push(name.to_string()),
            (GroupStatus::Unavailable { reason }, None) => {
                r.not_observed.push((name.to_string(), reason.clone()));
                down.push(format!("{name}: {reason}"));
            }
        }
    }
    if down.is_empty() {
        let finding = if off.is_empty() { "scheduler, block I/O and network probes attached".to_string() } else { format!("probes attached, except what the config turns off ({})", off.join(", ")) };
        r.checks.push(check("probes", Level::Ok, finding, None));
    } else {
        r.checks.push(check(
            "probes",
            Level::Gap,
            format!("not attached: {}", down.join("; ")),
            Some("block I/O needs tracefs and the block tracepoints (CONFIG_BLK_DEV_IO_TRACE is not required); network needs cgroup2 and CONFIG_CGROUP_BPF"),
        ));
    }
    if let (Some(CompletionProbe::Classic { reason }), true) = (&caps.block_completion, wanted.block) {
        r.checks.push(check(
            "block completions",
            Level::Gap,
            format!("seen by the classic tracepoint ({reason}): the kernel skips a completion that interrupts another block probe, and that request is charged to nobody (counted as skipped_block_rq_complete)"),
            Some("the reason above says what the kernel refused; its BTF needs request.__sector, request.q, request_queue.disk and gendisk.major/first_minor for the BTF-typed completion probe"),
        ));
    }
}

/// perf_event_open refused: upstream needs CAP_PERFMON for system-wide events; Debian's
/// perf_event_paranoid=3 (its default) needs CAP_SYS_ADMIN for any.
fn perf_denied_fix(paranoid: Option<i64>) -> String {
    match paranoid {
        Some(p) if p >= 3 => format!(
            "kernel.perf_event_paranoid is {p}: this kernel then allows perf_event_open only with CAP_SYS_ADMIN; grant it (the packaged unit does), or set kernel.perf_event_paranoid=2 and CAP_PERFMON suffices"
        ),
        _ => "grant CAP_PERFMON (system-wide perf events need it)".to_string(),
    }
}

fn pmu(p: &PerfStatus, paranoid: Option<i64>) -> Check {
    match p {
        PerfStatus::Available { counters, software_clock: false } => check("pmu", Level::Ok, format!("hardware counters: {}", counters.join(", ")), None),
        PerfStatus::Available { counters, software_clock: true } => {
            check("pmu", Level::Gap, format!("software clock in the cycles slot ({}): a test mode", counters.join(", ")), Some("run without the test perf mode"))
        }
        PerfStatus::Unavailable { reason } => {
            let fix = if reason.contains("ermission") || reason.contains("EACCES") || reason.contains("EPERM") {
                perf_denied_fix(paranoid)
            } else {
                "no hardware PMU: run on bare metal, or give the VM a virtual PMU (KVM: -cpu host with vPMU on); CPI and LLC misses stay unavailable".to_string()
            };
            Check { name: "pmu", level: Level::Gap, finding: reason.clone(), fix: Some(fix) }
        }
    }
}

fn config(f: &HostFacts, r: &mut Readiness) {
    let Some(c) = &f.config else { return };
    let loaded = match &c.loaded {
        Ok(l) => l,
        Err(why) => {
            let fix = "fix the named key, or start from `truce-agent config --print-default`";
            r.checks.push(check("config", Level::Blocking, why.clone(), Some(fix)));
            return;
        }
    };
    r.checks.push(check("config", Level::Ok, format!("{} loads (host {})", c.path.display(), loaded.host), None));
    r.roots = loaded.roots.iter().map(|(root, _)| root.clone()).collect();
    let absent: Vec<&str> = loaded.roots.iter().filter(|(_, exists)| !exists).map(|(root, _)| root.as_str()).collect();
    if !absent.is_empty() && !r.enforces.is_empty() {
        r.checks.push(check(
            "roots",
            Level::Gap,
            format!("enforce.roots not present in the cgroup2 tree: {}", absent.join(", ")),
            Some("nothing is enforced until workloads run there: put them in that slice (systemd: Slice=truce.slice) or point enforce.roots at where they run"),
        ));
    }
    let unreadable: Vec<String> =
        loaded.certs.iter().filter_map(|(p, ok)| ok.as_ref().err().map(|e| format!("{} ({e})", p.display()))).collect();
    if unreadable.is_empty() {
        r.checks.push(check("certificates", Level::Ok, "CA, host certificate and key readable", None));
    } else {
        r.checks.push(check(
            "certificates",
            Level::Blocking,
            format!("cannot read {}", unreadable.join(", ")),
            Some("on the CA machine: truce-arbiter certs issue --dir <ca dir> --host <host>; copy ca.pem and hosts/<host>.{pem,key} to arbiter.certs_dir"),
        ));
    }
}

#[cfg(test)]
#[path = "assess_tests.rs"]
mod tests;
