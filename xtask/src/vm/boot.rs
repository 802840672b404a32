//! One boot of the test VM: qemu with the right accelerator, the console streamed with a
//! prefix, a host-side timeout, crash detection, and the guest's exit status.
use super::qemu_setup::Qemu;
use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Console lines that mean the guest kernel is broken, whatever the tests said.
const CRASH_MARKERS: [&str; 3] = ["Kernel panic", "Oops", "BUG:"];
const TAIL_LINES: usize = 60;

pub struct BootSpec<'a> {
    pub qemu: &'a Qemu,
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    /// Raw disk for /dev/vda (io.max tests write it directly).
    pub disk: &'a Path,
    /// Disk for /dev/vdb, formatted by /init as the scratch file system.
    pub scratch: &'a Path,
    pub serial_file: &'a Path,
    pub console_log: &'a Path,
    /// Printed before every console line.
    pub prefix: String,
    pub host_timeout: Duration,
    pub interactive: bool,
    /// Guest CPUs. Under single-threaded TCG every vCPU runs on one host thread, taking turns
    /// of up to 100 ms when several are busy (qemu's TCG_KICK_PERIOD): with 2, a busy vCPU
    /// delays the other's tasks in a way no guest scheduler or cgroup setting can see. With
    /// 1, the guest's scheduler alone decides who runs.
    pub vcpus: u32,
    /// A virtio NIC on qemu's user-mode network (slirp): the guest is 10.0.2.15 and reaches
    /// the host's loopback services at 10.0.2.2 (the benchmarks' host-side arbiter).
    pub net: bool,
}

#[derive(Debug, Default)]
pub struct BootOutcome {
    /// From `VMTEST_EXIT=` (ttyS1 first, the console as a fallback).
    pub guest_exit: Option<i32>,
    pub crash: Option<String>,
    pub timed_out: bool,
    /// qemu's own exit status (it exits 0 on the guest's poweroff).
    pub qemu_status: Option<std::process::ExitStatus>,
    pub console: Vec<String>,
    pub wall: Duration,
}

impl BootOutcome {
    pub fn tail(&self) -> String {
        let start = self.console.len().saturating_sub(TAIL_LINES);
        self.console[start..].join("\n")
    }
}

/// KVM only where the CPU really has vmx/svm and the kvm module for it is loaded: a nested
/// `/dev/kvm` without them (PVM) makes stock kernels die in KVM's emulator. Single-threaded
/// TCG otherwise: multi-threaded TCG crashes the guest (`Oops: int3` after cpu.max writes).
pub fn accel_args() -> Result<(Vec<String>, &'static str)> {
    let forced = std::env::var("TRUCE_VM_ACCEL").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let has_virt = flags.split_whitespace().any(|f| f == "vmx" || f == "svm");
    let kvm_loaded = Path::new("/sys/module/kvm_intel").exists() || Path::new("/sys/module/kvm_amd").exists();
    if forced != "tcg" && has_virt && kvm_loaded && Path::new("/dev/kvm").exists() {
        Ok((vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()], "kvm"))
    } else {
        // TCG's translation cache in MiB; `TRUCE_VM_TB_MIB` overrides it for experiments (a
        // full cache is flushed whole, and every guest task then runs retranslated code).
        let tb_mib = match std::env::var("TRUCE_VM_TB_MIB") {
            Err(_) => 256,
            Ok(v) => v.trim().parse::<u32>().ok().filter(|&m| m > 0).with_context(|| format!("TRUCE_VM_TB_MIB: {v:?} is not a size in MiB"))?,
        };
        Ok((vec!["-accel".into(), format!("tcg,thread=single,tb-size={tb_mib}"), "-cpu".into(), "max".into()], "tcg,thread=single"))
    }
}

fn command(spec: &BootSpec) -> Result<Command> {
    let (accel, _) = accel_args()?;
    let mut cmd = spec.qemu.command();
    cmd.args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-machine", "q35"]);
    cmd.args(&accel);
    cmd.args(["-m", "1024", "-smp", &spec.vcpus.to_string()]);
    cmd.arg("-kernel").arg(spec.vmlinuz).arg("-initrd").arg(spec.initrd);
    // panic=-1 reboots at once on a panic, and -no-reboot turns that into a qemu exit.
    // `TRUCE_VM_APPEND` adds kernel parameters, for experiments (`preempt=full`, say).
    let mut append = "console=ttyS0 cgroup_no_v1=all psi=1 panic=-1 loglevel=4 rdinit=/init".to_string();
    if let Ok(extra) = std::env::var("TRUCE_VM_APPEND") {
        append = format!("{append} {}", extra.trim());
    }
    cmd.arg("-append").arg(append);
    if spec.interactive {
        // mon:stdio multiplexes the monitor: Ctrl-A X quits, Ctrl-C reaches the guest.
        cmd.args(["-serial", "mon:stdio"]);
    } else {
        cmd.args(["-serial", "stdio"]);
    }
    cmd.arg("-serial").arg(format!("file:{}", spec.serial_file.display()));
    for disk in [spec.disk, spec.scratch] {
        cmd.arg("-drive").arg(format!("file={},if=virtio,format=raw,cache=unsafe", disk.display()));
    }
    if spec.net {
        // Outbound only: no hostfwd, nothing on the host is exposed to the guest but what
        // listens on the host's loopback, which slirp maps to 10.0.2.2.
        cmd.args(["-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0"]);
    }
    Ok(cmd)
}

