//! `cargo xtask setup`: install what the build and the tests need, following
//! shared/EBPF-TOOLCHAIN.md. Idempotent: each step checks first and says what is already there.
use crate::util::{cache_dir, output, run_step};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The rustup toolchain name agent/build.rs builds the eBPF object with.
pub const BPF_TOOLCHAIN: &str = "truce-bpf";
const RUSTC_WEB_VERSION: &str = "1.96.0+dfsg1-1~deb12u2";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages: LLVM 22 for bpf-linker, libgit2 for Debian's cargo, linux-perf for `bench overhead`,
/// systemd (systemd-analyze verify) and binutils (objcopy, objdump) for `package`.
const APT_PACKAGES: &[&str] = &["llvm-22-dev", "libzstd-dev", "libgit2-1.5", "linux-perf", "python3-venv", "systemd", "binutils"];

#[derive(clap::Args)]
pub struct Args {
    /// Skip the VM harness (qemu, kernels, initramfs).
    #[arg(long)]
    pub no_vm: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let started = std::time::Instant::now();
    apt_packages().context("step `apt packages` failed; fix: check `apt-get update` works, then rerun `cargo xtask setup`")?;
    bpf_rustc().context("step `bpf rustc` failed; fix: remove ~/.cache/truce/toolchain and rerun `cargo xtask setup`")?;
    bpf_linker().context("step `bpf-linker` failed; fix: check /usr/lib/llvm-22 exists (llvm-22-dev), then rerun")?;
    crate::deploy::ensure_validator().context("step `kubernetes schema validator` failed; fix: check that PyPI is reachable, then rerun")?;
    if !args.no_vm {
        crate::vm::setup(&crate::vm::SetupArgs::default()).context("step `vm` failed")?;
    }
    eprintln!("setup: all steps done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        eprintln!("setup: [ok] apt packages already installed: {}", APT_PACKAGES.join(" "));
        return Ok(());
    }
    apt_update()?;
    let mut cmd = Command::new("apt-get");
    cmd.args(["install", "-y", "--no-install-recommends", "--no-remove"]).args(&missing);
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    run_step("apt packages", &mut cmd)
}

/// `apt-get update` once per setup run (apt-cache look-ups need it on a fresh machine).
pub fn apt_update() -> Result<()> {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    run_step("apt update", Command::new("apt-get").args(["update", "-q"]))?;
    let _ = DONE.set(());
    Ok(())
}

fn toolchain_prefix() -> PathBuf {
    cache_dir().join("toolchain/rustc-web-1.96")
}

fn bpf_rustc_ok() -> bool {
    let v = Command::new("rustup").args(["run", BPF_TOOLCHAIN, "rustc", "-V"]).output();
    let libdir = Command::new("rustup")
        .args(["run", BPF_TOOLCHAIN, "rustc", "--print", "target-libdir", "--target", "bpfel-unknown-none"])
        .output();
    match (v, libdir) {
        (Ok(v), Ok(l)) if v.status.success() && l.status.success() => {
            let dir = String::from_utf8_lossy(&l.stdout).trim().to_string();
            let has_core = std::fs::read_dir(&dir)
                .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libcore")))
                .unwrap_or(false);
            String::from_utf8_lossy(&v.stdout).contains("1.96") && has_core
        }
        _ => false,
    }
}

/// Debian's rustc-web with the precompiled bpfel core, extracted into a private prefix
/// (never installed: it conflicts with rustup) and linked into rustup.
fn bpf_rustc() -> Result<()> {
    if bpf_rustc_ok() {
        eprintln!("setup: [ok] rustup toolchain `{BPF_TOOLCHAIN}` (Debian rustc 1.96 with bpfel core) already linked");
        return Ok(());
    }
    let prefix = toolchain_prefix();
    let debs = prefix.join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let pkgs = ["rustc-web", "libstd-rust-web-1.96", "libstd-rust-web-dev", "libstd-rust-web-dev-bpf", "cargo-web"];
    let have_all = pkgs.iter().all(|p| {
        std::fs::read_dir(&debs)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&format!("{p}_"))))
            .unwrap_or(false)
    });
    if !have_all {
        apt_update()?;
        let mut cmd = Command::new("apt-get");
        cmd.arg("download").args(pkgs.iter().map(|p| format!("{p}={RUSTC_WEB_VERSION}"))).current_dir(&debs);
        run_step("bpf rustc: download Debian rustc-web", &mut cmd)?;
    }
    for entry in std::fs::read_dir(&debs)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            run_step("bpf rustc: extract", Command::new("dpkg").arg("-x").arg(&path).arg(&prefix))?;
        }
    }
    // Debian's rustc has no RUNPATH; rustup puts <toolchain>/lib on LD_LIBRARY_PATH.
    let lib = prefix.join("usr/lib");
    for entry in std::fs::read_dir(lib.join("x86_64-linux-gnu"))? {
        let name = entry?.file_name();
        if name.to_string_lossy().starts_with("librustc_driver-") {
            let link = lib.join(&name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(Path::new("x86_64-linux-gnu").join(&name), &link)?;
        }
    }
    run_step(
        "bpf rustc: link toolchain",
        Command::new("rustup").args(["toolchain", "link", BPF_TOOLCHAIN]).arg(prefix.join("usr")),
    )?;
    if !bpf_rustc_ok() {
        bail!("toolchain `{BPF_TOOLCHAIN}` still cannot target bpfel-unknown-none after linking");
    }
    eprintln!("setup: [done] {}", output("bpf rustc", Command::new("rustup").args(["run", BPF_TOOLCHAIN, "rustc", "-V"]))?.trim());
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let have = Command::new("bpf-linker").arg("--version").output();
    if let Ok(o) = &have
        && o.status.success()
        && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
    {
        eprintln!("setup: [ok] bpf-linker {BPF_LINKER_VERSION} already installed");
        return Ok(());
    }
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 3 minutes)");
    let mut cmd = Command::new("cargo");
    cmd.args(["+stable", "install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--locked"])
        .args(["--no-default-features", "--features", "llvm-22"])
        // Without it the build finds /usr/bin/llvm-config (LLVM 14) and fails to link -lLLVM.
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTUP_TOOLCHAIN");
    run_step("bpf-linker", &mut cmd)
}
