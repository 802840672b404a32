//! The rows `observe` shows, built from one sample (and the estimates, when the core ran).
//! Pure, so the table can be tested without probes.

use serde::Serialize;
use std::collections::HashMap;
use truce_common::estimate::InterferenceEstimate;
use truce_common::signal::HostSample;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TopDelayer {
    pub name: String,
    /// Share of this workload's run-queue wait that the kernel credited to the delayer.
    pub share_pct: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ObserveRow {
    pub id: u64,
    pub path: String,
    pub name: String,
    /// Interference score from the estimator; `None` until it has a baseline.
    pub score: Option<f64>,
    /// 100 = one full CPU.
    pub cpu_pct: f64,
    pub rq_delay_pct: Option<f64>,
    pub rq_p50_us: Option<f64>,
    pub rq_p99_us: Option<f64>,
    pub switches: u64,
    /// `None` where the block probes do not run (io.stat still counts bytes: see the report).
    pub io_ops: Option<u64>,
    pub io_bytes: Option<u64>,
    pub io_p99_us: Option<f64>,
    /// `None` where the network probes do not run.
    pub net_bytes: Option<u64>,
    /// `None` without a PMU: shown as n/a, never 0.
    pub cpi: Option<f64>,
    pub psi_cpu_some_avg10: Option<f64>,
    pub top_delayer: Option<TopDelayer>,
    /// The estimator's explanation of the worst antagonist.
    pub top_antagonist: Option<String>,
}

pub fn rows(sample: &HostSample, estimates: &[InterferenceEstimate]) -> Vec<ObserveRow> {
    let period_ns = sample.period_ms.max(1) as f64 * 1e6;
    let block_probes = crate::probes::measured(&sample.unavailable, crate::probes::BLOCK_SIGNAL);
    let names: HashMap<u64, &str> = sample.workloads.iter().map(|w| (w.workload.id.0, w.name.as_str())).collect();
    let name_of = |id: u64| names.get(&id).map(|s| s.to_string()).unwrap_or_else(|| format!("cg{id}"));
    let mut out: Vec<ObserveRow> = sample
        .workloads
        .iter()
        .map(|w| {
            let id = w.workload.id.0;
            let my_delays: Vec<_> = sample.delays.iter().filter(|d| d.victim == id && d.delayer != id).collect();
            let total_wait: u64 = sample.delays.iter().filter(|d| d.victim == id).map(|d| d.wait_ns).sum();
            let top_delayer = my_delays.iter().max_by_key(|d| d.wait_ns).filter(|_| total_wait > 0).map(|d| TopDelayer {
                name: name_of(d.delayer),
                share_pct: d.wait_ns as f64 * 100.0 / total_wait as f64,
            });
            let est = estimates.iter().find(|e| e.workload == w.workload.id);
            ObserveRow {
                id,
                path: w.workload.path.clone(),
                name: w.name.clone(),
                score: est.map(|e| e.score),
                cpu_pct: w.cpu.on_cpu_ns as f64 * 100.0 / period_ns,
                rq_delay_pct: w.cpu.rq_delay_share().map(|s| s * 100.0),
                rq_p50_us: w.cpu.rq_wait_p50_ns.map(|n| n as f64 / 1e3),
                rq_p99_us: w.cpu.rq_wait_p99_ns.map(|n| n as f64 / 1e3),
                switches: w.cpu.voluntary_switches + w.cpu.involuntary_switches,
                io_ops: block_probes.then(|| w.io.iter().map(|d| d.read_ops + d.write_ops).sum()),
                io_bytes: block_probes.then(|| w.io.iter().map(|d| d.read_bytes + d.write_bytes).sum()),
                io_p99_us: w.io.iter().filter_map(|d| d.latency_p99_ns).max().map(|n| n as f64 / 1e3),
                net_bytes: w.net.as_ref().map(|n| n.rx_bytes + n.tx_bytes),
                cpi: w.perf.as_ref().and_then(|p| p.cpi()),
                psi_cpu_some_avg10: w.psi.cpu.as_ref().map(|p| p.some_avg10),
                top_delayer,
                top_antagonist: est.and_then(|e| e.antagonists.first()).map(|a| a.explanation.clone()),
            }
        })
        .collect();
    // Most interfered first: the estimator's score where it has one, else run-queue delay.
    out.sort_by(|a, b| {
        let key = |r: &ObserveRow| (r.score.unwrap_or(0.0), r.rq_delay_pct.unwrap_or(0.0), r.cpu_pct);
        key(b).partial_cmp(&key(a)).unwrap_or(std::cmp::Ordering::Equal)
    });
    out
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "n/a".into())
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{n}B") } else { format!("{v:.1}{}", UNITS[i]) }
}

