//! Enforcement tests: cgroup v2 limits have the effect truce relies on, in a real kernel.
//!
//! They run inside the test VM (`cargo xtask vm-test`), where /init mounts cgroup2 at
//! /sys/fs/cgroup with every controller enabled. Elsewhere they print why and do nothing:
//! they create cgroups and limits, which must never happen on a host's own hierarchy.
//! Assertions are on ratios measured in one run (TCG makes absolute speed meaningless).
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use truce_agent::cgroupfs::{self, Controller, ControllerState, Mode};
use truce_tests::enforce::{Cgroup, Work, cpu_share};
use truce_tests::vm_guest::{CGROUP2, has_controller, has_file, in_test_vm, skip};

fn assert_between(what: &str, value: f64, low: f64, high: f64) {
    println!("{what}: {value:.3} (expected {low}..{high})");
    assert!((low..=high).contains(&value), "{what} = {value:.3}, expected between {low} and {high}");
}

#[test]
#[ignore = "changes cgroup v2 limits: runs inside the VM via `cargo xtask vm-test`"]
fn cpu_max_20_percent_throttles_a_burner_to_a_fifth_of_a_cpu() -> Result<()> {
    let test = "cpu_max_20_percent_throttles_a_burner_to_a_fifth_of_a_cpu";
    if !in_test_vm(test) || !has_controller(test, "cpu") {
        return Ok(());
    }
    let top = Cgroup::top("cpu-max")?;
    top.delegate(&["cpu"])?;
    let free = top.child("free")?;
    let limited = top.child("limited")?;
    if !has_file(test, &limited.path, "cpu.max", "CONFIG_CFS_BANDWIDTH") {
        return Ok(());
    }
    limited.write("cpu.max", "20000 100000")?;

    // The same burner without a limit shows what "a full CPU" measures as in this guest.
    let unlimited_share = {
        let _burner = free.spawn(Work::Burn { cpu: None })?;
        cpu_share(&free, Duration::from_secs(2))?
    };
    let limited_share = {
        let _burner = limited.spawn(Work::Burn { cpu: None })?;
        cpu_share(&limited, Duration::from_secs(3))?
    };
    assert_between("unlimited burner's share of a CPU", unlimited_share, 0.6, 1.1);
    assert_between("cpu.max 20000/100000 burner's share of a CPU", limited_share, 0.14, 0.26);
    let throttled = limited.key("cpu.stat", "nr_throttled")?;
    println!("nr_throttled: {throttled}");
    assert!(throttled > 0, "cpu.stat nr_throttled is 0: the limit never bit");
    Ok(())
}

