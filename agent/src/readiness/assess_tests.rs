use super::*;
use crate::cgroupfs::{CgroupHost, Controller, ControllerState, Mode};
use crate::probes::{Capabilities, CompletionProbe, GroupStatus, PerfStatus};
use crate::readiness::gather::{ConfigFacts, LoadedConfig};
use crate::readiness::{Level, report_text};
use std::path::PathBuf;

const ROOT_CAPS: u64 = 0x1ff_ffff_ffff;

fn unified() -> CgroupHost {
    CgroupHost {
        mount: PathBuf::from("/sys/fs/cgroup"),
        hybrid: false,
        controllers: Controller::ALL.iter().map(|&c| (c, ControllerState::Enforceable { enabled_at_root: true })).collect(),
        mode: Mode::Enforce,
    }
}

fn attached() -> Capabilities {
    Capabilities {
        sched: GroupStatus::Attached,
        block: GroupStatus::Attached,
        net: GroupStatus::Attached,
        perf: PerfStatus::Available { counters: vec!["cycles", "instructions", "llc_misses"], software_clock: false },
        block_completion: Some(CompletionProbe::Typed),
    }
}

/// A bare-metal Debian 12 host with everything truce wants.
fn healthy() -> HostFacts {
    let caps = attached();
    HostFacts {
        kernel_release: "6.12.117+deb12-amd64".into(),
        btf: true,
        cgroup: Ok(unified()),
        tracefs: Ok(Some(PathBuf::from("/sys/kernel/tracing"))),
        psi: true,
        effective_caps: Some(ROOT_CAPS),
        perf_event_paranoid: Some(2),
        pmu: caps.perf.clone(),
        probes: Some(Ok(caps)),
        config: None,
    }
}

fn level_of(r: &crate::readiness::Readiness, name: &str) -> Level {
    r.checks.iter().find(|c| c.name == name).map(|c| c.level).unwrap_or_else(|| panic!("no check {name}"))
}

#[test]
fn a_healthy_host_has_no_gaps_and_enforces_every_controller() {
    let r = assess(&healthy());
    assert!(r.can_run());
    assert_eq!(r.gaps().count(), 0, "{}", report_text(&r));
    assert_eq!(r.enforces, vec!["cpu", "memory", "io", "pids"]);
    assert!(r.not_observed.is_empty(), "{:?}", r.not_observed);
    assert!(report_text(&r).contains("verdict:      ready\n"), "{}", report_text(&r));
}

#[test]
fn kernel_versions_parse_and_old_kernels_block() {
    assert_eq!(parse_kernel("6.12.117+deb12-amd64"), Some((6, 12)));
    assert_eq!(parse_kernel("5.18.0"), Some((5, 18)));
    assert_eq!(parse_kernel("6.1.0-56-amd64"), Some((6, 1)));
    assert_eq!(parse_kernel("garbage"), None);
    let mut f = healthy();
    f.kernel_release = "5.15.0-91-generic".into();
    let r = assess(&f);
    assert_eq!(level_of(&r, "kernel"), Level::Blocking);
    assert!(!r.can_run());
    f.kernel_release = "5.18.0".into();
    assert_eq!(level_of(&assess(&f), "kernel"), Level::Ok);
}

#[test]
fn a_kernel_without_btf_blocks_because_the_scheduler_probes_need_its_offsets() {
    let mut f = healthy();
    f.btf = false;
    let r = assess(&f);
    assert_eq!(level_of(&r, "btf"), Level::Blocking);
    assert!(!r.can_run());
}

#[test]
fn a_hybrid_host_observes_but_enforces_nothing_and_says_how_to_fix_it() {
    let mut f = healthy();
    f.cgroup = Ok(CgroupHost {
        mount: PathBuf::from("/sys/fs/cgroup/unified"),
        hybrid: true,
        controllers: vec![
            (Controller::Cpu, ControllerState::OwnedByV1 { mount: "/sys/fs/cgroup/cpu".into() }),
            (Controller::Memory, ControllerState::OwnedByV1 { mount: "/sys/fs/cgroup/memory".into() }),
            (Controller::Io, ControllerState::OwnedByV1 { mount: "/sys/fs/cgroup/blkio".into() }),
            (Controller::Pids, ControllerState::Enforceable { enabled_at_root: false }),
        ],
        mode: Mode::ObserveOnly,
    });
    let r = assess(&f);
    assert!(r.can_run(), "observe-only is a gap, not a reason to refuse to run");
    assert_eq!(level_of(&r, "cgroup2"), Level::Gap);
    assert!(r.enforces.is_empty());
    let text = report_text(&r);
    assert!(text.contains("unified_cgroup_hierarchy"), "{text}");
    assert!(text.contains("enforces:     nothing (observe only)"), "{text}");
}

#[test]
fn no_pmu_is_a_gap_reported_as_not_observed_never_zero() {
    let mut f = healthy();
    let reason = "perf_event_open(cycles, cpu 0) failed: No such file or directory (os error 2) (no hardware PMU on this machine)";
    f.pmu = PerfStatus::Unavailable { reason: reason.into() };
    let r = assess(&f);
    assert_eq!(level_of(&r, "pmu"), Level::Gap);
    assert!(r.can_run());
    assert!(r.not_observed.iter().any(|(what, why)| what.contains("CPI") && why == reason));
    assert!(report_text(&r).contains("virtual PMU"));
}