fn clip(s: &str, w: usize) -> String {
    if s.chars().count() <= w { s.to_string() } else { format!("{}…", s.chars().take(w - 1).collect::<String>()) }
}

/// The table as text, `limit` rows at most.
pub fn render(sample: &HostSample, rows: &[ObserveRow], limit: usize) -> String {
    let mut s = format!(
        "truce observe — {} workloads active, period {} ms, host CPU {:.0}% of {} CPUs\n",
        rows.len(),
        sample.period_ms,
        sample.totals.cpu_busy_ns as f64 * 100.0 / (sample.period_ms.max(1) as f64 * 1e6 * sample.totals.cpus.max(1) as f64),
        sample.totals.cpus
    );
    for u in &sample.unavailable {
        s.push_str(&format!("  unavailable: {} ({})\n", u.signal, u.reason));
    }
    s.push_str(&format!(
        "{:<32} {:>6} {:>6} {:>6} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8} {:>5} {:>6}  {}\n",
        "WORKLOAD", "SCORE", "CPU%", "RQ%", "RQp50us", "RQp99us", "SW", "IOPS", "IOBYTES", "IOp99us", "NET", "CPI", "PSIcpu", "TOP DELAYER"
    ));
    for r in rows.iter().take(limit) {
        let delayer = r
            .top_delayer
            .as_ref()
            .map(|d| format!("{} ({:.0}%)", clip(&d.name, 28), d.share_pct))
            .unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "{:<32} {:>6} {:>6.1} {:>6} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8} {:>5} {:>6}  {}\n",
            clip(&r.name, 32),
            opt(r.score, 2),
            r.cpu_pct,
            opt(r.rq_delay_pct, 1),
            opt(r.rq_p50_us, 0),
            opt(r.rq_p99_us, 0),
            r.switches,
            r.io_ops.map_or_else(|| "-".into(), |n| n.to_string()),
            r.io_bytes.map_or_else(|| "-".into(), bytes),
            opt(r.io_p99_us, 0),
            r.net_bytes.map_or_else(|| "-".into(), bytes),
            opt(r.cpi, 2),
            opt(r.psi_cpu_some_avg10, 1),
            delayer
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use truce_common::model::{Timestamp, WorkloadId, WorkloadRef};
    use truce_common::signal::{CpuSignals, DelayCell, WorkloadSample};

    fn w(id: u64, name: &str, on: u64, wait: u64) -> WorkloadSample {
        WorkloadSample {
            workload: WorkloadRef { id: WorkloadId(id), path: format!("/{name}") },
            name: name.into(),
            cpu: CpuSignals { on_cpu_ns: on, rq_wait_ns: wait, ..Default::default() },
            io: vec![],
            net: Default::default(),
            perf: None,
            psi: Default::default(),
            files: Default::default(),
        }
    }

    #[test]
    fn most_delayed_first_with_top_delayer_and_no_fake_cpi() {
        let sample = HostSample {
            at: Timestamp(0),
            period_ms: 1000,
            totals: Default::default(),
            workloads: vec![w(10, "burner", 1_000_000_000, 0), w(11, "victim", 500_000_000, 500_000_000)],
            delays: vec![DelayCell { victim: 11, delayer: 10, wait_ns: 400_000_000, count: 9 }],
            probe_errors: vec![],
            unavailable: vec![],
        };
        let r = rows(&sample, &[]);
        assert_eq!(r[0].name, "victim");
        assert_eq!(r[0].top_delayer, Some(TopDelayer { name: "burner".into(), share_pct: 100.0 }));
        assert!((r[1].cpu_pct - 100.0).abs() < 1e-9);
        assert_eq!(r[1].cpi, None);
        let text = render(&sample, &r, 10);
        assert!(text.contains("n/a"), "{text}");
        assert!(text.contains("burner (100%)"), "{text}");
        assert_eq!((r[0].io_bytes, r[0].net_bytes), (Some(0), None), "measured: none; not measured: absent");
        let off = HostSample { unavailable: vec![truce_common::signal::Unavailable { signal: crate::probes::BLOCK_SIGNAL.into(), reason: "turned off".into() }], ..sample };
        assert_eq!(rows(&off, &[])[0].io_bytes, None, "no block probes: no device bytes, not zero");
    }
}
