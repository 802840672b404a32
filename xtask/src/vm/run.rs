//! vm-test and vm-shell: one boot per (kernel, suite), a per-kernel summary at the end.
use super::boot::{self, BootOutcome, BootSpec};
use super::payload::{self, Job};
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
    let (_, accel) = boot::accel_args();
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
            let extra = payload::archive(&job, &built, &dir)?;
            let what = format!("with {suite} [{accel}]");
            let prefix = format!("[{} {suite}] ", kernel.label);
            let outcome = boot_archive(assets, kernel, base, &dir, &extra, &what, prefix, args.timeout)?;
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
        payload::build(&suites)?
    } else {
        payload::build(&[])?
    };
    let Some((kernel, base)) = assets.kernels.first() else { bail!("no kernel set up") };
    let dir = run_dir(&format!("shell-{}", kernel.label))?;
    let job = Job::Shell { extra: extra.suites.clone() };
    let archive = payload::archive(&job, &extra, &dir)?;
    let initrd = dir.join("initrd.img");
    payload::write_initrd(base, &archive, &initrd)?;
    let (disk, scratch) = (dir.join("disk.img"), dir.join("scratch.img"));
    boot::fresh_disk(&disk, DISK_BYTES)?;
    boot::fresh_disk(&scratch, DISK_BYTES)?;
    let spec = BootSpec {
        qemu: &assets.qemu,
        vmlinuz: &kernel.vmlinuz,
        initrd: &initrd,
        disk: &disk,
        scratch: &scratch,
        serial_file: &dir.join("ttyS1.txt"),
        console_log: &dir.join("console.log"),
        prefix: String::new(),
        host_timeout: Duration::MAX,
        interactive: true,
    };
    let rc = boot::interactive(&spec)?;
    let _ = std::fs::remove_dir_all(&dir);
    if rc != 0 {
        bail!("qemu exited with {rc}");
    }
    Ok(())
}

/// Boot one kernel and run one command line in the guest (the demo, the VM benchmarks).
/// The console streams live with `prefix`; the outcome holds every console line.
pub fn command(assets: &Assets, script: &str, timeout_secs: u64, prefix: &str) -> Result<BootOutcome> {
    let built = payload::build_with(&[], true)?;
    let Some((kernel, base)) = assets.kernels.first() else { bail!("no kernel set up") };
    let dir = run_dir(&format!("cmd-{}", kernel.label))?;
    let archive = payload::archive(&Job::Command { script, timeout_secs }, &built, &dir)?;
    let (_, accel) = boot::accel_args();
    let outcome = boot_archive(assets, kernel, base, &dir, &archive, &format!("[{accel}]"), prefix.to_string(), timeout_secs)?;
    if let Err(why) = judge(&outcome) {
        bail!("the guest command failed: {why} (console: {})", dir.join("console.log").display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(outcome)
}

/// Write the initrd (base + `archive`) and fresh disks into `dir`, and boot `kernel` once.
#[allow(clippy::too_many_arguments)]
fn boot_archive(
    assets: &Assets,
    kernel: &super::kernel::Kernel,
    base: &std::path::Path,
    dir: &std::path::Path,
    archive: &[u8],
    what: &str,
    prefix: String,
    timeout_secs: u64,
) -> Result<BootOutcome> {
    let initrd = dir.join("initrd.img");
    payload::write_initrd(base, archive, &initrd)?;
    let (disk, scratch) = (dir.join("disk.img"), dir.join("scratch.img"));
    boot::fresh_disk(&disk, DISK_BYTES)?;
    boot::fresh_disk(&scratch, DISK_BYTES)?;
    eprintln!(
        "xtask: vm-test: booting {} ({}) {what}, initrd {} MiB",
        kernel.label,
        kernel.release,
        std::fs::metadata(&initrd).map(|m| m.len() >> 20).unwrap_or(0)
    );
    let spec = BootSpec {
        qemu: &assets.qemu,
        vmlinuz: &kernel.vmlinuz,
        initrd: &initrd,
        disk: &disk,
        scratch: &scratch,
        serial_file: &dir.join("ttyS1.txt"),
        console_log: &dir.join("console.log"),
        prefix,
        host_timeout: Duration::from_secs(timeout_secs) + BOOT_MARGIN,
        interactive: false,
    };
    boot::run(&spec)
}
