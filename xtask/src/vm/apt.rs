//! The few apt operations the VM assets need, with `apt-get update` run only when a lookup
//! or a download shows the package lists are missing or stale.
use crate::util::{describe, output};
use anyhow::{Context, Result, bail};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Apt {
    updated: Cell<bool>,
    pkgcache: PathBuf,
}

impl Apt {
    /// `cache` holds apt's binary package cache: Debian's docker images disable the system
    /// one, and rebuilding it costs 1.5 s per apt-cache call, which made warm runs slow.
    pub fn new(cache: &Path) -> Self {
        Self { updated: Cell::new(false), pkgcache: cache.to_path_buf() }
    }

    /// An apt-cache/apt-get command that keeps its package cache in ours. apt checks the
    /// cache against the lists, so an `apt-get update` invalidates it by itself.
    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let _ = std::fs::create_dir_all(&self.pkgcache);
        cmd.arg("-o").arg(format!("Dir::Cache::pkgcache={}", self.pkgcache.join("pkgcache.bin").display()));
        cmd.arg("-o").arg(format!("Dir::Cache::srcpkgcache={}", self.pkgcache.join("srcpkgcache.bin").display()));
        cmd
    }

    /// Whether any package lists exist (a fresh container has none until `apt-get update`).
    pub fn ensure_lists(&self, what: &str) -> Result<()> {
        if lists_present() { Ok(()) } else { self.update(&format!("{what}: no apt package lists yet")) }
    }

    /// Run `f`; if it fails and the lists have not been refreshed in this run, refresh them and
    /// retry once. Stale lists show up as a missing candidate or a 404 on download.
    pub fn with_fresh_lists<T>(&self, what: &str, f: impl Fn(&Self) -> Result<T>) -> Result<T> {
        self.ensure_lists(what)?;
        match f(self) {
            Ok(v) => Ok(v),
            Err(first) if !self.updated.get() => {
                self.update(&format!("{what}: {first:#}"))?;
                f(self).with_context(|| format!("{what} (after apt-get update)"))
            }
            Err(e) => Err(e),
        }
    }

    fn update(&self, why: &str) -> Result<()> {
        eprintln!("xtask: vm-setup: apt-get update ({why})");
        let status = Command::new("apt-get")
            .args(["update", "-qq"])
            .status()
            .context("could not start apt-get update")?;
        if !status.success() {
            bail!("apt-get update failed with {status}");
        }
        self.updated.set(true);
        Ok(())
    }

    /// The candidate version apt would install, or an error when there is none.
    pub fn candidate(&self, package: &str) -> Result<String> {
        let text = output("apt-cache policy", self.cmd("apt-cache").args(["policy", package]))?;
        let candidate = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:"))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty() && v != "(none)");
        candidate.with_context(|| format!("apt has no candidate for {package}"))
    }

    /// Package names matching an anchored regex, by name only.
    pub fn search_names(&self, regex: &str) -> Result<Vec<String>> {
        let text = output("apt-cache search", self.cmd("apt-cache").args(["search", "--names-only", regex]))?;
        Ok(text.lines().filter_map(|l| l.split(" - ").next()).map(|s| s.trim().to_string()).collect())
    }

    /// The first `Depends:` of a package whose name starts with `prefix`.
    pub fn depends_on(&self, package: &str, prefix: &str) -> Result<String> {
        let text = output("apt-cache depends", self.cmd("apt-cache").args(["depends", package]))?;
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends:"))
            .map(str::trim)
            .find(|d| d.starts_with(prefix))
            .map(str::to_string)
            .with_context(|| format!("{package} has no dependency starting with {prefix}"))
    }

    /// The packages `apt-get install` would add for `package` (from a simulation, which
    /// changes nothing). Used to extract a private qemu when apt refuses to install one.
    pub fn simulated_installs(&self, package: &str) -> Result<Vec<String>> {
        let out = self
            .cmd("apt-get")
            .args(["install", "-s", "-y", "--no-install-recommends", package])
            .output()
            .context("could not start apt-get install -s")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let pkgs: Vec<String> =
            text.lines().filter_map(|l| l.strip_prefix("Inst ")).filter_map(|l| l.split(' ').next()).map(str::to_string).collect();
        if pkgs.is_empty() {
            bail!("apt-get install -s {package} lists nothing to install: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(pkgs)
    }

    /// `apt-get download package[=version]` into `dir`; returns the .deb path.
    pub fn download(&self, package: &str, version: Option<&str>, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let spec = match version {
            Some(v) => format!("{package}={v}"),
            None => package.to_string(),
        };
        // A leftover deb of another version would be mistaken for this one.
        while let Ok(old) = find_deb(dir, package) {
            std::fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        let mut cmd = self.cmd("apt-get");
        // Downloads go into our cache as root; apt's `_apt` sandbox user cannot write there.
        cmd.args(["download", "-qq", "-o", "APT::Sandbox::User=root", &spec]).current_dir(dir);
        let out = cmd.output().with_context(|| format!("could not start {}", describe(&cmd)))?;
        if !out.status.success() {
            bail!("`{}` failed: {}", describe(&cmd), String::from_utf8_lossy(&out.stderr).trim());
        }
        find_deb(dir, package)
    }
}

impl Apt {
    /// `apt-get download` of several packages (candidate versions) in one call: one call per
    /// package cost 1.3 s each for qemu's 27.
    pub fn download_many(&self, packages: &[String], dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for p in packages {
            while let Ok(old) = find_deb(dir, p) {
                std::fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
            }
        }
        let mut cmd = self.cmd("apt-get");
        cmd.args(["download", "-qq", "-o", "APT::Sandbox::User=root"]).args(packages).current_dir(dir);
        let out = cmd.output().with_context(|| format!("could not start {}", describe(&cmd)))?;
        if !out.status.success() {
            bail!("`{}` failed: {}", describe(&cmd), String::from_utf8_lossy(&out.stderr).trim());
        }
        packages.iter().map(|p| find_deb(dir, p)).collect()
    }
}

fn find_deb(dir: &Path, package: &str) -> Result<PathBuf> {
    let prefix = format!("{package}_");
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(path);
        }
    }
    bail!("apt-get download left no {package}_*.deb in {}", dir.display())
}