pub fn interactive(spec: &BootSpec) -> Result<i32> {
    let mut cmd = command(spec)?;
    eprintln!("xtask: vm-shell: {}", crate::util::describe(&cmd));
    let status = cmd.status().context("could not start qemu")?;
    Ok(status.code().unwrap_or(1))
}

pub fn run(spec: &BootSpec) -> Result<BootOutcome> {
    let started = Instant::now();
    let _ = std::fs::remove_file(spec.serial_file);
    let mut cmd = command(spec)?;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("could not start {}", crate::util::describe(&cmd)))?;
    let pid = child.id();
    let log = std::fs::File::create(spec.console_log).with_context(|| format!("creating {}", spec.console_log.display()))?;
    let shared = Arc::new(Mutex::new(Shared { console: Vec::new(), crash_at: None, crash: None, log }));
    let readers: Vec<_> = [child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), child.stderr.take().map(|s| Box::new(s) as _)]
        .into_iter()
        .flatten()
        .map(|stream| {
            let shared = Arc::clone(&shared);
            let prefix = spec.prefix.clone();
            std::thread::spawn(move || stream_lines(stream, &prefix, &shared))
        })
        .collect();

    let deadline = started + spec.host_timeout;
    let mut timed_out = false;
    let mut qemu_status = None;
    loop {
        if let Some(status) = child.try_wait()? {
            qemu_status = Some(status);
            break;
        }
        let crash_at = shared.lock().map(|s| s.crash_at).unwrap_or(None);
        let now = Instant::now();
        // After a crash give the kernel a few seconds to print the trace, then stop waiting.
        let crash_expired = crash_at.is_some_and(|t| now.duration_since(t) > Duration::from_secs(5));
        if now > deadline || crash_expired {
            timed_out = now > deadline;
            eprintln!("xtask: {}stopping qemu (pid {pid}){}", spec.prefix, if timed_out { ": host timeout" } else { " after a crash" });
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for r in readers {
        let _ = r.join();
    }
    let shared = Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("console reader still running"))?;
    let shared = shared.into_inner().map_err(|_| anyhow::anyhow!("console reader panicked"))?;
    let serial = std::fs::read_to_string(spec.serial_file).unwrap_or_default();
    let guest_exit = exit_marker(&serial).or_else(|| shared.console.iter().rev().find_map(|l| exit_marker(l)));
    Ok(BootOutcome { guest_exit, crash: shared.crash, timed_out, qemu_status, console: shared.console, wall: started.elapsed() })
}

struct Shared {
    console: Vec<String>,
    crash_at: Option<Instant>,
    crash: Option<String>,
    log: std::fs::File,
}

fn stream_lines(stream: Box<dyn std::io::Read + Send>, prefix: &str, shared: &Mutex<Shared>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    let mut recent: VecDeque<String> = VecDeque::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).replace('\r', "");
        println!("{prefix}{line}");
        recent.push_back(line.clone());
        if recent.len() > 4 {
            recent.pop_front();
        }
        if let Ok(mut s) = shared.lock() {
            let _ = writeln!(s.log, "{line}");
            if s.crash.is_none() && CRASH_MARKERS.iter().any(|m| line.contains(m)) {
                s.crash = Some(line.clone());
                s.crash_at = Some(Instant::now());
            }
            s.console.push(line);
        }
    }
}

fn exit_marker(text: &str) -> Option<i32> {
    text.lines().rev().find_map(|l| l.trim().strip_prefix("VMTEST_EXIT=")).and_then(|v| v.trim().parse().ok())
}

/// A fresh sparse raw disk for /dev/vda. One per run: qemu locks its image, so concurrent
/// runs cannot share one, and the tests write to it raw.
pub fn fresh_disk(path: &PathBuf, bytes: u64) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_marker_takes_the_last_report() {
        assert_eq!(exit_marker("noise\nVMTEST_EXIT=101\r\n"), Some(101));
        assert_eq!(exit_marker("VMTEST_EXIT=1\nVMTEST_EXIT=0\n"), Some(0));
        assert_eq!(exit_marker("VMTEST_EXIT=\n"), None);
        assert_eq!(exit_marker(""), None);
    }

    #[test]
    fn a_crash_fails_even_when_the_tests_passed() {
        let o = BootOutcome { guest_exit: Some(0), crash: Some("Oops: int3".into()), ..Default::default() };
        assert!(super::super::run::judge(&o).is_err());
        let ok = BootOutcome { guest_exit: Some(0), ..Default::default() };
        assert!(super::super::run::judge(&ok).is_ok());
        let silent = BootOutcome::default();
        assert!(super::super::run::judge(&silent).is_err());
    }
}
