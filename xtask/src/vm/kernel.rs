//! The Debian kernels the suite boots: resolved from apt, downloaded, extracted (never installed
//! into /boot) and given a module index, cached by package version.
use super::apt::{self, Apt};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernels of the matrix, by the label users pass to `--kernel`.
pub const LABELS: [&str; 2] = ["6.12", "6.1"];

/// Modules the initramfs loads: virtio for /dev/vda (io.max tests) and /dev/vdb, ext4 (which
/// also mounts ext2) for the scratch file system on /dev/vdb, and crc32c, which ext4 asks the
/// crypto API for (not a modules.dep dependency, so it must be named).
pub const MODULES: [&str; 5] = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "virtio_net"];

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
fn resolve(a: &Apt, label: &str) -> Result<(String, String)> {
    {
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
    }
}

fn patch_level(name: &str) -> u32 {
    name.strip_prefix("linux-image-6.12.")
        .and_then(|r| r.split('+').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub fn ensure(apt: &Apt, cache: &Path, label: &str) -> Result<Kernel> {
    // Resolve and download under one retry: with stale lists the newest known version may
    // already be gone from the security archive, and only fresh lists name its successor.
    let (package, version, root) = apt.with_fresh_lists(&format!("kernel {label}"), |a| {
        let (package, version) = resolve(a, label)?;
        let root = cache.join(format!("kernel-{package}_{}", apt::path_safe(&version)));
        if root.exists() {
            eprintln!("xtask: vm-setup: kernel {label}: cached {package} {version}");
        } else {
            eprintln!("xtask: vm-setup: kernel {label}: downloading {package} {version}");
            let deb = a.download(&package, Some(&version), &apt::debs_dir(cache))?;
            eprintln!("xtask: vm-setup: kernel {label}: extracting");
            apt::extract(&deb, &root)?;
            let _ = std::fs::remove_file(&deb);
        }
        Ok((package, version, root))
    })?;
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

/// The modules the initramfs needs: [`MODULES`] and their dependencies, decompressed, in load
/// order (dependencies first), plus a modules.dep for exactly that subset so `modprobe` works in
/// vm-shell. Built-in modules (virtio_pci on 6.12) are left out.
///
/// Dependencies come from each module's own `.modinfo` (`depends=`, written by modpost from the
/// same symbol tables depmod reads). Running `busybox depmod` over the whole tree instead took
/// 75 s on the 6.12 kernel (it decompresses all ~4,000 .ko.xz files) for the handful we load.
pub fn initramfs_modules(kernel: &Kernel, busybox: &Path) -> Result<(Vec<ModuleFile>, String)> {
    let base = kernel.root.join("lib/modules").join(&kernel.release);
    let builtin: BTreeSet<String> =
        std::fs::read_to_string(base.join("modules.builtin")).unwrap_or_default().lines().map(module_name).collect();
    let mut index = BTreeMap::new();
    walk(&base.join("kernel"), &base, &mut index)?;
    let mut order: Vec<(String, Vec<u8>, Vec<String>)> = Vec::new();
    for name in MODULES {
        add_module(name, &index, &builtin, &base, busybox, &mut order, &mut Vec::new())?;
    }
    let mut files = Vec::new();
    let mut dep_file = String::new();
    let guest_dir = format!("lib/modules/{}", kernel.release);
    for (i, (path, data, _)) in order.iter().enumerate() {
        // kmod's convention: all transitive dependencies, the one to load first last.
        let deps: Vec<&str> = order[..i].iter().rev().filter(|(p, _, _)| needs(&order, i, p)).map(|(p, _, _)| p.as_str()).collect();
        dep_file.push_str(&format!("{path}: {}\n", deps.join(" ")));
        files.push(ModuleFile { guest_path: format!("{guest_dir}/{path}"), data: data.clone() });
    }
    Ok((files, dep_file))
}

/// Whether module `i` of `order` depends, directly or not, on the module at `path`.
fn needs(order: &[(String, Vec<u8>, Vec<String>)], i: usize, path: &str) -> bool {
    let mut stack = vec![i];
    let mut seen = BTreeSet::new();
    while let Some(j) = stack.pop() {
        for dep in &order[j].2 {
            if dep == path {
                return true;
            }
            if let Some(k) = order.iter().position(|(p, _, _)| p == dep)
                && seen.insert(k)
            {
                stack.push(k);
            }
        }
    }
    false
}

/// Depth-first, dependencies before dependents; `path` (module names) catches cycles.
fn add_module(
    name: &str,
    index: &BTreeMap<String, String>,
    builtin: &BTreeSet<String>,
    base: &Path,
    busybox: &Path,
    order: &mut Vec<(String, Vec<u8>, Vec<String>)>,
    path: &mut Vec<String>,
) -> Result<()> {
    let name = name.replace('-', "_");
    if builtin.contains(&name) {
        return Ok(());
    }
    let rel = index.get(&name).with_context(|| format!("module {name} is neither built in nor under {}", base.display()))?;
    let plain_rel = plain(rel);
    if order.iter().any(|(p, _, _)| *p == plain_rel) {
        return Ok(());
    }
    if path.contains(&name) {
        bail!("module dependency cycle: {} -> {name}", path.join(" -> "));
    }
    let data = decompress(busybox, &base.join(rel))?;
    let deps = modinfo_depends(&data);
    path.push(name.clone());
    let mut dep_paths = Vec::new();
    for dep in &deps {
        add_module(dep, index, builtin, base, busybox, order, path)?;
        if let Some(r) = index.get(&dep.replace('-', "_")) {
            dep_paths.push(plain(r));
        }
    }
    path.pop();
    order.push((plain_rel, data, dep_paths));
    Ok(())
}

/// The `depends=` entry of a module's .modinfo section (NUL-separated key=value strings).
fn modinfo_depends(data: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = data.windows(key.len()).position(|w| w == key) else { return Vec::new() };
    let rest = &data[at + key.len()..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).split(',').map(str::trim).filter(|d| !d.is_empty()).map(str::to_string).collect()
}

/// Module name -> path relative to lib/modules/<release>, for every module file.
fn walk(dir: &Path, base: &Path, index: &mut BTreeMap<String, String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, base, index)?;
        } else if path.to_string_lossy().contains(".ko")
            && let Ok(rel) = path.strip_prefix(base)
        {
            let rel = rel.to_string_lossy().into_owned();
            index.insert(module_name(&rel), rel);
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_6_12_is_chosen_numerically_not_lexically() {
        let names = ["linux-image-6.12.99+deb12-amd64", "linux-image-6.12.117+deb12-amd64", "linux-image-6.12.9+deb12-amd64"];
        assert_eq!(names.iter().max_by_key(|n| patch_level(n)), Some(&"linux-image-6.12.117+deb12-amd64"));
    }

    #[test]
    fn module_names_normalise_dashes_and_compression() {
        assert_eq!(module_name("kernel/arch/x86/crypto/crc32c-intel.ko.xz"), "crc32c_intel");
        assert_eq!(module_name("kernel/drivers/block/virtio_blk.ko"), "virtio_blk");
        assert_eq!(plain("kernel/fs/ext4/ext4.ko.xz"), "kernel/fs/ext4/ext4.ko");
    }

    #[test]
    fn depends_is_read_from_modinfo_strings() {
        let modinfo = b"\x7fELF...\0license=GPL\0depends=jbd2,mbcache,crc16\0intree=Y\0";
        assert_eq!(modinfo_depends(modinfo), ["jbd2", "mbcache", "crc16"]);
        assert!(modinfo_depends(b"\0depends=\0name=virtio\0").is_empty());
        assert!(modinfo_depends(b"no modinfo here").is_empty());
    }
}
