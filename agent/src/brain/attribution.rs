//! Attribution: who hurts whom.
//!
//! Two kinds of evidence, combined over a sliding window of periods:
//! - the kernel's who-delayed-whom matrix ([`DelayCell`]): run-queue wait of the victim's
//!   threads, credited to the cgroup that held the CPU — direct, but CPU only;
//! - CPI2's lagged correlation between a neighbour's usage (CPU millicores, I/O bytes/s) and
//!   the victim's interference score — indirect, but it sees caches, memory bandwidth and disks.
//!
//! blame ∝ `kernel_weight` × (the neighbour's share of kernel-credited wait)
//!        + (1 − `kernel_weight`) × (its share of positive correlations ≥ `min_correlation`);
//! without any kernel-credited wait the correlation alone decides. Blames are shares of the
//! total over every delayer, but only observed workloads are ranked as antagonists: wait
//! credited to the root cgroup or unmanaged cgroups is shown in the matrix and explanations.

use super::stats::lagged_correlation;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use truce_common::estimate::{Antagonist, InterferenceEstimate, InterferenceMatrix, MatrixCell, MatrixWorkload};
use truce_common::model::WorkloadId;
use truce_common::signal::{HostSample, WorkloadSample};

#[derive(Clone, Debug)]
pub struct AttributionParams {
    /// Periods in the sliding window.
    pub window: usize,
    /// Largest lag (in periods) tried between a neighbour's usage and the victim's slowdown.
    pub max_lag: usize,
    pub kernel_weight: f64,
    /// Correlations below this are treated as no evidence.
    pub min_correlation: f64,
    /// Antagonists kept per victim.
    pub top: usize,
    /// A victim whose mean interference score over the window is below this is not slowed:
    /// nobody is blamed.
    pub min_slowdown: f64,
}

impl Default for AttributionParams {
    fn default() -> AttributionParams {
        AttributionParams { window: 30, max_lag: 3, kernel_weight: 0.7, min_correlation: 0.5, top: 5, min_slowdown: 0.05 }
    }
}

#[derive(Clone, Debug)]
struct Period {
    /// Interference score per workload this period.
    slowdown: HashMap<WorkloadId, f64>,
    cpu_millicores: HashMap<WorkloadId, f64>,
    io_bytes_per_s: HashMap<WorkloadId, f64>,
    /// (victim, delayer) -> wait ns.
    waits: HashMap<(WorkloadId, WorkloadId), u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Attribution {
    params: AttributionParams,
    periods: VecDeque<Period>,
    names: HashMap<WorkloadId, String>,
}

/// Evidence about one candidate antagonist of one victim.
struct Evidence {
    delayer: WorkloadId,
    kernel_wait_ns: u64,
    correlation: Option<(f64, usize, &'static str)>,
}

pub fn cpu_millicores(w: &WorkloadSample, period_ms: u64) -> f64 {
    millicores(w.cpu.on_cpu_ns, period_ms)
}

/// `ns` of CPU time (on a CPU, or waiting for one) over a period of `period_ms`, in
/// millicores: ns / (period_ms * 1000).
pub fn millicores(ns: u64, period_ms: u64) -> f64 {
    ns as f64 / (period_ms.max(1) as f64 * 1000.0)
}

/// The workload's block I/O over the period, from the block probes, or where they do not run
/// (turned off, or the kernel refused them) from its own io.stat: the kernel's count of the
/// same bytes, so an I/O antagonist is still ranked. Where the probes run, their count stays
/// the one used, so a host's rankings do not change with the setting.
pub fn io_bytes_per_s(w: &WorkloadSample, period_ms: u64, block_probes: bool) -> f64 {
    let bytes: u64 = if block_probes {
        w.io.iter().map(|d| d.read_bytes + d.write_bytes).sum()
    } else {
        w.files.io_rbytes.unwrap_or(0) + w.files.io_wbytes.unwrap_or(0)
    };
    bytes as f64 * 1000.0 / period_ms.max(1) as f64
}

impl Attribution {
    pub fn new(params: AttributionParams) -> Attribution {
        Attribution { params, periods: VecDeque::new(), names: HashMap::new() }
    }

