//! `cargo xtask package`: release binaries (the agent with its eBPF object embedded), a .deb
//! for each of truce-agent and truce-arbiter, and a tarball of the same files, in
//! `target/package/`.
//!
//! The .debs are built with Debian's own `dpkg-deb --build` from a staged tree rather than
//! cargo-deb: dpkg is on every Debian machine (nothing to build or pin), the staged tree is
//! what the tarball and the VM install test reuse, and every file's path, mode and owner is
//! spelled out here instead of in Cargo metadata.
mod deb;
mod stage;
pub mod systemd;

use crate::util::{WORKSPACE, cargo_artifacts, run_step, workspace_root};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages, their binaries and their units.
pub const PACKAGES: [Package; 2] = [
    Package {
        name: "truce-agent",
        binary: "truce-agent",
        config: "agent.toml",
        summary: "truce per-host agent: interference probes, bids and cgroup v2 leases",
        description: "Attaches eBPF probes to the scheduler, block I/O and network, reads PSI and\n cgroup v2 files, estimates which workload slows which, bids to truce-arbiter\n and applies its decisions as cgroup v2 writes held by leases that revert on\n their own (and on stop).",
        extra_depends: &[],
    },
    Package {
        name: "truce-arbiter",
        binary: "truce-arbiter",
        config: "arbiter.toml",
        summary: "truce arbiter: market rounds and credit ledger for truce agents",
        description: "Accepts truce agents over QUIC with mutual TLS, resolves their bids per\n host each round and keeps the credit ledger.",
        extra_depends: &["adduser"],
    },
];

#[derive(Clone, Copy, Debug)]
pub struct Package {
    pub name: &'static str,
    pub binary: &'static str,
    /// File name under /etc/truce, written from `<binary> config --print-default`.
    pub config: &'static str,
    pub summary: &'static str,
    /// Extended description, continuation lines already indented by one space.
    pub description: &'static str,
    pub extra_depends: &'static [&'static str],
}

impl Package {
    pub fn unit(&self) -> String {
        format!("{}.service", self.name)
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Cargo profile of the binaries: `release` for shipping, `dev` for a quick test build.
    #[arg(long, default_value = "release")]
    pub profile: String,
}

impl Default for Args {
    fn default() -> Self {
        Self { profile: "release".into() }
    }
}

/// What one package run produced.
#[derive(Debug)]
pub struct Built {
    pub name: &'static str,
    pub deb: PathBuf,
    pub tarball: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let built = build(&args.profile)?;
    for b in &built {
        for f in [&b.deb, &b.tarball] {
            let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
            println!("{}  ({:.1} MiB)", f.display(), size as f64 / 1048576.0);
        }
    }
    Ok(())
}

/// Where a profile's packages go: `target/package/` for release, `target/package/<profile>/` otherwise.
pub fn out_dir(profile: &str) -> PathBuf {
    let base = workspace_root().join("target/package");
    if profile == "release" { base } else { base.join(profile) }
}

/// Build the binaries with `profile`, stage, check the units, and write the .debs and tarballs.
pub fn build(profile: &str) -> Result<Vec<Built>> {
    let binaries = build_binaries(profile)?;
    let out = out_dir(profile);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let epoch = source_date_epoch();
    let mut built = Vec::new();
    for pkg in PACKAGES {
        let binary = binaries.iter().find(|(n, _)| n == pkg.binary).map(|(_, p)| p.clone());
        let binary = binary.with_context(|| format!("cargo built no {} executable", pkg.binary))?;
        let tree = out.join("stage").join(pkg.name);
        stage::stage(&pkg, &binary, &tree)?;
        systemd::verify_staged(&tree, &[pkg.unit()]).with_context(|| format!("the {} unit failed systemd-analyze verify", pkg.name))?;
        let control = deb::control(&pkg, &tree)?;
        std::fs::write(tree.join("DEBIAN/control"), control)?;
        let arch = "amd64";
        let deb = out.join(format!("{}_{}_{arch}.deb", pkg.name, version()));
        let mut cmd = Command::new("dpkg-deb");
        cmd.args(["--root-owner-group", "-Zxz", "--build"]).arg(&tree).arg(&deb).env("SOURCE_DATE_EPOCH", &epoch);
        run_step(&format!("package {}", pkg.name), &mut cmd)?;
        let tarball = out.join(format!("{}_{}_{arch}.tar.gz", pkg.name, version()));
        let mut tar = Command::new("tar");
        tar.args(["--owner=0", "--group=0", "--numeric-owner", "--sort=name", "--exclude=./DEBIAN"])
            .arg(format!("--mtime=@{epoch}"))
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(&tree)
            .arg(".");
        run_step(&format!("tarball {}", pkg.name), &mut tar)?;
        deb::check(&deb, &pkg)?;
        built.push(Built { name: pkg.name, deb, tarball });
    }
    Ok(built)
}

pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn build_binaries(profile: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = crate::util::cargo();
    cmd.args(["build", "--locked", "--profile", profile]);
    if profile == "dev" {
        // The VM suite's packages: built with the test build's feature set so they reuse its
        // artifacts instead of compiling the arbiter a second time (see `util::WORKSPACE`).
        // That set adds `partition-drill`, a library method the binaries never call.
        cmd.args(WORKSPACE).args(["--bin", "truce-agent", "--bin", "truce-arbiter"]);
    } else {
        cmd.args(["-p", "truce-agent", "-p", "truce-arbiter", "--bins"]);
    }
    cmd.arg("--message-format=json-render-diagnostics");
    let found = cargo_artifacts(&mut cmd, "bin")?;
    if found.is_empty() {
        bail!("cargo build produced no binaries");
    }
    Ok(found)
}

/// The last commit's time, so two builds of one commit give identical archives.
fn source_date_epoch() -> String {
    let out = Command::new("git").args(["log", "-1", "--format=%ct"]).current_dir(workspace_root()).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "0".into(),
    }
}

/// The maintainer scripts of a package, from deploy/debian/<short name>/.
pub fn scripts_dir(pkg: &Package) -> PathBuf {
    workspace_root().join("deploy/debian").join(pkg.name.trim_start_matches("truce-"))
}

pub fn units_dir() -> PathBuf {
    workspace_root().join("deploy/systemd")
}

pub(crate) fn copy_mode(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}
