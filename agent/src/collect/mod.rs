//! Collection: cumulative probe counters and cgroup files in, one [`HostSample`] of
//! per-period deltas out.
//!
//! [`Collector`] is pure (time and readings are arguments); [`host`] and the daemon do the
//! reading. Vanished cgroups are reported back so the probes can forget their map entries.

pub mod delta;
pub mod host;

use crate::cgroupfs::{CgroupCounters, CgroupEntry, classify};
use delta::{counter, map_delta, percentile};
use std::collections::{BTreeSet, HashMap, HashSet};
use truce_common::abi::{BlockStats, NetStats, PerfStats, SchedStats};
use truce_common::model::{DeviceId, Timestamp, WorkloadId, WorkloadRef};
use truce_common::signal::{
    CgroupFileSignals, CpuSignals, DelayCell, DeviceIo, HostSample, HostTotals, NetSignals, PerfSignals, PsiSignals,
    Unavailable, WorkloadSample,
};

/// Cumulative kernel counters, per-CPU values summed: what the probes task hands over.
pub use crate::probes::ProbeSnapshot as ProbeCounters;

/// Cumulative host-wide readings from procfs.
#[derive(Clone, Debug, Default)]
pub struct HostReading {
    pub cpus: u32,
    pub cpu_busy_ns: u64,
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub psi: PsiSignals,
}

/// One period's raw readings.
pub struct Reading {
    pub at: Timestamp,
    pub probes: ProbeCounters,
    pub cgroups: Vec<CgroupEntry>,
    pub files: HashMap<u64, (CgroupCounters, PsiSignals)>,
    pub host: HostReading,
    pub unavailable: Vec<Unavailable>,
}

/// What one call to [`Collector::observe`] produced.
pub struct Collected {
    /// `None` for the first reading, which only sets the baseline.
    pub sample: Option<HostSample>,
    /// Cgroup ids the probes still count but that no longer exist: forget their entries.
    pub vanished: Vec<u64>,
}

#[derive(Default)]
pub struct Collector {
    last: Option<Reading>,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    pub fn observe(&mut self, now: Reading) -> Collected {
        let live: HashSet<u64> = now.cgroups.iter().map(|c| c.id).collect();
        let vanished = vanished_ids(&now.probes, &live);
        let sample = self.last.as_ref().map(|before| build_sample(before, &now));
        self.last = Some(now);
        Collected { sample, vanished }
    }
}

