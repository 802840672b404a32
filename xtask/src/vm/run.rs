//! vm-test and vm-shell: one boot per (kernel, suite), a per-kernel summary at the end.
use super::boot::{self, BootOutcome, BootSpec};
use super::payload::{self, Job};
use super::kernel::Kernel;
use super::{Assets, ShellArgs, TestArgs};
use crate::util::workspace_root;
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::time::Duration;

/// Boot plus unpacking under TCG: 6–13 s measured; the margin covers a loaded CI machine.
const BOOT_MARGIN: Duration = Duration::from_secs(180);
const DISK_BYTES: u64 = 256 << 20;

struct SuiteResult {
    kernel: String,
    suite: String,
    verdict: Result<(), String>,
    libtest: Option<String>,
    skips: Vec<String>,
    wall: Duration,
}

fn run_dir(tag: &str) -> Result<PathBuf> {
    // The pid keeps concurrent runs (several engineers, one target dir) apart.
    let dir = workspace_root().join("target/vm").join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn run_suites(assets: &Assets, args: &TestArgs) -> Result<()> {
    let suites = payload::present_suites(&args.suites);
    if suites.is_empty() {
        bail!("no VM suites to run (looked for {:?})", payload::VM_SUITES);
    }
    let built = payload::build(&suites)?;
    let packages = if suites.contains(&payload::PACKAGE_SUITE) { payload::package_files()? } else { Vec::new() };
    let (_, accel) = boot::accel_args()?;
    let mut results = Vec::new();
    for (kernel, base) in &assets.kernels {
        for (suite, binary) in &built.suites {
            let tag = format!("{}-{suite}", kernel.label);
            let dir = run_dir(&tag)?;
            let job = Job::Suite {
                name: suite,
                binary,
                filter: args.filter.as_deref(),
                timeout_secs: args.timeout,
                kernel_label: &kernel.label,
                files: if suite == payload::PACKAGE_SUITE { &packages } else { &[] },
            };
            let files = BootFiles::prepare(&dir, base, &payload::archive(&job, &built, &dir)?)?;
            eprintln!("xtask: vm-test: booting {} ({}) with {suite} [{accel}], initrd {} MiB", kernel.label, kernel.release, files.initrd_mib());
            let timeout = Duration::from_secs(args.timeout) + BOOT_MARGIN;
            let outcome = boot::run(&files.spec(assets, kernel, format!("[{} {suite}] ", kernel.label), timeout, false))?;
            let verdict = judge(&outcome);
            if let Err(why) = &verdict {
                eprintln!(
                    "xtask: vm-test: {} {suite} FAILED: {why}\n--- console tail ({}) ---\n{}\n--- end of console tail ---",
                    kernel.label,
                    dir.join("console.log").display(),
                    outcome.tail()
                );
            } else {
                // Keep failed runs' files for a post-mortem; drop the big ones of passed runs.
                let _ = std::fs::remove_dir_all(&dir);
            }
            results.push(SuiteResult {
                kernel: kernel.label.clone(),
                suite: suite.clone(),
                verdict,
                libtest: outcome.console.iter().rev().find(|l| l.contains("test result:")).cloned(),
                skips: outcome.console.iter().filter(|l| l.contains("VMTEST_SKIP")).cloned().collect(),
                wall: outcome.wall,
            });
        }
    }
    summarize(&results)
}

/// Pass only on a clean exit 0 with no crash marker: a kernel Oops after the tests passed
/// still means the kernel misbehaved under what truce does.
pub(super) fn judge(o: &BootOutcome) -> Result<(), String> {
    if let Some(line) = &o.crash {
        return Err(format!("guest kernel crashed: {line}"));
    }
    if o.timed_out {
        return Err("no result before the host timeout (guest hung?)".into());
    }
    match o.guest_exit {
        Some(0) => Ok(()),
        Some(rc) => Err(format!("guest payload exited with {rc}")),
        None => Err(match o.qemu_status {
            Some(status) if !status.success() => format!("qemu failed ({status}) before the guest reported VMTEST_EXIT"),
            _ => "the guest stopped without reporting VMTEST_EXIT".into(),
        }),
    }
}

fn summarize(results: &[SuiteResult]) -> Result<()> {
    eprintln!("\nxtask: vm-test summary");
    let mut kernels: Vec<&str> = results.iter().map(|r| r.kernel.as_str()).collect();
    kernels.dedup();
    for k in kernels {
        let mine: Vec<&SuiteResult> = results.iter().filter(|r| r.kernel == k).collect();
        let failed = mine.iter().filter(|r| r.verdict.is_err()).count();
        let wall: Duration = mine.iter().map(|r| r.wall).sum();
        eprintln!(
            "  kernel {k}: {} ({} suites, {failed} failed, {:.1}s)",
            if failed == 0 { "PASS" } else { "FAIL" },
            mine.len(),
            wall.as_secs_f64()
        );
        for r in mine {
            let status = match &r.verdict {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("FAILED: {e}"),
            };
            eprintln!("    {:<12} {status} in {:.1}s", r.suite, r.wall.as_secs_f64());
            if let Some(l) = &r.libtest {
                eprintln!("      {}", l.trim());
            }
            for s in &r.skips {
                eprintln!("      {}", s.trim());
            }
        }
    }
    let failed: Vec<String> =
        results.iter().filter(|r| r.verdict.is_err()).map(|r| format!("{} on {}", r.suite, r.kernel)).collect();
    if !failed.is_empty() {
        bail!("VM suites failed: {}", failed.join(", "));
    }
    Ok(())
}

pub fn shell(assets: &Assets, args: &ShellArgs) -> Result<()> {
    let extra = if args.with_tests {
        let suites = payload::present_suites(&[]);
        payload::build_with(&suites, args.release)?
    } else {
        payload::build_with(&[], args.release)?
    };
    let Some((kernel, base)) = assets.kernels.first() else { bail!("no kernel set up") };
    let dir = run_dir(&format!("shell-{}", kernel.label))?;
    let job = Job::Shell { extra: extra.suites.clone() };
    let files = BootFiles::prepare(&dir, base, &payload::archive(&job, &extra, &dir)?)?;
    let spec = files.spec(assets, kernel, String::new(), Duration::MAX, true);
    let rc = boot::interactive(&spec)?;
    let _ = std::fs::remove_dir_all(&dir);
    if rc != 0 {
        bail!("qemu exited with {rc}");
    }
    Ok(())
}

/// Boot one kernel and run one command line in the guest (the demo, the VM benchmarks).
/// The console streams live with `prefix`; the outcome holds every console line.
/// vCPUs of every boot unless a command asks otherwise.
pub const DEFAULT_VCPUS: u32 = 2;

pub fn command(assets: &Assets, script: &str, timeout_secs: u64, prefix: &str, extras: &super::CommandExtras) -> Result<BootOutcome> {
    let built = payload::build_with(&[], true)?;
    let Some((kernel, base)) = assets.kernels.first() else { bail!("no kernel set up") };
    let dir = run_dir(&format!("cmd-{}", kernel.label))?;
    let job = Job::Command { script, timeout_secs, files: &extras.files };
    let files = BootFiles::prepare(&dir, base, &payload::archive(&job, &built, &dir)?)?;
    let (_, accel) = boot::accel_args()?;
    let vcpus = extras.vcpus;
    eprintln!(
        "xtask: vm-test: booting {} ({}) [{accel}, {vcpus} vCPU{}], initrd {} MiB",
        kernel.label,
        kernel.release,
        if extras.net { ", user-mode network" } else { "" },
        files.initrd_mib()
    );
    let timeout = Duration::from_secs(timeout_secs) + BOOT_MARGIN;
    let outcome = boot::run(&BootSpec { vcpus, net: extras.net, ..files.spec(assets, kernel, prefix.to_string(), timeout, false) })?;
    if let Err(why) = judge(&outcome) {
        bail!("the guest command failed: {why} (console: {})", dir.join("console.log").display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(outcome)
}

/// One boot's files in its run directory: the initrd (base + the run's archive), two fresh
/// disks, and the logs qemu writes.
struct BootFiles {
    initrd: PathBuf,
    disk: PathBuf,
    scratch: PathBuf,
    serial: PathBuf,
    console: PathBuf,
}

impl BootFiles {
    fn prepare(dir: &std::path::Path, base: &std::path::Path, archive: &[u8]) -> Result<BootFiles> {
        let files = BootFiles {
            initrd: dir.join("initrd.img"),
            disk: dir.join("disk.img"),
            scratch: dir.join("scratch.img"),
            serial: dir.join("ttyS1.txt"),
            console: dir.join("console.log"),
        };
        payload::write_initrd(base, archive, &files.initrd)?;
        boot::fresh_disk(&files.disk, DISK_BYTES)?;
        boot::fresh_disk(&files.scratch, DISK_BYTES)?;
        Ok(files)
    }

    fn initrd_mib(&self) -> u64 {
        std::fs::metadata(&self.initrd).map(|m| m.len() >> 20).unwrap_or(0)
    }

    fn spec<'a>(&'a self, assets: &'a Assets, kernel: &'a Kernel, prefix: String, host_timeout: Duration, interactive: bool) -> BootSpec<'a> {
        BootSpec {
            qemu: &assets.qemu,
            vmlinuz: &kernel.vmlinuz,
            initrd: &self.initrd,
            disk: &self.disk,
            scratch: &self.scratch,
            serial_file: &self.serial,
            console_log: &self.console,
            prefix,
            host_timeout,
            interactive,
            vcpus: DEFAULT_VCPUS,
            net: false,
        }
    }
}
