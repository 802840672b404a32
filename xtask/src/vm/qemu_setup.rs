//! Finding or fetching qemu-system-x86_64.
//!
//! apt is tried first, with `--no-remove`: on a machine with a newer qemu-utils (a backport) apt
//! would otherwise remove it. When apt refuses, the debs it would have installed are extracted
//! into the cache and run from there with `LD_LIBRARY_PATH` and `-L`.
use super::apt::{self, Apt};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "qemu-system-x86";
const BINARY: &str = "qemu-system-x86_64";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum QemuSource {
    /// The installed qemu, else apt, else an extracted copy.
    #[default]
    Auto,
    /// Only an installed or apt-installed qemu.
    Apt,
    /// Always a private copy extracted from the debs (ignores an installed qemu).
    Extract,
}

/// How to run qemu: the binary plus, for an extracted copy, its libraries and firmware.
#[derive(Clone, Debug)]
pub struct Qemu {
    pub binary: PathBuf,
    pub lib_dirs: Vec<PathBuf>,
    pub data_dirs: Vec<PathBuf>,
}

impl Qemu {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        if !self.lib_dirs.is_empty() {
            let joined = std::env::join_paths(&self.lib_dirs).unwrap_or_default();
            cmd.env("LD_LIBRARY_PATH", joined);
        }
        for d in &self.data_dirs {
            cmd.arg("-L").arg(d);
        }
        cmd
    }

    fn version(&self) -> Result<String> {
        let mut cmd = Command::new(&self.binary);
        if !self.lib_dirs.is_empty() {
            cmd.env("LD_LIBRARY_PATH", std::env::join_paths(&self.lib_dirs).unwrap_or_default());
        }
        let out = cmd.arg("--version").output().with_context(|| format!("could not run {}", self.binary.display()))?;
        if !out.status.success() {
            bail!("{} --version failed: {}", self.binary.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string())
    }
}

pub fn ensure(apt: &Apt, cache: &Path, source: QemuSource) -> Result<Qemu> {
    if source != QemuSource::Extract
        && let Some(q) = installed()
    {
        eprintln!("xtask: vm-setup: qemu: {} ({})", q.binary.display(), q.version()?);
        return Ok(q);
    }
    if source != QemuSource::Apt {
        // A warm run must not ask apt to install again (that takes seconds and fails the same way).
        let version = apt.with_fresh_lists("qemu version", |a| a.candidate(PACKAGE))?;
        let dir = cache.join(format!("qemu-{}", apt::path_safe(&version)));
        if dir.exists() {
            let q = extracted(&dir);
            eprintln!("xtask: vm-setup: qemu: cached copy {} ({})", q.binary.display(), q.version()?);
            return Ok(q);
        }
    }
    if source != QemuSource::Extract {
        eprintln!("xtask: vm-setup: qemu: apt-get install -y --no-install-recommends --no-remove {PACKAGE}");
        // A refusal (apt would have to remove something) is not cured by apt-get update.
        let res = apt.ensure_lists("installing qemu").and_then(|()| {
            let out = Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends", "--no-remove", PACKAGE])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .context("could not start apt-get install")?;
            if !out.status.success() {
                bail!("apt-get install {PACKAGE} refused: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            Ok(())
        });
        match res {
            Ok(()) => {
                let q = installed().context("apt installed qemu but qemu-system-x86_64 is not on PATH")?;
                eprintln!("xtask: vm-setup: qemu: installed {} ({})", q.binary.display(), q.version()?);
                return Ok(q);
            }
            Err(e) if source == QemuSource::Auto => {
                eprintln!("xtask: vm-setup: qemu: {e:#}; extracting a private copy instead");
            }
            Err(e) => return Err(e),
        }
    }
    extract(apt, cache)
}

fn installed() -> Option<Qemu> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(BINARY))
        .find(|p| p.is_file())
        .map(|binary| Qemu { binary, lib_dirs: Vec::new(), data_dirs: Vec::new() })
}

fn extracted(dir: &Path) -> Qemu {
    Qemu {
        binary: dir.join("usr/bin").join(BINARY),
        lib_dirs: vec![dir.join("usr/lib/x86_64-linux-gnu"), dir.join("lib/x86_64-linux-gnu")],
        data_dirs: vec![dir.join("usr/share/qemu"), dir.join("usr/share/seabios")],
    }
}

fn extract(apt: &Apt, cache: &Path) -> Result<Qemu> {
    // One retry scope: stale lists name debs the archive may no longer have.
    let dir = apt.with_fresh_lists("extracting qemu", |a| {
        let version = a.candidate(PACKAGE)?;
        let dir = cache.join(format!("qemu-{}", apt::path_safe(&version)));
        if !dir.exists() {
            let packages = a.simulated_installs(PACKAGE)?;
            eprintln!("xtask: vm-setup: qemu: downloading {} debs for a private {PACKAGE} {version}", packages.len());
            let debs = a.download_many(&packages, &apt::debs_dir(cache))?;
            apt::extract_all(&debs, &dir)?;
            for d in &debs {
                let _ = std::fs::remove_file(d);
            }
        }
        Ok(dir)
    })?;
    let q = extracted(&dir);
    let v = q.version().with_context(|| format!("the extracted qemu in {} does not run", dir.display()))?;
    eprintln!("xtask: vm-setup: qemu: private copy {} ({v})", q.binary.display());
    Ok(q)
}
