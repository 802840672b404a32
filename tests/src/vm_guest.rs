//! Guards for tests that change cgroup v2 limits: they run only inside the truce test VM
//! (`cargo xtask vm-test`), never on a developer's or CI's host, whose cgroups belong to it.
use std::path::Path;

/// Where the VM's /init mounts cgroup2 (with `nsdelegate,memory_recursiveprot`).
pub const CGROUP2: &str = "/sys/fs/cgroup";

/// Set by the VM payload script (xtask/src/vm/payload.rs).
const GUEST_MARKER: &str = "TRUCE_VM_GUEST";

/// Print a skip line the harness collects into its summary.
pub fn skip(test: &str, reason: &str) {
    println!("VMTEST_SKIP {test}: {reason}");
}

/// `true` inside the test VM with cgroup2 mounted at /sys/fs/cgroup and its controllers
/// available. Outside the VM it prints why the test does nothing and returns `false`.
///
/// Inside the VM a missing or wrong mount is the harness's bug, not a missing kernel
/// feature, so it panics rather than skipping.
pub fn in_test_vm(test: &str) -> bool {
    if std::env::var_os(GUEST_MARKER).is_none() {
        println!("{test}: not inside the truce test VM ({GUEST_MARKER} unset); run it with `cargo xtask vm-test`");
        return false;
    }
    assert!(nix::unistd::geteuid().is_root(), "{test}: the test VM runs tests as root, but euid is not 0");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let at_root = mountinfo.lines().any(|l| {
        let (left, right) = l.split_once(" - ").unwrap_or(("", ""));
        left.split(' ').nth(4) == Some(CGROUP2) && right.starts_with("cgroup2 ")
    });
    assert!(at_root, "{test}: the test VM has no cgroup2 mount at {CGROUP2}:\n{mountinfo}");
    let controllers = std::fs::read_to_string(Path::new(CGROUP2).join("cgroup.controllers")).unwrap_or_default();
    assert!(!controllers.trim().is_empty(), "{test}: cgroup2 at {CGROUP2} offers no controllers (booted without cgroup_no_v1=all?)");
    true
}

/// Whether the root offers `controller` and has it enabled for children; prints a skip
/// line naming the missing kernel feature when not.
pub fn has_controller(test: &str, controller: &str) -> bool {
    let read = |f: &str| std::fs::read_to_string(Path::new(CGROUP2).join(f)).unwrap_or_default();
    let available = read("cgroup.controllers");
    if !available.split_whitespace().any(|c| c == controller) {
        skip(test, &format!("this kernel has no cgroup v2 {controller} controller (available: {})", available.trim()));
        return false;
    }
    let enabled = read("cgroup.subtree_control");
    assert!(
        enabled.split_whitespace().any(|c| c == controller),
        "{test}: the VM's /init did not enable {controller} in the root's subtree_control ({})",
        enabled.trim()
    );
    true
}

/// Whether a cgroup interface file exists in a fresh child (e.g. cpu.max needs
/// CONFIG_CFS_BANDWIDTH); prints a skip line when it does not.
pub fn has_file(test: &str, cgroup: &Path, file: &str, feature: &str) -> bool {
    if cgroup.join(file).exists() {
        return true;
    }
    skip(test, &format!("this kernel has no {file} ({feature})"));
    false
}
