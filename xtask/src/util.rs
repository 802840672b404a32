//! Small helpers shared by the tasks: running commands with a progress line, paths.
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Where downloads and built tools are cached between runs (`~/.cache/truce`).
pub fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/truce")
}

/// A nested `cargo` (the one running xtask), without the package variables `cargo run` gave
/// xtask. Build scripts that ask to rerun when one changes (ring's reads
/// `CARGO_MANIFEST_DIR`) would otherwise see `/…/xtask` here and nothing in a plain
/// `cargo build`, and rebuild ring and all that depends on it (most of the workspace, about
/// ten minutes under load) every time the two alternate.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let from_cargo_run = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || ["CARGO_CRATE_NAME", "CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE"].contains(&name.as_ref());
        if from_cargo_run {
            cmd.env_remove(name.as_ref());
        }
    }
    // A CI run builds once on a fresh clone: incremental state would only take disk (about
    // 1.5 GB for the workspace) that the test executables need.
    if std::env::var_os("CI").is_some_and(|v| v == "true") && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        cmd.env("CARGO_INCREMENTAL", "0");
    }
    cmd
}

/// The packages every nested build and test selects. Cargo unifies features over the selected
/// packages, so `-p truce-arbiter` alone (no `partition-drill`, which the tests enable) or
/// `-p truce-tests` alone would build a second copy of the arbiter and its dependents beside
/// the one `cargo test --workspace` builds: minutes of compiling and gigabytes of disk.
pub const WORKSPACE: [&str; 3] = ["--workspace", "--exclude", "truce-agent-ebpf"];

/// Print a step line, run the command, and fail with the step's name if it fails.
pub fn run_step(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {step}: {}", describe(cmd));
    let status = cmd.status().with_context(|| format!("{step}: could not start {}", describe(cmd)))?;
    if !status.success() {
        bail!("{step}: `{}` failed with {status}", describe(cmd));
    }
    Ok(())
}

/// Run and capture stdout; fail with the step's name and stderr on error.
pub fn output(step: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{step}: could not start {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{step}: `{}` failed with {}: {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run cargo and collect `(target name, executable)` of compiler artifacts of one kind.
pub fn cargo_artifacts(cmd: &mut Command, kind: &str) -> Result<Vec<(String, PathBuf)>> {
    eprintln!("xtask: {}", describe(cmd));
    let out = cmd.current_dir(workspace_root()).stderr(Stdio::inherit()).output().context("could not start cargo")?;
    if !out.status.success() {
        bail!("`{}` failed with {}", describe(cmd), out.status);
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let is_kind = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|x| x == kind));
        if let (true, Some(name), Some(exe)) = (is_kind, msg["target"]["name"].as_str(), msg["executable"].as_str()) {
            found.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    Ok(found)
}
