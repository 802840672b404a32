//! `systemd-analyze verify` on the units as installed: in a scratch root holding the staged
//! package files and the host's own system units (for the targets ours refer to).
//!
//! systemd-analyze exits 0 on warnings such as an unknown key or an unparsable value, so
//! any output at all fails the check.
use crate::util::describe;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// The host's unit directory (multi-user.target, network-online.target, sysinit.target ...).
const HOST_UNITS: &str = "/usr/lib/systemd/system";

/// Verify `units` of a staged package tree.
pub fn verify_staged(tree: &Path, units: &[String]) -> Result<()> {
    let name = tree.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let root = tree.with_file_name(format!("verify-root-{name}"));
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&root)?;
    // Hard links: the binaries are large and nothing writes through them.
    let mut cp = Command::new("cp");
    cp.arg("-al").arg(tree.join(".")).arg(&root);
    let status = cp.status().with_context(|| format!("running {}", describe(&cp)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", describe(&cp));
    }
    let result = verify(&root, units);
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// Run `systemd-analyze verify --root=ROOT UNIT...`; ROOT gets the host's system units too.
pub fn verify(root: &Path, units: &[String]) -> Result<()> {
    let target = root.join(HOST_UNITS.trim_start_matches('/'));
    if !target.exists() {
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(HOST_UNITS).arg(&target);
        std::fs::create_dir_all(target.parent().unwrap_or(root))?;
        let status = cp.status().with_context(|| format!("running {}", describe(&cp)))?;
        if !status.success() {
            bail!("`{}` failed with {status} (is systemd installed? `cargo xtask setup` installs it)", describe(&cp));
        }
    }
    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["verify", "--man=no"]).arg(format!("--root={}", root.display())).args(units);
    let out = cmd.output().with_context(|| format!("could not run {} (`cargo xtask setup` installs systemd)", describe(&cmd)))?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || !said.trim().is_empty() {
        bail!("`{}` exited with {} and said:\n{}", describe(&cmd), out.status, said.trim());
    }
    eprintln!("xtask: systemd-analyze verify: {} clean", units.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{PACKAGES, stage::UNIT_DIR, units_dir};
    use super::*;
    use std::path::PathBuf;

    /// A root with the repository's units and, at each ExecStart path, an executable file
    /// (this test's own binary: `verify` only checks that the path is executable; the
    /// packaging run checks the real binaries).
    fn root_with_units(tag: &str, edit: impl Fn(&str) -> String) -> (PathBuf, Vec<String>) {
        let root = std::env::temp_dir().join(format!("truce-unit-verify-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let me = std::env::current_exe().expect("test executable path");
        let mut units = Vec::new();
        for pkg in PACKAGES {
            let text = std::fs::read_to_string(units_dir().join(pkg.unit())).expect("unit file in deploy/systemd");
            let dest = root.join(UNIT_DIR).join(pkg.unit());
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
            std::fs::write(&dest, edit(&text)).expect("write unit");
            let bin = root.join("usr/bin").join(pkg.binary);
            std::fs::create_dir_all(bin.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&me, &bin).expect("copy executable");
            units.push(pkg.unit());
        }
        (root, units)
    }

    #[test]
    fn the_shipped_units_pass_systemd_analyze_verify() {
        let (root, units) = root_with_units("clean", |t| t.to_string());
        let result = verify(&root, &units);
        let _ = std::fs::remove_dir_all(&root);
        result.expect("deploy/systemd units must verify cleanly");
    }

    #[test]
    fn a_misspelled_directive_fails_verification() {
        let (root, units) = root_with_units("bogus", |t| t.replace("Restart=on-failure", "Restart=on-failure\nRestartSecs=5"));
        let result = verify(&root, &units);
        let _ = std::fs::remove_dir_all(&root);
        let err = result.expect_err("an unknown key must fail the check");
        assert!(format!("{err:#}").contains("RestartSecs"), "{err:#}");
    }
}
