//! Deployment files that no cluster or init system here can run: the Kubernetes manifests
//! are checked against the API schema (PyPI's `kubernetes-validate`, which bundles the
//! schemas, in a cached venv), and the docs' generated parts are rewritten by `docs`.
use crate::util::{cache_dir, run_step, workspace_root};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const VALIDATOR: &str = "kubernetes-validate==1.37.0";
/// The oldest and the newest Kubernetes schemas the validator bundles: the manifests must
/// pass both (a field too new for 1.25, or one removed since, fails).
pub const KUBERNETES_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

fn venv() -> PathBuf {
    cache_dir().join("k8s-venv")
}

fn validator_bin() -> PathBuf {
    venv().join("bin/kubernetes-validate")
}

/// Create the venv and install the pinned validator unless a previous run did.
pub fn ensure_validator() -> Result<()> {
    let marker = venv().join(format!(".installed-{VALIDATOR}"));
    if marker.exists() && validator_bin().exists() {
        eprintln!("setup: [ok] {VALIDATOR} already in {}", venv().display());
        return Ok(());
    }
    std::fs::create_dir_all(cache_dir())?;
    let python = venv().join("bin/python");
    if !python.exists() {
        run_step("create the kubernetes-validate venv", Command::new("python3").args(["-m", "venv"]).arg(venv()))?;
    }
    run_step(
        "install kubernetes-validate",
        Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", VALIDATOR]),
    )?;
    std::fs::write(&marker, b"").with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}

pub fn manifests() -> Result<Vec<PathBuf>> {
    let dir = workspace_root().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Validate manifests strictly (unknown fields are errors) against [`KUBERNETES_VERSIONS`].
pub fn validate(files: &[PathBuf]) -> Result<()> {
    let bin = validator_bin();
    if !bin.exists() {
        bail!("{} is missing; run `cargo xtask setup`", bin.display());
    }
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&bin)
            .args(["--strict", "--quiet", "-k", version])
            .args(files)
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() || said.contains("ERROR") {
            bail!("kubernetes-validate rejected the manifests for Kubernetes {version} ({}):\n{}", out.status, said.trim());
        }
    }
    Ok(())
}

/// `cargo xtask check-deploy`: the manifests' schema check (the units are verified by
/// `cargo xtask package` against the real binaries, and by xtask's unit tests).
pub fn check() -> Result<()> {
    ensure_validator()?;
    let files = manifests()?;
    validate(&files)?;
    let names: Vec<String> = files.iter().map(|f| display(f)).collect();
    eprintln!("xtask: check-deploy: {} valid against Kubernetes {}", names.join(", "), KUBERNETES_VERSIONS.join(" and "));
    Ok(())
}

fn display(p: &Path) -> String {
    p.strip_prefix(workspace_root()).unwrap_or(p).display().to_string()
}

/// `cargo xtask docs`: rewrite the generated configuration reference in docs/operations.md
/// (the renderer and the check that the committed file matches are in truce-tests).
pub fn docs() -> Result<()> {
    let mut cmd = crate::util::cargo();
    cmd.current_dir(workspace_root())
        .args(["test", "--locked", "-p", "truce-tests", "--test", "operations_doc"])
        .env("TRUCE_BLESS", "1");
    run_step("regenerate docs/operations.md", &mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubernetes_manifests_pass_the_schema() {
        let files = manifests().expect("deploy/k8s");
        assert!(files.len() >= 3, "expected namespace, arbiter and agent manifests, found {files:?}");
        validate(&files).expect("deploy/k8s must validate");
    }

    #[test]
    fn a_misspelled_field_fails_the_schema() {
        let original = workspace_root().join("deploy/k8s/agent.yaml");
        let text = std::fs::read_to_string(&original).expect("agent.yaml");
        assert!(text.contains("hostPID: true"));
        let bad = std::env::temp_dir().join(format!("truce-bad-agent-{}.yaml", std::process::id()));
        std::fs::write(&bad, text.replace("hostPID: true", "hostPid: true")).expect("write");
        let result = validate(std::slice::from_ref(&bad));
        let _ = std::fs::remove_file(&bad);
        let err = result.expect_err("hostPid is not a PodSpec field");
        assert!(format!("{err:#}").contains("hostPid"), "{err:#}");
    }
}
