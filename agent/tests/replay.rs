//! Replay tests: the pure core over recordings, through the same `replay_file` the
//! `truce-agent replay` command uses.
//!
//! Recordings in `agent/tests/fixtures/` are picked up by name (see fixtures/README.md):
//! `two-burners*.jsonl` and `slo-breach*.jsonl`. Until real recordings exist the same checks
//! run on generated samples written to a temporary file.

use std::path::{Path, PathBuf};
use truce_agent::brain::SloCeiling;
use truce_agent::cmd::replay::{ReplayReport, brain_params, replay_file};
use truce_agent::workload_config::Config;
use truce_common::model::{Timestamp, WorkloadId, WorkloadRef};
use truce_common::signal::{
    CgroupFileSignals, CpuSignals, DelayCell, HostSample, HostTotals, NetSignals, PsiSignals, WorkloadSample,
};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixtures(prefix: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fixtures_dir()) else { return Vec::new() };
    let mut v: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "jsonl")
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

fn replay(path: &Path, config: &Config) -> ReplayReport {
    replay_file(path, config, brain_params(10, 60), |_| {}).unwrap_or_else(|e| panic!("replaying {}: {e:#?}", path.display()))
}

/// Done-when: each burner is the other's top antagonist, with an explanation naming it.
fn check_two_burners(path: &Path) {
    let report = replay(path, &Config::default());
    let burners: Vec<(WorkloadId, String)> = report
        .names
        .iter()
        .filter(|(_, (name, _))| name.contains("burner"))
        .map(|(id, (name, _))| (*id, name.clone()))
        .collect();
    assert_eq!(burners.len(), 2, "{}: expected two workloads named *burner*, found {burners:?}", path.display());
    for (victim, other) in [(&burners[0], &burners[1]), (&burners[1], &burners[0])] {
        let top = report.top_antagonist(victim.0);
        let Some(top) = top else { panic!("{}: {} has no antagonist", path.display(), victim.1) };
        assert_eq!(top.workload, other.0, "{}: {}'s top antagonist is {:?}", path.display(), victim.1, top);
        assert!(top.explanation.contains(&other.1), "explanation does not name {}: {}", other.1, top.explanation);
        assert!(top.kernel_wait_ns > 0 || top.correlation.is_some(), "no evidence: {top:?}");
    }
}

fn slo_config_for(path: &Path) -> Config {
    let own = path.with_extension("toml");
    let cfg = if own.exists() { own } else { fixtures_dir().join("slo-breach.toml") };
    Config::load(&cfg).unwrap_or_else(|e| panic!("{}: {e:#?}", cfg.display()))
}

/// Done-when: a workload past its SLO emits a bid with the breach flag, saying which SLO.
fn check_slo_breach(path: &Path, config: &Config) {
    let report = replay(path, config);
    let with_slo: Vec<&WorkloadId> =
        report.names.iter().filter(|(_, (_, p))| !config.policy_for(p).slo.is_empty()).map(|(id, _)| id).collect();
    assert!(!with_slo.is_empty(), "{}: no recorded workload matches an SLO rule", path.display());
    let breach = report.bids.iter().find(|b| b.slo_breach && with_slo.contains(&&b.workload.id));
    let Some(bid) = breach else { panic!("{}: no bid with the SLO-breach flag among {} bids", path.display(), report.bids.len()) };
    assert!(bid.reasons.iter().any(|r| r.code.starts_with("slo_")), "{:?}", bid.reasons);
    assert!(!bid.asks.is_empty());
}

#[test]
fn recorded_two_burner_fixtures_name_each_other() {
    for f in fixtures("two-burners") {
        check_two_burners(&f);
    }
}

#[test]
fn recorded_slo_breach_fixtures_emit_breach_bids() {
    for f in fixtures("slo-breach") {
        check_slo_breach(&f, &slo_config_for(&f));
    }
}

// Generated recordings: same checks, same code path, from a file on disk.

