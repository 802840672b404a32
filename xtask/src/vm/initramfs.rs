//! The guest's userland: busybox, the `/init` below and the virtio modules, as a cached base
//! initramfs per kernel. Each run appends a second archive with its payload (see `payload`).
use super::apt::{self, Apt};
use super::cpio::Cpio;
use super::kernel::{self, Kernel};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest's PID 1, run by busybox. The payload archive provides `/payload.sh` (or
/// `/payload.interactive`) and `/payload.timeout`.
///
/// `kill -9 -1` matters: a leftover process (a burner a failed test did not reap) would
/// otherwise keep the VM alive until the host's timeout. The exit code goes to ttyS0 for
/// humans and to ttyS1 (a host file) for the harness.
pub const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup || echo "truce-vm: cannot mount cgroup2"
mount -t bpf bpf /sys/fs/bpf || echo "truce-vm: cannot mount bpffs"
mount -t tracefs tracefs /sys/kernel/tracing || echo "truce-vm: cannot mount tracefs"
mount -t debugfs debugfs /sys/kernel/debug || echo "truce-vm: cannot mount debugfs"
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || echo "truce-vm: cannot enable controller $c"
done
# Module files in load order, dependencies first (xtask resolved them from .modinfo).
for m in $(cat /etc/truce-modules); do
  insmod "$m" || echo "truce-vm: insmod $m failed"
done
hostname truce-vm
# /dev/vda stays raw (the io.max tests write it directly); /dev/vdb gets a file system for
# tests that need a block-backed directory (O_DIRECT files).
if [ -b /dev/vdb ] && mke2fs -q /dev/vdb >/dev/null && mkdir -p /mnt/scratch && mount -t ext4 /dev/vdb /mnt/scratch; then
  export TRUCE_TEST_IO_DIR=/mnt/scratch
else
  echo "truce-vm: no scratch file system on /dev/vdb"
fi
ip link set lo up 2>/dev/null
# A NIC only when the boot asked for one (qemu user networking: the host is 10.0.2.2).
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 || echo "truce-vm: cannot configure eth0"
fi
echo "truce-vm: started kernel=$(uname -r) controllers=[$(cat /sys/fs/cgroup/cgroup.subtree_control)]"
if [ -e /payload.interactive ]; then
  echo "truce-vm: interactive shell; 'exit' powers off (qemu: Ctrl-A X quits)"
  setsid cttyhack sh -l
  rc=$?
else
  t=$(cat /payload.timeout 2>/dev/null || echo 600)
  timeout "$t" sh /payload.sh
  rc=$?
  if [ "$rc" = 143 ] || [ "$rc" = 124 ]; then echo "truce-vm: payload timed out after ${t}s"; fi
fi
kill -9 -1 2>/dev/null
sync
echo "VMTEST_EXIT=$rc"
echo "VMTEST_EXIT=$rc" > /dev/ttyS1
poweroff -f
"#;

/// Bumped when the layout of the base archive changes, so cached archives are rebuilt.
const BASE_FORMAT: u32 = 4;

pub fn ensure_busybox(apt: &Apt, cache: &Path) -> Result<PathBuf> {
    apt.with_fresh_lists("busybox-static", |a| {
        let version = a.candidate("busybox-static")?;
        let dir = cache.join(format!("busybox-{}", apt::path_safe(&version)));
        let binary = dir.join("bin/busybox");
        if binary.is_file() {
            eprintln!("xtask: vm-setup: busybox: cached {version}");
            return Ok(binary);
        }
        eprintln!("xtask: vm-setup: busybox: downloading busybox-static {version}");
        let deb = a.download("busybox-static", Some(&version), &apt::debs_dir(cache))?;
        apt::extract(&deb, &dir)?;
        let _ = std::fs::remove_file(&deb);
        if !binary.is_file() {
            anyhow::bail!("busybox-static {version} has no bin/busybox");
        }
        Ok(binary)
    })
}

/// The gzipped base archive for one kernel, rebuilt when the kernel, busybox, /init or the
/// module list changes (all part of the file name).
pub fn ensure_base(cache: &Path, busybox: &Path, kernel: &Kernel) -> Result<PathBuf> {
    let key = fnv1a(&[
        INIT.as_bytes(),
        kernel::MODULES.join(",").as_bytes(),
        busybox.to_string_lossy().as_bytes(),
        &BASE_FORMAT.to_le_bytes(),
    ]);
    let path = cache.join(format!("initramfs-{}-{}-{key:016x}.cpio.gz", kernel.package, apt::path_safe(&kernel.version)));
    if path.is_file() {
        eprintln!("xtask: vm-setup: initramfs {}: cached", kernel.label);
        return Ok(path);
    }
    eprintln!("xtask: vm-setup: initramfs {}: building {}", kernel.label, path.display());
    let mut c = Cpio::new();
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "root", "mnt", "etc", "lib"] {
        c.dir(d, 0o755);
    }
    // The kernel opens /dev/console for PID 1 before devtmpfs is mounted.
    c.char_dev("dev/console", 0o600, 5, 1);
    c.char_dev("dev/null", 0o666, 1, 3);
    let bb = std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    c.file("bin/busybox", 0o755, &bb);
    c.symlink("bin/sh", "busybox");
    c.file("init", 0o755, INIT.as_bytes());
    c.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
    c.file("etc/group", 0o644, b"root:x:0:\n");
    let (modules, index) = kernel::initramfs_modules(kernel, busybox)?;
    let mut load = String::new();
    for m in &modules {
        c.file(&m.guest_path, 0o644, &m.data);
        load.push_str(&format!("/{}\n", m.guest_path));
    }
    c.file(&format!("lib/modules/{}/modules.dep", kernel.release), 0o644, index.as_bytes());
    c.file("etc/truce-modules", 0o644, load.as_bytes());
    let raw = apt::partial_of(&path.with_extension(""));
    std::fs::write(&raw, c.finish()).with_context(|| format!("writing {}", raw.display()))?;
    let out = Command::new("gzip").args(["-n", "-6", "-c"]).arg(&raw).output().context("could not run gzip")?;
    if !out.status.success() {
        anyhow::bail!("gzip failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let _ = std::fs::remove_file(&raw);
    let tmp = apt::partial_of(&path);
    std::fs::write(&tmp, &out.stdout)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// FNV-1a: a stable hash for cache keys (std's hasher may change between Rust releases).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}