fn vanished_ids(p: &ProbeCounters, live: &HashSet<u64>) -> Vec<u64> {
    let mut ids: Vec<u64> = p
        .sched
        .keys()
        .chain(p.net.keys())
        .chain(p.block.keys().map(|k| &k.cgroup_id))
        .chain(p.delay.keys().flat_map(|k| [&k.victim, &k.delayer]))
        .copied()
        .filter(|id| !live.contains(id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    ids.sort_unstable();
    ids
}

fn build_sample(before: &Reading, now: &Reading) -> HostSample {
    let period_ms = now.at.ms_since(before.at).max(1);
    let sched = map_delta(&now.probes.sched, &before.probes.sched);
    let net = map_delta(&now.probes.net, &before.probes.net);
    let block = map_delta(&now.probes.block, &before.probes.block);
    let perf = match (&now.probes.perf, &before.probes.perf) {
        (Some(n), Some(b)) => Some(map_delta(n, b).into_iter().collect::<HashMap<_, _>>()),
        (Some(n), None) => Some(map_delta(n, &HashMap::new()).into_iter().collect()),
        _ => None,
    };
    let active: BTreeSet<u64> =
        sched.iter().map(|(k, _)| *k).chain(net.iter().map(|(k, _)| *k)).chain(block.iter().map(|(k, _)| k.cgroup_id)).collect();

    let paths: HashMap<u64, &CgroupEntry> = now.cgroups.iter().map(|c| (c.id, c)).collect();
    let sched: HashMap<u64, SchedStats> = sched.into_iter().collect();
    // A workload absent from the network map sent nothing, but only where the probes ran.
    let net_measured = crate::probes::measured(&now.unavailable, crate::probes::NET_SIGNAL);
    let net: HashMap<u64, NetStats> = net.into_iter().collect();
    let workloads = active
        .iter()
        .map(|&id| {
            let path = paths.get(&id).map(|c| c.path.clone()).unwrap_or_else(|| format!("?/cgroup-{id}"));
            let name = classify(&path).label(&path);
            let s = sched.get(&id).copied().unwrap_or_default();
            let io: Vec<DeviceIo> = block.iter().filter(|(k, _)| k.cgroup_id == id).map(|(k, b)| device_io(k.dev, b)).collect();
            let files = match (now.files.get(&id), before.files.get(&id)) {
                (Some((n, _)), Some((b, _))) => file_deltas(n, b),
                (Some((n, _)), None) => CgroupFileSignals { memory_current: n.memory_current, ..Default::default() },
                _ => CgroupFileSignals::default(),
            };
            WorkloadSample {
                workload: WorkloadRef { id: WorkloadId(id), path },
                name,
                cpu: cpu_signals(&s),
                io,
                net: net_measured.then(|| net.get(&id).map(net_signals).unwrap_or_default()),
                perf: perf.as_ref().map(|p| p.get(&id).map(perf_signals).unwrap_or_default()),
                psi: now.files.get(&id).map(|(_, p)| p.clone()).unwrap_or_default(),
                files,
            }
        })
        .collect();
    let delays = map_delta(&now.probes.delay, &before.probes.delay)
        .into_iter()
        .map(|(k, d)| DelayCell { victim: k.victim, delayer: k.delayer, wait_ns: d.wait_ns, count: d.count })
        .collect();
    let probe_errors = now
        .probes
        .errors
        .iter()
        .map(|(name, n)| {
            let b = before.probes.errors.iter().find(|(k, _)| k == name).map(|(_, v)| *v).unwrap_or(0);
            (name.clone(), counter(*n, b))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    HostSample {
        at: now.at,
        period_ms,
        totals: HostTotals {
            cpus: now.host.cpus,
            cpu_busy_ns: counter(now.host.cpu_busy_ns, before.host.cpu_busy_ns),
            mem_total_bytes: now.host.mem_total_bytes,
            mem_available_bytes: now.host.mem_available_bytes,
            psi: now.host.psi.clone(),
        },
        workloads,
        delays,
        probe_errors,
        unavailable: now.unavailable.clone(),
    }
}

fn cpu_signals(s: &SchedStats) -> CpuSignals {
    CpuSignals {
        on_cpu_ns: s.on_cpu_ns,
        rq_wait_ns: s.rq_wait_ns,
        rq_waits: s.rq_waits,
        rq_wait_p50_ns: percentile(&s.rq_wait_hist, 0.50),
        rq_wait_p99_ns: percentile(&s.rq_wait_hist, 0.99),
        voluntary_switches: s.voluntary_switches,
        involuntary_switches: s.involuntary_switches,
        wakeups: s.wakeups,
        migrations: s.migrations,
    }
}

fn device_io(dev: u32, b: &BlockStats) -> DeviceIo {
    let done = b.read_ops + b.write_ops + b.other_ops;
    DeviceIo {
        dev: DeviceId::from_kernel_dev(dev),
        read_ops: b.read_ops,
        read_bytes: b.read_bytes,
        write_ops: b.write_ops,
        write_bytes: b.write_bytes,
        latency_p50_ns: percentile(&b.latency_hist, 0.50),
        latency_p99_ns: percentile(&b.latency_hist, 0.99),
        latency_mean_ns: (done > 0).then(|| b.latency_ns / done),
    }
}

fn net_signals(n: &NetStats) -> NetSignals {
    NetSignals { rx_bytes: n.rx_bytes, rx_packets: n.rx_packets, tx_bytes: n.tx_bytes, tx_packets: n.tx_packets }
}

fn perf_signals(p: &PerfStats) -> PerfSignals {
    PerfSignals { cycles: p.cycles, instructions: p.instructions, llc_misses: p.llc_misses }
}

fn file_deltas(n: &CgroupCounters, b: &CgroupCounters) -> CgroupFileSignals {
    let d = |x: Option<u64>, y: Option<u64>| Some(counter(x?, y?));
    let io_sum = |c: &CgroupCounters, f: fn(&crate::cgroupfs::IoStatLine) -> u64| c.io.as_ref().map(|v| v.iter().map(f).sum::<u64>());
    CgroupFileSignals {
        cpu_usage_us: d(n.cpu_usage_us, b.cpu_usage_us),
        cpu_throttled_us: d(n.cpu_throttled_us, b.cpu_throttled_us),
        cpu_nr_throttled: d(n.cpu_nr_throttled, b.cpu_nr_throttled),
        memory_current: n.memory_current,
        memory_high_events: d(n.memory_high_events, b.memory_high_events),
        memory_max_events: d(n.memory_max_events, b.memory_max_events),
        memory_oom_kills: d(n.memory_oom_kills, b.memory_oom_kills),
        io_rbytes: d(io_sum(n, |l| l.rbytes), io_sum(b, |l| l.rbytes)),
        io_wbytes: d(io_sum(n, |l| l.wbytes), io_sum(b, |l| l.wbytes)),
    }
}

#[cfg(test)]
mod tests;
