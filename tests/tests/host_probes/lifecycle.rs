//! The probes' life cycle: every name resolves after load, optional groups turned off are
//! never loaded, and shutting the handle down detaches every program.
use super::privileged;
use anyhow::Result;
use std::collections::HashSet;
use std::time::Duration;
use truce_agent::probes::{self, Capabilities, GroupStatus, PerfMode, ProbeConfig, ProbeError, ProbeGroups, error_chain};
use truce_common::names;
use truce_tests::probe_reading::{load, load_with};

#[test]
fn every_map_and_program_name_resolves_after_load() -> Result<()> {
    let _serial = privileged();
    let probes = load(PerfMode::Off)?;
    for name in names::ALL_MAPS {
        assert!(probes.has_map(name), "map {name} from truce_common::names is missing after load");
    }
    for name in names::ALL_PROGRAMS {
        assert!(probes.has_program(name), "program {name} from truce_common::names is missing after load");
    }
    let caps = probes.capabilities();
    println!("capabilities: {caps:?}");
    assert!(caps.sched.is_attached());
    Ok(())
}

// The guard only serialises the tests; on a current-thread runtime nothing else in this
// test can contend for it across the awaits.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "current_thread")]
async fn handle_snapshots_then_shutdown_detaches_everything() -> Result<()> {
    let _serial = privileged();
    let before: HashSet<u32> = loaded_program_ids();
    let handle = probes::spawn(ProbeConfig::default()).map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    let ours: HashSet<u32> = loaded_program_ids().difference(&before).copied().collect();
    assert!(ours.len() >= 5, "expected our programs to be loaded, new ids: {ours:?}");
    let snap = handle.snapshot().await.map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    assert!(!snap.sched.is_empty(), "a live system switches tasks all the time");
    handle.shutdown().await.map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    assert!(matches!(handle.snapshot().await, Err(ProbeError::TaskGone)));
    // The kernel frees detached programs after an RCU grace period, so poll briefly.
    let mut left: Vec<u32> = Vec::new();
    for _ in 0..50 {
        left = loaded_program_ids().intersection(&ours).copied().collect();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "programs still loaded after shutdown: {left:?}");
    Ok(())
}

#[test]
fn optional_groups_turned_off_are_reported_unavailable_and_never_loaded() -> Result<()> {
    let _serial = privileged();
    let count_new = |groups: ProbeGroups| -> Result<(usize, Capabilities)> {
        let before = loaded_program_ids();
        let probes = load_with(&ProbeConfig { perf: PerfMode::Off, groups, ..Default::default() })?;
        let new = loaded_program_ids().difference(&before).count();
        Ok((new, probes.capabilities().clone()))
    };
    let (all, full) = count_new(ProbeGroups::default())?;
    let (sched_only, caps) = count_new(ProbeGroups { block: false, net: false })?;
    println!("programs loaded: {all} with every group ({full:?}), {sched_only} with block and net off");
    assert!(caps.sched.is_attached(), "the scheduler group does not depend on the optional ones");
    for (group, status, key) in [("block", &caps.block, "probes.block = false"), ("net", &caps.net, "probes.net = false")] {
        match status {
            GroupStatus::Unavailable { reason } => assert!(reason.contains(key), "{group}: the reason should name the key, got {reason:?}"),
            GroupStatus::Attached => panic!("{group} attached although turned off"),
        }
    }
    // Turned off means not in the kernel at all: none of the group's programs runs.
    let expected = if full.block.is_attached() { 3 } else { 0 } + if full.net.is_attached() { 2 } else { 0 };
    assert_eq!(all - sched_only, expected, "each attached optional program (block 3, net 2) is left unloaded when its group is off");
    Ok(())
}

fn loaded_program_ids() -> HashSet<u32> {
    aya::programs::loaded_programs().filter_map(Result::ok).map(|p| p.id()).collect()
}
