use super::*;
use truce_common::abi::{DelayKey, DelayStats};
use std::path::PathBuf;

fn entry(id: u64, path: &str) -> CgroupEntry {
    CgroupEntry { id, path: path.into(), dir: PathBuf::from(format!("/x{path}")) }
}

fn reading(at: u64, probes: ProbeCounters) -> Reading {
    Reading {
        at: Timestamp(at),
        probes,
        cgroups: vec![entry(1, "/"), entry(10, "/a.service"), entry(11, "/b.service")],
        files: HashMap::new(),
        host: HostReading { cpus: 2, cpu_busy_ns: at * 1_000_000, ..Default::default() },
        unavailable: vec![],
    }
}

fn sched(on: u64, wait: u64) -> SchedStats {
    let mut s = SchedStats { on_cpu_ns: on, rq_wait_ns: wait, rq_waits: 1, ..Default::default() };
    s.rq_wait_hist[12] = 1;
    s
}

#[test]
fn first_reading_sets_baseline_only() {
    let mut c = Collector::new();
    assert!(c.observe(reading(1000, ProbeCounters::default())).sample.is_none());
}

#[test]
fn deltas_per_workload_and_delay_cells() {
    let mut c = Collector::new();
    let mut p = ProbeCounters::default();
    p.sched.insert(10, sched(100, 10));
    c.observe(reading(1000, p.clone()));
    p.sched.insert(10, sched(900_000_100, 10));
    p.sched.insert(11, sched(500, 400));
    p.delay.insert(DelayKey { victim: 11, delayer: 10 }, DelayStats { wait_ns: 400, count: 2 });
    let out = c.observe(reading(2000, p));
    let s = out.sample.expect("second reading yields a sample");
    assert_eq!(s.period_ms, 1000);
    let a = s.workloads.iter().find(|w| w.workload.id == WorkloadId(10)).expect("a present");
    assert_eq!(a.cpu.on_cpu_ns, 900_000_000);
    assert_eq!(a.name, "a.service");
    assert_eq!(a.perf, None, "no PMU means no perf signals, not zeros");
    assert_eq!(s.delays, vec![DelayCell { victim: 11, delayer: 10, wait_ns: 400, count: 2 }]);
    assert_eq!(s.totals.cpu_busy_ns, 1_000_000_000);
}

#[test]
fn vanished_cgroups_are_reported() {
    let mut c = Collector::new();
    let mut p = ProbeCounters::default();
    p.sched.insert(99, sched(1, 1));
    p.net.insert(10, NetStats { rx_packets: 1, ..Default::default() });
    let out = c.observe(reading(1000, p));
    assert_eq!(out.vanished, vec![99]);
}

#[test]
fn network_signals_are_zero_without_traffic_but_absent_without_the_probes() {
    let mut p = ProbeCounters::default();
    p.sched.insert(10, sched(100, 10));
    let second = |p: &ProbeCounters| {
        let mut p = p.clone();
        p.sched.insert(10, sched(200, 10));
        p
    };
    let mut c = Collector::new();
    c.observe(reading(1000, p.clone()));
    let s = c.observe(reading(2000, second(&p))).sample.expect("sample");
    assert_eq!(s.workloads[0].net, Some(NetSignals::default()), "measured: no traffic");
    let off = |at| Reading { unavailable: vec![Unavailable { signal: crate::probes::NET_SIGNAL.into(), reason: "turned off".into() }], ..reading(at, ProbeCounters::default()) };
    let mut c = Collector::new();
    c.observe(Reading { probes: p.clone(), ..off(1000) });
    let s = c.observe(Reading { probes: second(&p), ..off(2000) }).sample.expect("sample");
    assert_eq!(s.workloads[0].net, None, "not measured: absent, never zero");
}
