//! The Debian kernels the suite boots: resolved from apt, downloaded, extracted (never installed
//! into /boot) and given a module index, cached by package version.
use super::apt::{self, Apt};
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernels of the matrix, by the label users pass to `--kernel`.
pub const LABELS: [&str; 2] = ["6.12", "6.1"];

/// Modules the initramfs loads: virtio for /dev/vda (io.max tests) and /dev/vdb, ext4 (which
/// also mounts ext2) for the scratch file system on /dev/vdb, and crc32c, which ext4 asks the
/// crypto API for (not a modules.dep dependency, so it must be named).
pub const MODULES: [&str; 4] = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"];

#[derive(Clone, Debug)]
pub struct Kernel {
    pub label: String,
    pub package: String,
    pub version: String,
    /// What `uname -r` says in the guest (the directory under lib/modules).
    pub release: String,
    pub root: PathBuf,
    pub vmlinuz: PathBuf,
}

/// Which package a label means, right now: the newest 6.12 from bookworm-security, or what
/// `linux-image-amd64` depends on (the security archive drops old versions, so never pin).
pub fn resolve(apt: &Apt, label: &str) -> Result<(String, String)> {
    apt.with_fresh_lists(&format!("kernel {label}"), |a| {
        let package = match label {
            "6.12" => {
                let names = a.search_names(r"^linux-image-6\.12\.[0-9]+\+deb12-amd64$")?;
                names
                    .into_iter()
                    .max_by_key(|n| patch_level(n))
                    .context("apt knows no linux-image-6.12.*+deb12-amd64 (is bookworm-security in the sources?)")?
            }
            "6.1" => a.depends_on("linux-image-amd64", "linux-image-6.1.")?,
            other => bail!("unknown kernel {other:?}: use one of {}", LABELS.join(", ")),
        };
        let version = a.candidate(&package)?;
        Ok((package, version))
    })
}

fn patch_level(name: &str) -> u32 {
    name.strip_prefix("linux-image-6.12.")
        .and_then(|r| r.split('+').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub fn ensure(apt: &Apt, cache: &Path, busybox: &Path, label: &str) -> Result<Kernel> {
    let (package, version) = resolve(apt, label)?;
    let root = cache.join(format!("kernel-{package}_{}", apt::path_safe(&version)));
    if root.exists() {
        eprintln!("xtask: vm-setup: kernel {label}: cached {package} {version}");
    } else {
        eprintln!("xtask: vm-setup: kernel {label}: downloading {package} {version}");
        let debs = cache.join("debs");
        let deb = apt.with_fresh_lists(&format!("downloading {package}"), |a| a.download(&package, Some(&version), &debs))?;
        eprintln!("xtask: vm-setup: kernel {label}: extracting and indexing modules");
        // Extracted but not yet indexed; renamed to `root` only when complete.
        let staged = apt::partial_of(&root).with_extension("unindexed");
        let _ = std::fs::remove_dir_all(&staged);
        apt::extract(&deb, &staged)?;
        let release = release_of(&staged)?;
        // The deb ships no modules.dep (its postinst would run depmod); busybox builds one.
        let out = Command::new(busybox)
            .args(["depmod", "-b"])
            .arg(&staged)
            .arg(&release)
            .output()
            .context("could not run busybox depmod")?;
        if !out.status.success() {
            bail!("busybox depmod failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        std::fs::rename(&staged, &root)?;
        let _ = std::fs::remove_file(&deb);
    }
    let release = release_of(&root)?;
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.is_file() {
        bail!("{} has no boot/vmlinuz-{release}", root.display());
    }
    Ok(Kernel { label: label.to_string(), package, version, release, root, vmlinuz })
}

fn release_of(root: &Path) -> Result<String> {
    let dir = root.join("lib/modules");
    let mut releases = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    releases.sort();
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one release under {}, found {releases:?}", dir.display()),
    }
}

/// A module file for the initramfs: where it goes (decompressed) and its bytes.
pub struct ModuleFile {
    pub guest_path: String,
    pub data: Vec<u8>,
}

/// The wanted modules and everything they depend on, decompressed, plus a modules.dep for
/// exactly that subset (busybox modprobe reads only modules.dep), plus the names /init
/// should modprobe. Built-in modules (virtio_pci on 6.12) are left out.
pub fn initramfs_modules(kernel: &Kernel, busybox: &Path) -> Result<(Vec<ModuleFile>, String, Vec<&'static str>)> {
    let base = kernel.root.join("lib/modules").join(&kernel.release);
    let dep_text = std::fs::read_to_string(base.join("modules.dep")).context("reading modules.dep")?;
    let builtin = std::fs::read_to_string(base.join("modules.builtin")).unwrap_or_default();
    let deps: Vec<(String, Vec<String>)> = dep_text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim().to_string(), d.split_whitespace().map(str::to_string).collect()))
        .collect();
    let mut wanted = BTreeSet::new();
    let mut load = Vec::new();
    for name in MODULES {
        if builtin.lines().any(|l| module_name(l) == name) {
            continue;
        }
        load.push(name);
        let (path, d) = deps
            .iter()
            .find(|(p, _)| module_name(p) == name)
            .with_context(|| format!("module {name} is neither built in nor in modules.dep of {}", kernel.release))?;
        wanted.insert(path.clone());
        wanted.extend(d.iter().cloned());
    }
    let mut files = Vec::new();
    let mut index = String::new();
    for (path, d) in deps.iter().filter(|(p, _)| wanted.contains(p)) {
        let data = decompress(busybox, &base.join(path))?;
        files.push(ModuleFile { guest_path: format!("lib/modules/{}/{}", kernel.release, plain(path)), data });
        let d: Vec<String> = d.iter().map(|x| plain(x)).collect();
        index.push_str(&format!("{}: {}\n", plain(path), d.join(" ")));
    }
    Ok((files, index, load))
}

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

fn plain(path: &str) -> String {
    path.trim_end_matches(".xz").trim_end_matches(".zst").trim_end_matches(".gz").to_string()
}

fn decompress(busybox: &Path, path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let mut cmd = if name.ends_with(".xz") {
        let mut c = Command::new(busybox);
        c.arg("xzcat");
        c
    } else if name.ends_with(".gz") {
        let mut c = Command::new(busybox);
        c.arg("zcat");
        c
    } else if name.ends_with(".zst") {
        let mut c = Command::new("zstd");
        c.args(["-dc"]);
        c
    } else {
        return std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    };
    let out = cmd.arg(path).output().with_context(|| format!("decompressing {}", path.display()))?;
    if !out.status.success() {
        bail!("decompressing {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}