    /// Add this period and fill each estimate's ranked antagonists; returns the matrix view.
    pub fn observe(&mut self, sample: &HostSample, estimates: &mut [InterferenceEstimate]) -> InterferenceMatrix {
        let mut period = Period {
            slowdown: estimates.iter().map(|e| (e.workload, e.score)).collect(),
            cpu_millicores: HashMap::new(),
            io_bytes_per_s: HashMap::new(),
            waits: HashMap::new(),
        };
        let block_probes = crate::probes::measured(&sample.unavailable, crate::probes::BLOCK_SIGNAL);
        for w in &sample.workloads {
            let id = w.workload.id;
            period.cpu_millicores.insert(id, cpu_millicores(w, sample.period_ms));
            period.io_bytes_per_s.insert(id, io_bytes_per_s(w, sample.period_ms, block_probes));
            self.names.insert(id, w.name.clone());
        }
        for c in sample.delays.iter().filter(|c| c.victim != c.delayer) {
            *period.waits.entry((WorkloadId(c.victim), WorkloadId(c.delayer))).or_insert(0) += c.wait_ns;
        }
        if self.periods.len() == self.params.window.max(1) {
            self.periods.pop_front();
        }
        self.periods.push_back(period);
        self.forget_names();

        let mut cells: BTreeMap<(WorkloadId, WorkloadId), MatrixCell> = BTreeMap::new();
        for p in &self.periods {
            for (&(victim, delayer), &wait_ns) in &p.waits {
                let cell = cells.entry((victim, delayer)).or_insert(MatrixCell { victim, delayer, wait_ns: 0, blame: 0.0 });
                cell.wait_ns += wait_ns;
            }
        }
        for est in estimates.iter_mut() {
            let id = est.workload;
            let mean_slowdown = self.series(|p| p.slowdown.get(&id).copied()).iter().sum::<f64>()
                / self.periods.len().max(1) as f64;
            est.antagonists = if mean_slowdown >= self.params.min_slowdown { self.rank(id) } else { Vec::new() };
            for a in &est.antagonists {
                let cell = cells.entry((est.workload, a.workload)).or_insert(MatrixCell {
                    victim: est.workload,
                    delayer: a.workload,
                    wait_ns: 0,
                    blame: 0.0,
                });
                cell.blame = a.blame;
            }
        }
        let mut cells: Vec<MatrixCell> = cells.into_values().collect();
        cells.sort_by(|a, b| a.victim.cmp(&b.victim).then(b.wait_ns.cmp(&a.wait_ns)));
        let mut ids: BTreeSet<WorkloadId> = cells.iter().flat_map(|c| [c.victim, c.delayer]).collect();
        ids.extend(sample.workloads.iter().map(|w| w.workload.id));
        InterferenceMatrix {
            at: sample.at,
            window_periods: self.periods.len() as u32,
            workloads: ids.into_iter().map(|id| MatrixWorkload { workload: id, name: self.name(id) }).collect(),
            cells,
        }
    }

    fn name(&self, id: WorkloadId) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| id.to_string())
    }

    fn forget_names(&mut self) {
        let live: BTreeSet<WorkloadId> = self.periods.iter().flat_map(|p| p.cpu_millicores.keys().copied()).collect();
        self.names.retain(|id, _| live.contains(id));
    }

    fn series(&self, pick: impl Fn(&Period) -> Option<f64>) -> Vec<f64> {
        self.periods.iter().map(|p| pick(p).unwrap_or(0.0)).collect()
    }

