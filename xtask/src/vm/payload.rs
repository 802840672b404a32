//! What a run puts into the guest: the test binaries and the agent built by cargo, their
//! shared libraries (as `ldd` resolves them on the host), and the command to run.
use super::cpio::Cpio;
use crate::util::{WORKSPACE, cargo_artifacts, workspace_root};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The test binaries (in the `truce-tests` package) that run inside the VM, one boot each.
/// A missing one is skipped with a note, so suites can land independently.
pub const VM_SUITES: [&str; 4] = ["vm_cgroup", "host_probes", "vm_market", "package_install"];

/// The suite that installs the .debs: it gets them in /payload/ (see [`package_files`]).
pub const PACKAGE_SUITE: &str = "package_install";

/// The packages, built with the dev profile (`cargo xtask package --profile dev`), as guest
/// files plus the variables that name them.
pub fn package_files() -> Result<Vec<GuestFile>> {
    let built = crate::package::build("dev")?;
    Ok(built
        .iter()
        .map(|b| GuestFile {
            guest: format!("/payload/{}.deb", b.name),
            host: b.deb.clone(),
            env: Some(format!("{}_DEB", b.name.to_uppercase().replace('-', "_"))),
        })
        .collect())
}

/// A data file copied into the guest as is, optionally named by an environment variable.
#[derive(Clone, Debug)]
pub struct GuestFile {
    pub guest: String,
    pub host: PathBuf,
    pub env: Option<String>,
}

/// Where the agent lives in the guest; tests find it through `TRUCE_AGENT_BIN`.
pub const GUEST_AGENT: &str = "/bin/truce-agent";
/// The arbiter and the demo's load generator (`TRUCE_ARBITER_BIN`, `TRUCE_LOAD_BIN`).
pub const GUEST_ARBITER: &str = "/bin/truce-arbiter";
pub const GUEST_LOAD: &str = "/bin/truce-demo-load";
pub const GUEST_SCENARIO: &str = "/bin/truce-demo-scenario";

/// Host programs the suites run that busybox lacks (host_probes' TCP sender uses bash's
/// /dev/tcp). Copied with their libraries; missing ones are left out with a note.
const HOST_TOOLS: [&str; 1] = ["bash"];

fn host_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

pub struct Built {
    pub suites: Vec<(String, PathBuf)>,
    pub agent: PathBuf,
    pub arbiter: PathBuf,
    pub load: PathBuf,
    pub scenario: PathBuf,
}

fn cargo() -> Command {
    crate::util::cargo()
}

/// The suites of [`VM_SUITES`] that exist in the source tree (and pass `only`, if given).
pub fn present_suites(only: &[String]) -> Vec<&'static str> {
    let dir = workspace_root().join("tests/tests");
    VM_SUITES
        .iter()
        .copied()
        .filter(|s| only.is_empty() || only.iter().any(|o| o == s))
        .filter(|s| {
            let present = dir.join(format!("{s}.rs")).is_file() || dir.join(s).join("main.rs").is_file();
            if !present {
                eprintln!("xtask: vm-test: note: suite {s} does not exist yet (tests/tests/{s}.rs); skipping it");
            }
            present
        })
        .collect()
}

/// Build the suites' test executables and the binaries (debug); see [`build_with`].
pub fn build(suites: &[&str]) -> Result<Built> {
    build_with(suites, false)
}

/// Build the suites' test executables and the guest's binaries, in release for the demo and
/// the benchmarks (a debug agent under TCG costs the victim more CPU than truce would in
/// production); returns their paths from cargo's JSON.
pub fn build_with(suites: &[&str], release: bool) -> Result<Built> {
    let mut built = Built { suites: Vec::new(), agent: PathBuf::new(), arbiter: PathBuf::new(), load: PathBuf::new(), scenario: PathBuf::new() };
    if !suites.is_empty() {
        let mut cmd = cargo();
        cmd.arg("test").args(WORKSPACE).args(["--no-run", "--message-format=json-render-diagnostics"]);
        for s in suites {
            cmd.args(["--test", s]);
        }
        for (name, exe) in cargo_artifacts(&mut cmd, "test")? {
            if suites.contains(&name.as_str()) {
                built.suites.push((name, exe));
            }
        }
        for s in suites {
            if !built.suites.iter().any(|(n, _)| n == s) {
                bail!("cargo built no test executable for suite {s}");
            }
        }
    }
    let mut cmd = cargo();
    cmd.arg("build").args(WORKSPACE);
    if release {
        cmd.arg("--release");
    }
    cmd.args(["--bin", "truce-agent", "--bin", "truce-arbiter", "--bin", "demo_load", "--bin", "demo_scenario", "--message-format=json-render-diagnostics"]);
    let bins = cargo_artifacts(&mut cmd, "bin")?;
    let find = |name: &str| bins.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone()).with_context(|| format!("cargo built no {name} executable"));
    built.agent = find("truce-agent")?;
    built.arbiter = find("truce-arbiter")?;
    built.load = find("demo_load")?;
    built.scenario = find("demo_scenario")?;
    Ok(built)
}

/// Shared libraries of `binary` as the host's loader resolves them, including the loader.
fn libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output().context("could not run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary: nothing to add.
        if text.contains("not a dynamic executable") || String::from_utf8_lossy(&out.stderr).contains("not a dynamic") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim().split(' ').next().unwrap_or(""),
            None => line.split(' ').next().unwrap_or(""),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        } else if line.contains("not found") {
            bail!("{}: library not found on the host: {line}", binary.display());
        }
    }
    Ok(libs)
}