fn workload(id: u64, name: &str, on_ms: u64, wait_ms: u64, p99_us: u64) -> WorkloadSample {
    WorkloadSample {
        workload: WorkloadRef { id: WorkloadId(id), path: format!("/truce-test/{name}") },
        name: name.to_string(),
        cpu: CpuSignals {
            on_cpu_ns: on_ms * 1_000_000,
            rq_wait_ns: wait_ms * 1_000_000,
            rq_waits: 200,
            rq_wait_p50_ns: Some(p99_us * 250),
            rq_wait_p99_ns: Some(p99_us * 1000),
            ..CpuSignals::default()
        },
        io: Vec::new(),
        net: Some(NetSignals::default()),
        perf: None,
        psi: PsiSignals::default(),
        files: CgroupFileSignals { memory_current: Some(50 << 20), ..CgroupFileSignals::default() },
    }
}

fn write_recording(name: &str, samples: &[HostSample]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("truce-replay-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let path = dir.join(name);
    let mut text = String::new();
    for s in samples {
        text.push_str(&serde_json::to_string(s).unwrap_or_else(|e| panic!("{e}")));
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

fn sample(t: u64, workloads: Vec<WorkloadSample>, delays: Vec<DelayCell>) -> HostSample {
    HostSample {
        at: Timestamp(1_763_700_000_000 + t * 1000),
        period_ms: 1000,
        totals: HostTotals { cpus: 2, cpu_busy_ns: 1_100_000_000, ..HostTotals::default() },
        workloads,
        delays,
        probe_errors: Vec::new(),
        unavailable: Vec::new(),
    }
}

fn cell(victim: u64, delayer: u64, ms: u64) -> DelayCell {
    DelayCell { victim, delayer, wait_ns: ms * 1_000_000, count: 100 }
}

#[test]
fn generated_two_burners_name_each_other() {
    // Two burners pinned to one CPU: each runs half the time and waits the other half.
    // A quiet bystander and kernel threads in the root cgroup add noise.
    let samples: Vec<HostSample> = (0..40)
        .map(|t| {
            let jitter = (t * 7) % 20;
            sample(
                t,
                vec![
                    workload(101, "burner-a", 490 + jitter, 500 - jitter, 4000),
                    workload(102, "burner-b", 500 - jitter, 490 + jitter, 4000),
                    workload(103, "idle-shell", 2, 0, 0),
                ],
                vec![cell(101, 102, 480 - jitter), cell(102, 101, 470 + jitter), cell(101, 1, 15), cell(102, 1, 12)],
            )
        })
        .collect();
    check_two_burners(&write_recording("two-burners.jsonl", &samples));
}

#[test]
fn generated_slo_breach_emits_a_breach_bid() {
    let config = Config::load(&fixtures_dir().join("slo-breach.toml")).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(matches!(config.policy_for("/truce-test/latency-victim").slo.first(), Some(SloCeiling::RqWaitP99 { .. })));
    // The victim is fine for 10 periods, then a hog arrives and its run-queue p99 goes to 30 ms.
    let samples: Vec<HostSample> = (0..30)
        .map(|t| {
            if t < 10 {
                sample(t, vec![workload(201, "latency-victim", 200, 1, 200)], vec![])
            } else {
                sample(
                    t,
                    vec![workload(201, "latency-victim", 150, 120, 30_000), workload(202, "hog", 950, 40, 3000)],
                    vec![cell(201, 202, 110)],
                )
            }
        })
        .collect();
    let path = write_recording("slo-breach.jsonl", &samples);
    check_slo_breach(&path, &config);
    // And no breach bid while it was within its SLO.
    let report = replay(&path, &config);
    let breach_times: Vec<u64> = report.bids.iter().filter(|b| b.slo_breach).map(|b| b.at.0).collect();
    assert!(breach_times.iter().all(|&at| at >= 1_763_700_000_000 + 10_000), "{breach_times:?}");
}

#[test]
fn a_malformed_line_is_an_error_naming_it() {
    let good = serde_json::to_string(&sample(0, vec![workload(1, "a", 1, 0, 0)], vec![])).unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("truce-replay-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("bad.jsonl");
    std::fs::write(&path, format!("{good}\n{{\"at\": 5}}\n")).unwrap_or_else(|e| panic!("{e}"));
    let err = replay_file(&path, &Config::default(), brain_params(5, 10), |_| {}).err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("line 2") && msg.contains("bad.jsonl"), "{msg}");
}
