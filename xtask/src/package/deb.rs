//! The DEBIAN/control file (dependencies read from the binary itself) and a check of the
//! finished .deb with dpkg-deb.
use super::{Package, version};
use crate::util::output;
use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;

pub fn control(pkg: &Package, tree: &Path) -> Result<String> {
    let binary = tree.join("usr/bin").join(pkg.binary);
    let mut depends = shared_library_packages(&binary)?;
    depends.extend(pkg.extra_depends.iter().map(|d| d.to_string()));
    Ok(format!(
        "Package: {}\nVersion: {}\nArchitecture: amd64\nMaintainer: truce developers <truce@example.invalid>\n\
Installed-Size: {}\nDepends: {}\nSection: admin\nPriority: optional\nHomepage: {}\nDescription: {}\n {}\n",
        pkg.name,
        version(),
        installed_kib(tree)?,
        depends.join(", "),
        env!("CARGO_PKG_REPOSITORY"),
        pkg.summary,
        pkg.description
    ))
}

/// Debian packages of the binary's shared libraries, libc6 with the newest GLIBC symbol
/// version the binary uses. Any other library is an error: the package would not say it needs it.
fn shared_library_packages(binary: &Path) -> Result<Vec<String>> {
    let ldd = output("ldd", Command::new("ldd").arg(binary))?;
    let mut packages: Vec<String> = Vec::new();
    for line in ldd.lines() {
        let soname = line.split_whitespace().next().unwrap_or("");
        let soname = soname.rsplit('/').next().unwrap_or(soname);
        let package = match soname {
            "" | "linux-vdso.so.1" => continue,
            s if LIBC_SONAMES.contains(&s) => "libc6",
            "libgcc_s.so.1" => "libgcc-s1",
            other => bail!("{} links {other}, which has no Debian package mapping in xtask/src/package/deb.rs", binary.display()),
        };
        if !packages.iter().any(|p| p.starts_with(package)) {
            packages.push(package.to_string());
        }
    }
    let symbols = output("objdump -T", Command::new("objdump").arg("-T").arg(binary))?;
    if let Some(v) = newest_glibc(&symbols)
        && let Some(p) = packages.iter_mut().find(|p| *p == "libc6")
    {
        *p = format!("libc6 (>= {v})");
    }
    Ok(packages)
}

const LIBC_SONAMES: [&str; 7] =
    ["libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "ld-linux-x86-64.so.2", "libutil.so.1"];

/// The highest `GLIBC_x.y[.z]` symbol version in `objdump -T` output.
pub fn newest_glibc(objdump: &str) -> Option<String> {
    let mut best: Option<Vec<u32>> = None;
    for word in objdump.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        let Some(v) = word.strip_prefix("GLIBC_") else { continue };
        let Ok(parts) = v.split('.').map(str::parse::<u32>).collect::<Result<Vec<u32>, _>>() else { continue };
        if best.as_ref().is_none_or(|b| parts > *b) {
            best = Some(parts);
        }
    }
    best.map(|b| b.iter().map(u32::to_string).collect::<Vec<_>>().join("."))
}

fn installed_kib(tree: &Path) -> Result<u64> {
    fn walk(dir: &Path, total: &mut u64) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_name() == "DEBIAN" {
                continue;
            }
            let meta = e.metadata()?;
            if meta.is_dir() {
                walk(&e.path(), total)?;
            } else {
                *total += meta.len().div_ceil(1024);
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(tree, &mut total)?;
    Ok(total)
}

/// dpkg-deb must read the package back, and it must hold the binary, the unit and the conffile.
pub fn check(deb: &Path, pkg: &Package) -> Result<()> {
    let info = output("dpkg-deb --info", Command::new("dpkg-deb").arg("--info").arg(deb))?;
    if !info.contains(&format!("Package: {}", pkg.name)) {
        bail!("{}: dpkg-deb --info does not name package {}:\n{info}", deb.display(), pkg.name);
    }
    let contents = output("dpkg-deb --contents", Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    for want in [
        format!("./usr/bin/{}", pkg.binary),
        format!("./{}/{}", super::stage::UNIT_DIR, pkg.unit()),
        format!("./etc/truce/{}", pkg.config),
    ] {
        if !contents.lines().any(|l| l.ends_with(&want)) {
            bail!("{} lacks {want}:\n{contents}", deb.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_glibc_compares_versions_numerically() {
        let dump = "0000 DF *UND* 0 (GLIBC_2.3.4) __snprintf_chk\n0000 DF *UND* 0 (GLIBC_2.34) __libc_start_main\n0000 DF *UND* 0 GLIBC_2.9 pipe2\n";
        assert_eq!(newest_glibc(dump).as_deref(), Some("2.34"));
        assert_eq!(newest_glibc("no versions here"), None);
    }
}