/// Binary bytes without debug info (test binaries are hundreds of MB with it, and the guest
/// unpacks the initramfs into RAM). Symbols stay, so backtraces still name functions.
fn stripped(binary: &Path, scratch: &Path) -> Result<Vec<u8>> {
    let status = Command::new("objcopy").arg("--strip-debug").arg(binary).arg(scratch).status();
    let path = if matches!(status, Ok(s) if s.success()) { scratch } else { binary };
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let _ = std::fs::remove_file(scratch);
    Ok(data)
}

/// What the guest should do once booted.
pub enum Job<'a> {
    /// Run one suite: `binary --include-ignored --test-threads=1 [filter]`.
    Suite { name: &'a str, binary: &'a Path, filter: Option<&'a str>, timeout_secs: u64, kernel_label: &'a str, files: &'a [GuestFile] },
    /// An interactive shell with the given binaries available.
    Shell { extra: Vec<(String, PathBuf)> },
    /// One shell command line (the demo and the VM benchmarks), with a time limit and data
    /// files (the host-side arbiter's certificates).
    Command { script: &'a str, timeout_secs: u64, files: &'a [GuestFile] },
}

/// The per-run archive: binaries, libraries, and `/payload.sh` or `/payload.interactive`.
pub fn archive(job: &Job, built: &Built, scratch_dir: &Path) -> Result<Vec<u8>> {
    let mut c = Cpio::new();
    let mut binaries: Vec<(String, PathBuf)> = vec![
        (GUEST_AGENT.to_string(), built.agent.clone()),
        (GUEST_ARBITER.to_string(), built.arbiter.clone()),
        (GUEST_LOAD.to_string(), built.load.clone()),
        (GUEST_SCENARIO.to_string(), built.scenario.clone()),
    ];
    match job {
        Job::Suite { name, binary, .. } => binaries.push((format!("/payload/{name}"), binary.to_path_buf())),
        Job::Shell { extra } => binaries.extend(extra.iter().map(|(n, p)| (format!("/payload/{n}"), p.clone()))),
        Job::Command { .. } => {}
    }
    for tool in HOST_TOOLS {
        match host_tool(tool) {
            Some(p) => binaries.push((format!("/bin/{tool}"), p)),
            None => eprintln!("xtask: vm-test: note: no {tool} on this host; the guest will not have it"),
        }
    }
    let mut libs: Vec<PathBuf> = Vec::new();
    for (guest, host) in &binaries {
        let data = stripped(host, &scratch_dir.join("stripped.tmp"))?;
        c.file(guest, 0o755, &data);
        for l in libraries(host)? {
            if !libs.contains(&l) {
                libs.push(l);
            }
        }
    }
    for lib in &libs {
        // Copy the target of symlinks (/lib64/ld-linux-x86-64.so.2 points into /lib) under the
        // name the binary asks for.
        let data = std::fs::read(lib).with_context(|| format!("reading {}", lib.display()))?;
        c.file(&lib.to_string_lossy(), 0o755, &data);
    }
    let mut env = format!(
        "export TRUCE_VM_GUEST=1 TRUCE_AGENT_BIN={GUEST_AGENT} TRUCE_ARBITER_BIN={GUEST_ARBITER} TRUCE_LOAD_BIN={GUEST_LOAD} RUST_BACKTRACE=1 LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu\n"
    );
    // `TRUCE_VM_PRELUDE`: shell run in the guest before the job, for experiments (a scheduler
    // feature through debugfs, say). Printed, so that a run's log says it was not stock.
    if let Ok(prelude) = std::env::var("TRUCE_VM_PRELUDE") {
        env.push_str(&format!("echo 'truce-vm: prelude: {}'\n{prelude}\n", prelude.replace('\'', "")));
    }
    if let Job::Suite { files, .. } | Job::Command { files, .. } = job {
        for f in files.iter() {
            let data = std::fs::read(&f.host).with_context(|| format!("reading {}", f.host.display()))?;
            c.file(&f.guest, 0o644, &data);
            if let Some(var) = &f.env {
                env.push_str(&format!("export {var}={}\n", f.guest));
            }
        }
    }
    match job {
        Job::Suite { name, filter, timeout_secs, kernel_label, .. } => {
            let filter = filter.map(|f| format!(" '{}'", f.replace('\'', ""))).unwrap_or_default();
            let script = format!(
                "{env}export TRUCE_VM_KERNEL={kernel_label}\ncd /tmp\n/payload/{name} --include-ignored --test-threads=1 --nocapture{filter}\n"
            );
            c.file("payload.sh", 0o755, script.as_bytes());
            c.file("payload.timeout", 0o644, format!("{timeout_secs}\n").as_bytes());
        }
        Job::Command { script, timeout_secs, .. } => {
            c.file("payload.sh", 0o755, format!("{env}cd /tmp\n{script}\n").as_bytes());
            c.file("payload.timeout", 0o644, format!("{timeout_secs}\n").as_bytes());
        }
        Job::Shell { .. } => {
            c.file("payload.interactive", 0o644, b"");
            c.file("etc/profile", 0o644, format!("{env}export PS1='truce-vm# '\n").as_bytes());
        }
    }
    Ok(c.finish())
}

/// Base archive (gzip) + padding to 4 bytes + the per-run archive: the kernel unpacks
/// concatenated archives in order, and an uncompressed one must start 4-byte aligned.
pub fn write_initrd(base: &Path, extra: &[u8], dest: &Path) -> Result<()> {
    let mut data = std::fs::read(base).with_context(|| format!("reading {}", base.display()))?;
    while !data.len().is_multiple_of(4) {
        data.push(0);
    }
    data.extend_from_slice(extra);
    std::fs::write(dest, data).with_context(|| format!("writing {}", dest.display()))
}
