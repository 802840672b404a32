//! The qemu VM harness (see shared/VM-HARNESS.md): real Debian kernels booted with full
//! cgroup v2 (`cgroup_no_v1=all`), so enforcement and eBPF tests run against a real kernel
//! without touching the host's (hybrid) cgroups.
//!
//! Cache layout, under `~/.cache/truce/vm/`, everything keyed by package version:
//! `busybox-<v>/`, `kernel-<pkg>_<v>/` (the extracted deb), `qemu-<v>/` (only when
//! apt cannot install qemu), `initramfs-<pkg>-<v>-<hash>.cpio.gz` (base archive per kernel).
//! Per-run files (initrd, disk, console log) go to `target/vm/`.
use anyhow::{Result, bail};
use std::path::PathBuf;

mod apt;
mod boot;
mod cpio;
mod initramfs;
mod kernel;
mod payload;
mod qemu_setup;
mod run;

pub use payload::GuestFile;
pub use qemu_setup::QemuSource;

#[derive(clap::Args, Clone, Debug)]
pub struct SetupArgs {
    /// Which kernels to fetch: 6.12, 6.1 or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// Where qemu comes from.
    #[arg(long, value_enum, default_value_t = QemuSource::Auto)]
    pub qemu: QemuSource,
}

impl Default for SetupArgs {
    fn default() -> Self {
        Self { kernel: "all".into(), qemu: QemuSource::Auto }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct TestArgs {
    /// Which kernel: 6.12, 6.1 or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// Only tests whose name contains this (passed to each suite's test harness).
    pub filter: Option<String>,
    /// Only these suites (test binaries of the tests package); default: all VM suites.
    #[arg(long = "suite")]
    pub suites: Vec<String>,
    /// Seconds the guest gives one suite before killing it (the host adds a boot margin).
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Where qemu comes from (as for vm-setup).
    #[arg(long, value_enum, default_value_t = QemuSource::Auto)]
    pub qemu: QemuSource,
}

impl Default for TestArgs {
    fn default() -> Self {
        Self { kernel: "all".into(), filter: None, suites: Vec::new(), timeout: 900, qemu: QemuSource::Auto }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct ShellArgs {
    /// Which kernel: 6.12 or 6.1.
    #[arg(long, default_value = "6.12")]
    pub kernel: String,
    /// Also build the VM test suites and put them in /payload/ for running by hand.
    #[arg(long)]
    pub with_tests: bool,
    /// Release builds of the agent, arbiter and demo binaries, as the demo and benchmarks use
    /// (a debug agent under TCG is several times slower).
    #[arg(long)]
    pub release: bool,
    #[arg(long, value_enum, default_value_t = QemuSource::Auto)]
    pub qemu: QemuSource,
}

/// The cached tools and kernels a boot needs.
pub struct Assets {
    pub qemu: qemu_setup::Qemu,
    pub kernels: Vec<(kernel::Kernel, PathBuf)>,
}

fn labels(kernel: &str) -> Result<Vec<&'static str>> {
    match kernel {
        "all" => Ok(kernel::LABELS.to_vec()),
        k => match kernel::LABELS.iter().find(|l| **l == k) {
            Some(l) => Ok(vec![*l]),
            None => bail!("unknown kernel {k:?}: use {} or all", kernel::LABELS.join(", ")),
        },
    }
}

pub fn vm_cache_dir() -> PathBuf {
    crate::util::cache_dir().join("vm")
}

/// Fetch (or find cached) qemu, busybox and the kernels, and build the base initramfs.
/// Idempotent and safe to call from `cargo xtask setup`; a warm run only asks apt-cache.
pub fn setup(args: &SetupArgs) -> Result<()> {
    ensure_assets(&args.kernel, args.qemu).map(|_| ())
}

fn ensure_assets(kernel: &str, qemu: QemuSource) -> Result<Assets> {
    let started = std::time::Instant::now();
    let labels = labels(kernel)?;
    let cache = vm_cache_dir();
    std::fs::create_dir_all(&cache)?;
    let apt = apt::Apt::new(&cache.join("apt"));
    let qemu = qemu_setup::ensure(&apt, &cache, qemu)?;
    let busybox = initramfs::ensure_busybox(&apt, &cache)?;
    let full_set = labels.len() == kernel::LABELS.len();
    let mut kernels = Vec::new();
    for label in labels {
        let k = kernel::ensure(&apt, &cache, label)?;
        let base = initramfs::ensure_base(&cache, &busybox, &k)?;
        kernels.push((k, base));
    }
    let _ = std::fs::remove_dir(apt::debs_dir(&cache));
    if full_set {
        let mut keep: Vec<PathBuf> = vec![busybox.parent().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or_default()];
        keep.extend(qemu.binary.ancestors().nth(3).map(PathBuf::from));
        for (k, base) in &kernels {
            keep.push(k.root.clone());
            keep.push(base.clone());
        }
        prune(&cache, &keep);
    }
    eprintln!("xtask: vm-setup: ready in {:.1}s ({})", started.elapsed().as_secs_f64(), cache.display());
    Ok(Assets { qemu, kernels })
}

/// How recently another checkout must have written a cached version for it to be kept.
pub(crate) const PRUNE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Drop cached versions that are no longer current (a 6.1 kernel tree is 400 MB, and the
/// security archive moves every few weeks). Only after a full setup, so `--kernel 6.12` never
/// removes the 6.1 kernel; in-progress `.partial-<pid>` directories are left alone, and so is
/// anything written within [`PRUNE_AFTER`]: another checkout on this machine (a worktree with
/// other agent code, so another initramfs) may be booting it right now. That once removed a
/// CI run's initramfs between its setup and its boot.
fn prune(cache: &std::path::Path, keep: &[PathBuf]) {
    let Ok(entries) = std::fs::read_dir(cache) else { return };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let versioned = ["kernel-", "initramfs-", "busybox-", "qemu-"].iter().any(|p| name.starts_with(p));
        if !versioned || name.contains(".partial-") || keep.contains(&path) {
            continue;
        }
        let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if age.is_none_or(|a| a < PRUNE_AFTER) {
            continue;
        }
        eprintln!("xtask: vm-setup: removing the outdated {}", path.display());
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if let Err(e) = removed {
            eprintln!("xtask: vm-setup: could not remove {}: {e}", path.display());
        }
    }
}

/// Build the VM suites and the agent, boot each kernel once per suite, and fail unless every
/// suite passed on every kernel.
pub fn test(args: &TestArgs) -> Result<()> {
    let assets = ensure_assets(&args.kernel, args.qemu)?;
    run::run_suites(&assets, args)
}

/// What a command boot gets besides its script.
#[derive(Clone, Debug)]
pub struct CommandExtras {
    /// Guest CPUs.
    pub vcpus: u32,
    /// A NIC on qemu's user-mode network: the guest reaches the host's loopback at 10.0.2.2.
    pub net: bool,
    /// Data files copied into the guest.
    pub files: Vec<GuestFile>,
}

impl CommandExtras {
    pub fn vcpus(vcpus: u32) -> CommandExtras {
        CommandExtras { vcpus, net: false, files: Vec::new() }
    }
}

/// Boot `kernel` and run `script`, with the guest CPUs, network and files of `extras`.
pub fn command_on(kernel: &str, script: &str, timeout_secs: u64, prefix: &str, extras: &CommandExtras) -> Result<boot::BootOutcome> {
    let assets = ensure_assets(kernel, QemuSource::Auto)?;
    run::command(&assets, script, timeout_secs, prefix, extras)
}

/// The release binaries the command boots run (cargo: a no-op when they are current).
pub fn release_binaries() -> Result<payload::Built> {
    payload::build_with(&[], true)
}

/// Boot one kernel with the agent (and optionally the suites) and a shell on the console.
pub fn shell(args: &ShellArgs) -> Result<()> {
    let assets = ensure_assets(&args.kernel, args.qemu)?;
    run::shell(&assets, args)
}
