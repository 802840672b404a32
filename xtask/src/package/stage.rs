//! The staged file tree of one package: exactly the files the .deb installs, with their modes,
//! plus DEBIAN/ (maintainer scripts, conffiles; control is added by `deb`).
use super::{Package, copy_mode, scripts_dir, units_dir};
use crate::util::{output, workspace_root};
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Where units go: bookworm's packages still ship them in /lib (merged into /usr on usrmerge hosts).
pub const UNIT_DIR: &str = "lib/systemd/system";
const SCRIPTS: [&str; 3] = ["postinst", "prerm", "postrm"];

pub fn stage(pkg: &Package, binary: &Path, tree: &Path) -> Result<()> {
    if tree.exists() {
        std::fs::remove_dir_all(tree).with_context(|| format!("removing the old stage {}", tree.display()))?;
    }
    std::fs::create_dir_all(tree.join("DEBIAN"))?;

    // Debug info off (the release profile keeps line tables for local use); symbols stay so
    // backtraces still name functions.
    let bin = tree.join("usr/bin").join(pkg.binary);
    std::fs::create_dir_all(bin.parent().unwrap_or(tree))?;
    let status = Command::new("objcopy").arg("--strip-debug").arg(binary).arg(&bin).status().context("running objcopy")?;
    if !status.success() {
        bail!("objcopy --strip-debug {} failed with {status}", binary.display());
    }
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;

    let unit = pkg.unit();
    copy_mode(&units_dir().join(&unit), &tree.join(UNIT_DIR).join(&unit), 0o644)?;

    // The shipped config is whatever the binary prints as its default: it cannot drift.
    let config = output(&format!("{} config --print-default", pkg.binary), Command::new(&bin).args(["config", "--print-default"]))?;
    let etc = tree.join("etc/truce");
    std::fs::create_dir_all(&etc)?;
    write_mode(&etc.join(pkg.config), config.as_bytes(), 0o644)?;

    let doc = tree.join("usr/share/doc").join(pkg.name);
    std::fs::create_dir_all(&doc)?;
    write_mode(&doc.join("copyright"), copyright(pkg).as_bytes(), 0o644)?;
    copy_mode(&workspace_root().join("docs/operations.md"), &doc.join("operations.md"), 0o644)?;

    for script in SCRIPTS {
        copy_mode(&scripts_dir(pkg).join(script), &tree.join("DEBIAN").join(script), 0o755)?;
    }
    write_mode(&tree.join("DEBIAN/conffiles"), format!("/etc/truce/{}\n", pkg.config).as_bytes(), 0o644)?;
    fix_dir_modes(tree)
}

fn write_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Directories 0755 whatever the umask: dpkg-deb refuses a group-writable DEBIAN/.
fn fix_dir_modes(dir: &Path) -> Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fix_dir_modes(&entry.path())?;
        }
    }
    Ok(())
}

fn copyright(pkg: &Package) -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: {}\n\nFiles: *\nCopyright: the truce developers\nLicense: {}\n",
        pkg.name,
        env!("CARGO_PKG_LICENSE")
    )
}