#[test]
#[ignore = "changes cgroup v2 limits: runs inside the VM via `cargo xtask vm-test`"]
fn cpu_weight_100_to_300_splits_a_contended_cpu_1_to_3() -> Result<()> {
    let test = "cpu_weight_100_to_300_splits_a_contended_cpu_1_to_3";
    if !in_test_vm(test) || !has_controller(test, "cpu") {
        return Ok(());
    }
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let top = Cgroup::top("cpu-weight")?;
    top.delegate(&["cpu"])?;
    let light = top.child("light")?;
    let heavy = top.child("heavy")?;
    light.write("cpu.weight", "100")?;
    heavy.write("cpu.weight", "300")?;
    // Both on the last CPU: the weights only matter when the two compete for one CPU.
    let cpu = Some(cpus - 1);
    let _a = light.spawn(Work::Burn { cpu })?;
    let _b = heavy.spawn(Work::Burn { cpu })?;
    // Let the scheduler settle after the second burner arrives.
    std::thread::sleep(Duration::from_millis(500));
    let (l0, h0, t0) = (light.usage_usec()?, heavy.usage_usec()?, Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let (l1, h1, t1) = (light.usage_usec()?, heavy.usage_usec()?, Instant::now());
    let (dl, dh) = (l1.saturating_sub(l0) as f64, h1.saturating_sub(h0) as f64);
    let wall = t1.duration_since(t0).as_micros() as f64;
    assert!(dl + dh > 0.0, "neither burner ran");
    assert_between("both burners together, in CPUs (pinned to one)", (dl + dh) / wall, 0.5, 1.1);
    assert_between("heavy (weight 300) share of the contended CPU", dh / (dl + dh), 0.65, 0.85);
    Ok(())
}

/// The agent samples early when a PSI trigger fires (agent/src/cmd/pressure.rs): a cgroup
/// whose tasks wait for a CPU fires its trigger, an idle one does not. (A lone burner is no
/// negative case: under TCG it still waits behind the guest's own threads on its CPU, and a
/// first run fired after 113 ms.)
#[test]
#[ignore = "creates cgroups and pins burners: runs inside the VM via `cargo xtask vm-test`"]
fn a_psi_trigger_fires_for_a_cgroup_waiting_on_cpu_and_not_for_an_idle_one() -> Result<()> {
    use truce_agent::cgroupfs::{PressureTrigger, TriggerEvent};
    let test = "a_psi_trigger_fires_for_a_cgroup_waiting_on_cpu_and_not_for_an_idle_one";
    if !in_test_vm(test) || !has_controller(test, "cpu") {
        return Ok(());
    }
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let top = Cgroup::top("psi-trigger")?;
    top.delegate(&["cpu"])?;
    let idle = top.child("idle")?;
    let contended = top.child("contended")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (stall, window) = (Duration::from_millis(50), Duration::from_millis(500));
    let (idle_fired, contended_fired) = rt.block_on(async {
        let t_idle = PressureTrigger::arm(&idle.path.join("cpu.pressure"), stall, window)?;
        let t_contended = PressureTrigger::arm(&contended.path.join("cpu.pressure"), stall, window)?;
        let _sleeper = idle.spawn(Work::Allocate { bytes: 1 << 20, exit_when_done: false })?;
        let _a = contended.spawn(Work::Burn { cpu: Some(cpus - 1) })?;
        let _b = contended.spawn(Work::Burn { cpu: Some(cpus - 1) })?;
        let watch = |t: PressureTrigger| async move {
            let started = Instant::now();
            let got = tokio::time::timeout(Duration::from_secs(6), t.next()).await;
            matches!(got, Ok(Ok(TriggerEvent::Fired))).then(|| started.elapsed())
        };
        let (i, c) = tokio::join!(watch(t_idle), watch(t_contended));
        anyhow::Ok((i, c))
    })?;
    println!("contended pair's trigger fired after {contended_fired:?}; the idle cgroup's: {idle_fired:?}");
    println!("cpu.pressure contended: {}", std::fs::read_to_string(contended.path.join("cpu.pressure"))?.trim());
    println!("cpu.pressure idle: {}", std::fs::read_to_string(idle.path.join("cpu.pressure"))?.trim());
    assert!(contended_fired.is_some(), "two burners sharing one CPU did not fire a 50 ms / 500 ms cpu trigger within 6 s");
    assert!(idle_fired.is_none(), "an idle cgroup fired its trigger after {idle_fired:?}");
    Ok(())
}

#[test]
#[ignore = "changes cgroup v2 limits: runs inside the VM via `cargo xtask vm-test`"]
fn memory_high_raises_high_events_when_exceeded_and_only_then() -> Result<()> {
    let test = "memory_high_raises_high_events_when_exceeded_and_only_then";
    if !in_test_vm(test) || !has_controller(test, "memory") {
        return Ok(());
    }
    let top = Cgroup::top("memory-high")?;
    top.delegate(&["memory"])?;
    let free = top.child("free")?;
    let limited = top.child("limited")?;
    limited.write("memory.high", &(16u64 << 20).to_string())?;

    // The same allocation without a limit: no high events (so the counter means something).
    free.spawn(Work::Allocate { bytes: 64 << 20, exit_when_done: true })?.wait_success()?;
    assert_eq!(free.key("memory.events", "high")?, 0, "high events in a cgroup without memory.high");

    // Above memory.high the allocator is throttled and reclaim runs; the child never gets
    // far past the limit, so wait for the events rather than for the child.
    let _hog = limited.spawn(Work::Allocate { bytes: 64 << 20, exit_when_done: false })?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut high = 0;
    while Instant::now() < deadline {
        high = limited.key("memory.events", "high")?;
        if high > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let current = limited.key("memory.stat", "anon")?;
    println!("memory.events high = {high}, anon = {} MiB", current >> 20);
    assert!(high > 0, "no memory.events high after allocating 64 MiB against memory.high = 16 MiB");
    Ok(())
}

#[test]
#[ignore = "changes cgroup v2 limits: runs inside the VM via `cargo xtask vm-test`"]
fn io_max_wbps_slows_an_o_direct_writer_to_the_limit() -> Result<()> {
    let test = "io_max_wbps_slows_an_o_direct_writer_to_the_limit";
    if !in_test_vm(test) || !has_controller(test, "io") {
        return Ok(());
    }
    // The harness always attaches a virtio disk; without it the VM is broken, not the kernel.
    let devno = std::fs::read_to_string("/sys/block/vda/dev").context("the VM has no /dev/vda (virtio_blk not loaded?)")?;
    let devno = devno.trim();
    let top = Cgroup::top("io-max")?;
    top.delegate(&["io"])?;
    let free = top.child("free")?;
    let limited = top.child("limited")?;
    if !has_file(test, &limited.path, "io.max", "CONFIG_BLK_DEV_THROTTLING") {
        return Ok(());
    }
    const LIMIT: u64 = 2 << 20;
    const BYTES: usize = 8 << 20;
    limited.write("io.max", &format!("{devno} wbps={LIMIT}"))?;

    let rate = |cg: &Cgroup| -> Result<f64> {
        let t0 = Instant::now();
        cg.spawn(Work::DirectWrite { device: "/dev/vda".into(), bytes: BYTES })?.wait_success()?;
        Ok(BYTES as f64 / t0.elapsed().as_secs_f64())
    };
    let unlimited = rate(&free)?;
    let limited_rate = rate(&limited)?;
    println!("O_DIRECT write: unlimited {:.1} MiB/s, io.max wbps=2MiB/s {:.2} MiB/s", unlimited / 1048576.0, limited_rate / 1048576.0);
    let wbytes = limited.read("io.stat")?;
    println!("io.stat of the limited cgroup: {}", wbytes.trim());
    assert_between("limited rate / wbps limit", limited_rate / LIMIT as f64, 0.3, 1.5);
    assert!(
        unlimited > 3.0 * limited_rate,
        "the unlimited writer ({unlimited:.0} B/s) is not clearly faster than the limited one ({limited_rate:.0} B/s)"
    );
    Ok(())
}

#[test]
#[ignore = "changes cgroup v2 limits: runs inside the VM via `cargo xtask vm-test`"]
fn agent_discovery_reports_every_controller_enforceable() -> Result<()> {
    let test = "agent_discovery_reports_every_controller_enforceable";
    if !in_test_vm(test) {
        return Ok(());
    }
    let host = cgroupfs::discover().map_err(|e| anyhow::anyhow!("cgroupfs::discover failed: {e}"))?;
    println!("{}", host.summary());
    assert_eq!(host.mount, std::path::Path::new(CGROUP2), "discovered the wrong cgroup2 mount");
    assert!(!host.hybrid, "the VM boots with cgroup_no_v1=all, yet discovery reports v1 mounts");
    for c in Controller::ALL {
        match host.state(c) {
            Some(ControllerState::Enforceable { enabled_at_root: true }) => {}
            Some(ControllerState::Missing) if !kernel_has(c) => skip(test, &format!("kernel has no {} controller", c.name())),
            other => panic!("controller {} should be enforceable and enabled at the root, discovery says {other:?}", c.name()),
        }
    }
    assert_eq!(host.mode, Mode::Enforce, "discovery does not allow enforcing in a full cgroup v2 VM");
    Ok(())
}

fn kernel_has(c: Controller) -> bool {
    std::fs::read_to_string(format!("{CGROUP2}/cgroup.controllers"))
        .map(|s| s.split_whitespace().any(|x| x == c.name()))
        .unwrap_or(false)
}