fn lists_present() -> bool {
    std::fs::read_dir("/var/lib/apt/lists")
        .map(|rd| rd.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().contains("_Packages")))
        .unwrap_or(false)
}

/// `dpkg -x deb dest`, atomically: extract next to `dest` and rename, so an interrupted run
/// never leaves a half tree that a warm run would trust.
pub fn extract(deb: &Path, dest: &Path) -> Result<()> {
    let partial = partial_of(dest);
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    output("dpkg -x", Command::new("dpkg").arg("-x").arg(deb).arg(&partial))?;
    publish(&partial, dest)
}

/// Extract several debs into one tree (atomically, like [`extract`]).
pub fn extract_all(debs: &[PathBuf], dest: &Path) -> Result<()> {
    let partial = partial_of(dest);
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    for deb in debs {
        output("dpkg -x", Command::new("dpkg").arg("-x").arg(deb).arg(&partial))?;
    }
    publish(&partial, dest)
}

/// Debian versions contain `:` and `+`, which are awkward in paths.
pub fn path_safe(version: &str) -> String {
    version.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '+' { c } else { '_' }).collect()
}

/// `dest` with `.partial-<pid>` appended (not replacing an extension: versions contain dots).
/// The pid keeps two concurrent setups (the lead's `xtask test` and a developer's `vm-test`)
/// from extracting into the same directory.
pub fn partial_of(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".partial-{}", std::process::id()));
    dest.with_file_name(name)
}

/// Move a finished `partial` into place; if a concurrent run got there first, keep theirs.
pub fn publish(partial: &Path, dest: &Path) -> Result<()> {
    match std::fs::rename(partial, dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.exists() => {
            let _ = std::fs::remove_dir_all(partial);
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("renaming {} to {}", partial.display(), dest.display())),
    }
}

/// Where this run downloads debs (per process, see [`partial_of`]); emptied as they are extracted.
pub fn debs_dir(cache: &Path) -> PathBuf {
    cache.join(format!("debs-{}", std::process::id()))
}