#[test]
fn missing_privileges_block_and_name_each_capability() {
    let mut f = healthy();
    f.effective_caps = Some(0);
    f.probes = None;
    let r = assess(&f);
    assert!(!r.can_run());
    let c = r.checks.iter().find(|c| c.name == "privileges").expect("privileges check");
    assert!(c.finding.contains("CAP_BPF") && c.finding.contains("CAP_PERFMON") && c.finding.contains("CAP_NET_ADMIN"), "{}", c.finding);
    assert!(r.not_observed.iter().any(|(what, _)| what == "eBPF probes"));
}

#[test]
fn a_failed_probe_load_blocks_and_a_missing_group_is_a_gap() {
    let mut f = healthy();
    f.probes = Some(Err("failed to attach program `sched_switch`: EINVAL".into()));
    assert_eq!(level_of(&assess(&f), "probes"), Level::Blocking);
    // Debian's paranoid level 3: the fix names CAP_SYS_ADMIN and the sysctl.
    f.probes = Some(Err("failed to attach program `sched_tick`: `perf_event_open` failed: Permission denied (os error 13)".into()));
    f.perf_event_paranoid = Some(3);
    let r = assess(&f);
    let fix = r.checks.iter().find(|c| c.name == "probes").and_then(|c| c.fix.clone()).unwrap_or_default();
    assert!(fix.contains("CAP_SYS_ADMIN") && fix.contains("perf_event_paranoid=2"), "{fix}");
    let mut caps = attached();
    caps.block = GroupStatus::Unavailable { reason: "no tracefs".into() };
    f.probes = Some(Ok(caps));
    f.tracefs = Ok(None);
    let r = assess(&f);
    assert_eq!(level_of(&r, "probes"), Level::Gap);
    assert_eq!(level_of(&r, "tracefs"), Level::Gap);
    assert!(r.can_run());
    assert!(!r.observes.iter().any(|o| o.starts_with("block")));
}

#[test]
fn no_cgroup2_and_no_psi() {
    let mut f = healthy();
    f.cgroup = Err("no cgroup2 mount in /proc/self/mountinfo".into());
    f.psi = false;
    let r = assess(&f);
    assert_eq!(level_of(&r, "cgroup2"), Level::Blocking);
    assert_eq!(level_of(&r, "psi"), Level::Gap);
}

#[test]
fn config_problems_block_and_absent_roots_are_a_gap() {
    let mut f = healthy();
    f.config = Some(ConfigFacts { path: "/etc/truce/agent.toml".into(), loaded: Err("config /etc/truce/agent.toml: key `period`: bad".into()) });
    let r = assess(&f);
    assert_eq!(level_of(&r, "config"), Level::Blocking);
    f.config = Some(ConfigFacts {
        path: "/etc/truce/agent.toml".into(),
        loaded: Ok(LoadedConfig {
            host: "node-1".into(),
            roots: vec![("/truce.slice".into(), false)],
            certs: vec![("/etc/truce/certs/ca.pem".into(), Ok(())), ("/etc/truce/certs/hosts/node-1.key".into(), Err("No such file".into()))],
            probes: Default::default(),
        }),
    });
    let r = assess(&f);
    assert_eq!(level_of(&r, "roots"), Level::Gap);
    assert_eq!(level_of(&r, "certificates"), Level::Blocking);
    assert!(report_text(&r).contains("enforces:     cpu, memory, io, pids under /truce.slice"), "{}", report_text(&r));
}

#[test]
fn a_probe_group_the_config_turns_off_is_a_choice_not_a_gap() {
    let mut f = healthy();
    f.config = Some(ConfigFacts {
        path: "/etc/truce/agent.toml".into(),
        loaded: Ok(LoadedConfig { host: "node-1".into(), roots: vec![("/truce.slice".into(), true)], certs: vec![], probes: crate::probes::ProbeGroups { block: false, net: true } }),
    });
    let r = assess(&f);
    assert_eq!(level_of(&r, "probes"), Level::Ok, "{}", report_text(&r));
    assert!(!r.observes.iter().any(|o| o.starts_with("block")), "{:?}", r.observes);
    let (_, why) = r.not_observed.iter().find(|(n, _)| n.starts_with("block")).expect("block listed as not observed");
    assert!(why.contains("probes.block = false"), "{why}");
    // Turned off and also unsupported here: the config's choice is what the report names.
    let mut caps = attached();
    caps.block = GroupStatus::Unavailable { reason: "no tracefs".into() };
    f.probes = Some(Ok(caps));
    assert_eq!(level_of(&assess(&f), "probes"), Level::Ok);
}

#[test]
fn the_classic_block_completion_is_a_gap_that_names_why() {
    let mut facts = healthy();
    let reason = "BTF: `request_queue` has no member `disk`".to_string();
    facts.probes = Some(Ok(Capabilities { block_completion: Some(CompletionProbe::Classic { reason: reason.clone() }), ..attached() }));
    let r = assess(&facts);
    let check = r.checks.iter().find(|c| c.name == "block completions").expect("a block completions check");
    assert_eq!(check.level, Level::Gap);
    assert!(check.finding.contains(&reason) && check.finding.contains("skipped_block_rq_complete"), "{}", check.finding);
    assert!(r.can_run());
    // With the typed probe there is nothing to say.
    assert!(!assess(&healthy()).checks.iter().any(|c| c.name == "block completions"));
}
