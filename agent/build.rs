//! Builds `truce-agent-ebpf` for bpfel-unknown-none with a nested cargo and Debian's rustc
//! (rustup toolchain `truce-bpf`, installed by `cargo xtask setup`), following
//! shared/EBPF-TOOLCHAIN.md step 6. The object is embedded by `probes::load`.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

const TOOLCHAIN: &str = "truce-bpf";
const TARGET: &str = "bpfel-unknown-none";
const EBPF_PACKAGE: &str = "truce-agent-ebpf";
const EBPF_BIN: &str = "truce-probes";
const SETUP_HINT: &str = "run `cargo xtask setup` to install the eBPF toolchain";

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR unset")?);
    let root = manifest_dir.parent().context("agent/ has no parent directory")?.to_path_buf();
    for path in ["agent-ebpf/src", "agent-ebpf/Cargo.toml", "common/src", "common/Cargo.toml"] {
        println!("cargo::rerun-if-changed={}", root.join(path).display());
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").context("OUT_DIR unset")?);
    check_toolchain()?;
    let object = build_ebpf(&root, &out_dir)?;
    println!("cargo::rustc-env=TRUCE_PROBES_OBJECT={}", object.display());
    Ok(())
}

/// Fail early, with the fix, when the BPF toolchain or bpf-linker is missing.
fn check_toolchain() -> Result<()> {
    let rustc = rustup()
        .args(["run", TOOLCHAIN, "rustc", "--print", "target-libdir", "--target", TARGET])
        .output();
    match rustc {
        Ok(out) if out.status.success() => {}
        Ok(out) => bail!(
            "the rustup toolchain `{TOOLCHAIN}` with a prebuilt core for {TARGET} is missing ({}); {SETUP_HINT}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) => bail!("cannot run rustup ({err}); {SETUP_HINT}"),
    }
    let linker = Command::new("bpf-linker").arg("--version").env("PATH", search_path()).output();
    match linker {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!("bpf-linker is not installed (looked in PATH and ~/.cargo/bin); {SETUP_HINT}"),
    }
}

fn build_ebpf(root: &Path, out_dir: &Path) -> Result<PathBuf> {
    let target_dir = out_dir.join("ebpf-target");
    let mut cmd = rustup();
    cmd.current_dir(root)
        .args(["run", TOOLCHAIN, "cargo", "build", "-p", EBPF_PACKAGE, "--bins", "--release"])
        .args(["--target", TARGET, "--target-dir"])
        .arg(&target_dir)
        .env("PATH", search_path())
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            ["--cfg=bpf_target_arch=\"x86_64\"", "-Cdebuginfo=2", "-Clink-arg=--btf"].join("\x1f"),
        )
        // Scoped to aya_ebpf: it needs asm_experimental_arch, and `=1` would make the
        // build switch to build-std, which these machines cannot do.
        .env("RUSTC_BOOTSTRAP", "aya_ebpf");
    // The outer cargo's settings would point the nested build at the host toolchain.
    for var in ["RUSTC", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "RUSTFLAGS", "CARGO_TARGET_DIR", "RUSTUP_TOOLCHAIN", "CARGO", "CARGO_BUILD_TARGET"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().context("failed to start the nested cargo build of the eBPF programs")?;
    if !status.success() {
        bail!("building {EBPF_PACKAGE} for {TARGET} failed ({status}); if the toolchain is missing, {SETUP_HINT}");
    }
    let object = target_dir.join(TARGET).join("release").join(EBPF_BIN);
    if !object.is_file() {
        bail!("the eBPF build succeeded but {} is missing", object.display());
    }
    Ok(object)
}

fn rustup() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.env("PATH", search_path());
    cmd
}

/// PATH plus ~/.cargo/bin, where rustup and `cargo install bpf-linker` put their binaries.
fn search_path() -> String {
    let path = env::var("PATH").unwrap_or_default();
    match env::var("CARGO_HOME").ok().or_else(|| env::var("HOME").ok().map(|h| format!("{h}/.cargo"))) {
        Some(home) => format!("{path}:{home}/bin"),
        None => path,
    }
}