    fn rank(&self, victim: WorkloadId) -> Vec<Antagonist> {
        let slowdown = self.series(|p| p.slowdown.get(&victim).copied());
        let mut candidates: BTreeSet<WorkloadId> = BTreeSet::new();
        for p in &self.periods {
            candidates.extend(p.cpu_millicores.keys().copied());
            candidates.extend(p.waits.keys().filter(|(v, _)| *v == victim).map(|(_, d)| *d));
        }
        candidates.remove(&victim);

        let evidence: Vec<Evidence> = candidates
            .into_iter()
            .map(|n| {
                let kernel_wait_ns = self.periods.iter().filter_map(|p| p.waits.get(&(victim, n))).sum();
                let cpu = self.series(|p| p.cpu_millicores.get(&n).copied());
                let io = self.series(|p| p.io_bytes_per_s.get(&n).copied());
                let by_cpu = lagged_correlation(&cpu, &slowdown, self.params.max_lag).map(|(r, l)| (r, l, "CPU"));
                let by_io = lagged_correlation(&io, &slowdown, self.params.max_lag).map(|(r, l)| (r, l, "I/O"));
                let correlation = match (by_cpu, by_io) {
                    (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
                    (a, b) => a.or(b),
                };
                Evidence { delayer: n, kernel_wait_ns, correlation }
            })
            .collect();

        let total_wait: u64 = evidence.iter().map(|e| e.kernel_wait_ns).sum();
        let usable_corr = |e: &Evidence| {
            e.correlation.map(|(r, _, _)| r).filter(|r| *r >= self.params.min_correlation).unwrap_or(0.0)
        };
        let total_corr: f64 = evidence.iter().map(usable_corr).sum();
        let kw = if total_wait > 0 { self.params.kernel_weight } else { 0.0 };
        let mut ranked: Vec<(f64, &Evidence)> = evidence
            .iter()
            .map(|e| {
                let k = if total_wait > 0 { e.kernel_wait_ns as f64 / total_wait as f64 } else { 0.0 };
                let c = if total_corr > 0.0 { usable_corr(e) / total_corr } else { 0.0 };
                (kw * k + (1.0 - kw) * c, e)
            })
            .filter(|(raw, _)| *raw > 0.0)
            .collect();
        let total_raw: f64 = ranked.iter().map(|(r, _)| r).sum();
        // Blame is shared over every delayer, but only observed workloads are ranked: the
        // rest (the root cgroup, unmanaged cgroups) cannot bid or be leased, so they are
        // reported in the matrix and in each explanation, not as antagonists.
        let background_ns: u64 =
            evidence.iter().filter(|e| !self.names.contains_key(&e.delayer)).map(|e| e.kernel_wait_ns).sum();
        ranked.retain(|(_, e)| self.names.contains_key(&e.delayer));
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.delayer.cmp(&b.1.delayer)));
        ranked.truncate(self.params.top);
        ranked
            .into_iter()
            .map(|(raw, e)| {
                let blame = raw / total_raw;
                Antagonist {
                    workload: e.delayer,
                    blame,
                    kernel_wait_ns: e.kernel_wait_ns,
                    correlation: e.correlation.map(|(r, _, _)| r),
                    explanation: self.explain(e, blame, total_wait, background_ns),
                }
            })
            .collect()
    }

    fn explain(&self, e: &Evidence, blame: f64, total_wait: u64, background_ns: u64) -> String {
        let n = self.periods.len();
        let name = self.name(e.delayer);
        let who = if name == e.delayer.to_string() { name } else { format!("{name} ({})", e.delayer) };
        let mut s = format!("{who} gets {:.0}% of the blame: ", blame * 100.0);
        if e.kernel_wait_ns > 0 {
            s.push_str(&format!(
                "it held the CPU while this workload waited {:.0} ms in the run queue over the last {n} periods \
                 ({:.0}% of neighbour-caused wait)",
                e.kernel_wait_ns as f64 / 1e6,
                e.kernel_wait_ns as f64 * 100.0 / total_wait.max(1) as f64
            ));
        } else {
            s.push_str("the kernel credited it no run-queue wait");
        }
        match e.correlation {
            Some((r, lag, what)) if r >= self.params.min_correlation => s.push_str(&format!(
                "; its {what} usage correlates with this workload's slowdown (r = {r:.2} at lag {lag})"
            )),
            Some((r, _, what)) => s.push_str(&format!("; its {what} usage barely tracks the slowdown (r = {r:.2})")),
            None => s.push_str("; no correlation computed (usage or slowdown flat, or too little history)"),
        }
        if background_ns > 0 {
            s.push_str(&format!(
                "; a further {:.0}% of the neighbour-caused wait went to cgroups that are not observed workloads \
                 (the root cgroup or unmanaged cgroups)",
                background_ns as f64 * 100.0 / total_wait.max(1) as f64
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::estimator::Estimator;
    use crate::brain::testkit::{host, workload};
    use truce_common::signal::DelayCell;

    fn cell(victim: u64, delayer: u64, ms: u64) -> DelayCell {
        DelayCell { victim, delayer, wait_ns: ms * 1_000_000, count: 10 }
    }

    #[test]
    fn two_burners_blame_each_other_through_the_kernel_matrix() {
        let (mut est, mut attr) = (Estimator::default(), Attribution::default());
        let mut last = None;
        for t in 0..10 {
            let s = host(t, vec![workload(1, "burner-a", 500, 500), workload(2, "burner-b", 500, 500)], vec![
                cell(1, 2, 480),
                cell(2, 1, 470),
                cell(1, 99, 20),
            ]);
            let mut e = est.observe(&s);
            let m = attr.observe(&s, &mut e);
            last = Some((e, m));
        }
        let Some((e, m)) = last else { panic!("no periods") };
        assert_eq!(e[0].antagonists[0].workload, WorkloadId(2));
        assert_eq!(e[1].antagonists[0].workload, WorkloadId(1));
        assert!(e[0].antagonists[0].explanation.contains("burner-b"), "{}", e[0].antagonists[0].explanation);
        assert!(e[0].antagonists[0].blame > 0.9);
        // cg99 is not an observed workload: it shares the blame but is not ranked.
        assert_eq!(e[0].antagonists.len(), 1);
        assert!(e[0].antagonists[0].blame < 1.0);
        assert!(e[0].antagonists[0].explanation.contains("not observed workloads"));
        let c = m.cells.iter().find(|c| c.victim == WorkloadId(1) && c.delayer == WorkloadId(2));
        assert_eq!(c.map(|c| c.wait_ns), Some(4_800_000_000));
        assert_eq!(m.window_periods, 10);
    }

    /// 30 periods of an I/O thrasher (bursts every third period, seen only in its io.stat)
    /// and a victim whose I/O pressure rises the period after; `probes_off` marks the block
    /// probes unavailable, as `probes.block = false` does.
    fn io_thrasher_run(probes_off: bool) -> Vec<InterferenceEstimate> {
        let (mut est, mut attr) = (Estimator::default(), Attribution::default());
        let mut last = Vec::new();
        for t in 0..30u64 {
            let (burst, prev_burst) = (t % 3 == 0, t > 0 && (t - 1) % 3 == 0);
            let mut victim = workload(1, "victim", 300, 0);
            let some_avg10 = if prev_burst { 60.0 } else { 1.0 };
            victim.psi.io = Some(truce_common::signal::Pressure { some_avg10, some_avg60: some_avg10, some_total_us: 0, full_avg10: Some(some_avg10 / 2.0), full_total_us: Some(0) });
            let mut thrasher = workload(2, "thrasher", 100, 0);
            thrasher.files.io_wbytes = Some(if burst { 400_000_000 } else { 1_000_000 });
            let steady = workload(3, "steady", 300, 0);
            let mut s = host(t, vec![victim, thrasher, steady], vec![]);
            if probes_off {
                s.unavailable.push(truce_common::signal::Unavailable { signal: crate::probes::BLOCK_SIGNAL.into(), reason: "turned off".into() });
            }
            let mut e = est.observe(&s);
            attr.observe(&s, &mut e);
            last = e;
        }
        last
    }

    #[test]
    fn without_block_probes_an_io_thrasher_is_ranked_by_its_io_stat_bytes() {
        let off = io_thrasher_run(true);
        let top = off[0].antagonists.first().expect("the victim has an antagonist");
        assert_eq!(top.workload, WorkloadId(2), "{:?}", off[0].antagonists);
        assert!(top.explanation.contains("I/O"), "{}", top.explanation);
        // With the probes running, their per-device count is the one used (none here).
        let on = io_thrasher_run(false);
        assert!(!on[0].antagonists.iter().any(|a| a.workload == WorkloadId(2) && a.explanation.contains("I/O")), "{:?}", on[0].antagonists);
    }

    #[test]
    fn correlation_alone_finds_a_cache_thrasher() {
        let (mut est, mut attr) = (Estimator::default(), Attribution::default());
        let mut last = Vec::new();
        for t in 0..30u64 {
            // The thrasher's bursts (every third period) inflate the victim's CPI one period later.
            let burst = (t % 3) == 0;
            let prev_burst = t > 0 && ((t - 1) % 3) == 0;
            let mut victim = workload(1, "victim", 400, 0);
            let cycles = if prev_burst { 2_000_000 } else { 1_000_000 };
            victim.perf = Some(truce_common::signal::PerfSignals { cycles, instructions: 1_000_000, llc_misses: 0 });
            let thrasher = workload(2, "thrasher", if burst { 900 } else { 50 }, 0);
            let steady = workload(3, "steady", 300, 0);
            let s = host(t, vec![victim, thrasher, steady], vec![]);
            let mut e = est.observe(&s);
            attr.observe(&s, &mut e);
            last = e;
        }
        let top = &last[0].antagonists[0];
        assert_eq!(top.workload, WorkloadId(2));
        assert_eq!(top.kernel_wait_ns, 0);
        // Below 1: the CPI baseline is still being learned in the first periods.
        assert!(top.correlation.unwrap_or(0.0) > 0.7, "{top:?}");
        assert!(top.explanation.contains("lag 1"), "{}", top.explanation);
        // The flat neighbour has no evidence against it.
        assert!(last[0].antagonists.iter().all(|a| a.workload != WorkloadId(3)));
    }

    #[test]
    fn window_forgets_old_waits() {
        let mut attr = Attribution::new(AttributionParams { window: 3, ..AttributionParams::default() });
        let mut est = Estimator::default();
        let s = host(0, vec![workload(1, "a", 500, 500), workload(2, "b", 500, 0)], vec![cell(1, 2, 500)]);
        let mut e = est.observe(&s);
        attr.observe(&s, &mut e);
        let mut m = InterferenceMatrix::default();
        for t in 1..4 {
            let s = host(t, vec![workload(1, "a", 900, 0), workload(2, "b", 500, 0)], vec![]);
            let mut e = est.observe(&s);
            m = attr.observe(&s, &mut e);
        }
        assert!(m.cells.is_empty(), "{:?}", m.cells);
    }
}
