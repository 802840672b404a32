//! Interference estimator: how much slower is each workload than when it runs alone?
//!
//! Per workload it learns an uncontended baseline online for each signal and reports the
//! slowdown against it as explained [`ScoreComponent`]s. See `docs/bidding.md` ("Estimator").
//!
//! Quiet-period rule (when a baseline learns): the workload waited on neighbours for at most
//! 5 % of its own on-CPU time (kernel who-delayed-whom matrix), the host's CPU PSI `some avg10`
//! is below 10 % where the host reports it, and the host's CPUs were at most 75 % busy.
//! Share-type signals (run-queue delay share, PSI) default to 0 — their value when alone —
//! until three quiet periods have been seen; after that the baseline is the 25th percentile of
//! the (bounded) quiet-period history. Ratio-type signals (CPI, I/O latency) have no
//! such prior: until three quiet periods exist they fall back to the 10th percentile of the
//! workload's own history (CPI2 also uses the workload's own distribution), and before five
//! observations they are reported unavailable rather than guessed.

use super::stats::{Ring, quantile};
use std::collections::HashMap;
use truce_common::estimate::{InterferenceEstimate, ScoreComponent};
use truce_common::model::{Timestamp, WorkloadId};
use truce_common::signal::{HostSample, WorkloadSample};

/// Tunables; the defaults are what `docs/bidding.md` documents.
#[derive(Clone, Debug)]
pub struct EstimatorParams {
    pub quiet_neighbour_wait_share: f64,
    pub quiet_host_psi_cpu_some: f64,
    pub quiet_host_busy_share: f64,
    /// The baseline is this quantile of the quiet-period values.
    pub quiet_quantile: f64,
    pub min_quiet_periods: usize,
    pub min_history: usize,
    pub history: usize,
    /// Ratio slowdowns (CPI, I/O latency) are capped so one wild period cannot dominate.
    pub ratio_cap: f64,
    /// Forget a workload not seen for this long.
    pub forget_after_ms: u64,
}

impl Default for EstimatorParams {
    fn default() -> EstimatorParams {
        EstimatorParams {
            quiet_neighbour_wait_share: 0.05,
            quiet_host_psi_cpu_some: 10.0,
            quiet_host_busy_share: 0.75,
            quiet_quantile: 0.25,
            min_quiet_periods: 3,
            min_history: 5,
            history: 256,
            ratio_cap: 5.0,
            forget_after_ms: 600_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A fraction of time (0..=1): slowdown is the excess over baseline.
    Share,
    /// A cost per unit of work: slowdown is the relative inflation over baseline.
    Ratio,
}

/// The components, in report order: (name, kind, weight).
const COMPONENTS: [(&str, Kind, f64); 9] = [
    ("rq_delay_share", Kind::Share, 1.0),
    ("cpi_inflation", Kind::Ratio, 1.0),
    ("io_latency_inflation", Kind::Ratio, 0.5),
    ("psi_cpu_some", Kind::Share, 0.5),
    ("psi_cpu_full", Kind::Share, 1.0),
    ("psi_memory_some", Kind::Share, 0.5),
    ("psi_memory_full", Kind::Share, 1.0),
    ("psi_io_some", Kind::Share, 0.5),
    ("psi_io_full", Kind::Share, 1.0),
];

#[derive(Clone, Debug)]
struct Baseline {
    quiet: Ring,
    history: Ring,
}

impl Baseline {
    fn new(cap: usize) -> Baseline {
        Baseline { quiet: Ring::new(cap), history: Ring::new(cap) }
    }

    fn learn(&mut self, value: f64, quiet: bool) {
        self.history.push(value);
        if quiet {
            self.quiet.push(value);
        }
    }

    fn value(&self, kind: Kind, p: &EstimatorParams) -> Option<f64> {
        if self.quiet.len() >= p.min_quiet_periods {
            // A low quantile, not the mean: the quiet rule only sees CPU contention, so a few
            // "quiet" periods may still carry cache or disk interference.
            return quantile(&self.quiet.to_vec(), p.quiet_quantile);
        }
        match kind {
            Kind::Share => Some(0.0),
            Kind::Ratio if self.history.len() >= p.min_history => quantile(&self.history.to_vec(), 0.1),
            Kind::Ratio => None,
        }
    }
}

#[derive(Clone, Debug)]
struct WorkloadState {
    last_seen: Timestamp,
    baselines: HashMap<&'static str, Baseline>,
}

#[derive(Clone, Debug, Default)]
pub struct Estimator {
    params: EstimatorParams,
    workloads: HashMap<WorkloadId, WorkloadState>,
}

impl Estimator {
    pub fn new(params: EstimatorParams) -> Estimator {
        Estimator { params, workloads: HashMap::new() }
    }

    /// One estimate per workload in the sample (antagonists are left empty for attribution).
    pub fn observe(&mut self, sample: &HostSample) -> Vec<InterferenceEstimate> {
        let now = sample.at;
        let host_quiet = host_is_quiet(sample, &self.params);
        let mut out = Vec::with_capacity(sample.workloads.len());
        for w in &sample.workloads {
            let id = w.workload.id;
            let neighbour_wait: u64 = sample
                .delays
                .iter()
                .filter(|c| c.victim == id.0 && c.delayer != id.0)
                .map(|c| c.wait_ns)
                .sum();
            let quiet = host_quiet
                && (neighbour_wait as f64)
                    <= self.params.quiet_neighbour_wait_share * w.cpu.on_cpu_ns.max(1) as f64;
            let state = self
                .workloads
                .entry(id)
                .or_insert_with(|| WorkloadState { last_seen: now, baselines: HashMap::new() });
            state.last_seen = now;
            out.push(estimate_one(&self.params, state, w, now, quiet));
        }
        let forget = self.params.forget_after_ms;
        self.workloads.retain(|_, s| now.ms_since(s.last_seen) <= forget);
        out
    }
}

fn host_is_quiet(sample: &HostSample, p: &EstimatorParams) -> bool {
    let psi_ok = sample
        .totals
        .psi
        .cpu
        .as_ref()
        .is_none_or(|c| c.some_avg10 < p.quiet_host_psi_cpu_some);
    let capacity_ns = u64::from(sample.totals.cpus).saturating_mul(sample.period_ms).saturating_mul(1_000_000);
    let busy_ok = capacity_ns == 0
        || (sample.totals.cpu_busy_ns as f64) <= p.quiet_host_busy_share * capacity_ns as f64;
    psi_ok && busy_ok
}

/// This period's raw value for a component; `None` when the signal is missing or undefined.
fn raw_value(name: &str, w: &WorkloadSample) -> Option<f64> {
    let pct = |x: f64| x / 100.0;
    match name {
        "rq_delay_share" => w.cpu.rq_delay_share(),
        "cpi_inflation" => w.perf.as_ref().and_then(|p| p.cpi()),
        "io_latency_inflation" => io_mean_latency_ns(w),
        "psi_cpu_some" => w.psi.cpu.as_ref().map(|p| pct(p.some_avg10)),
        "psi_cpu_full" => w.psi.cpu.as_ref().and_then(|p| p.full_avg10).map(pct),
        "psi_memory_some" => w.psi.memory.as_ref().map(|p| pct(p.some_avg10)),
        "psi_memory_full" => w.psi.memory.as_ref().and_then(|p| p.full_avg10).map(pct),
        "psi_io_some" => w.psi.io.as_ref().map(|p| pct(p.some_avg10)),
        "psi_io_full" => w.psi.io.as_ref().and_then(|p| p.full_avg10).map(pct),
        _ => None,
    }
}

/// Completion-weighted mean latency over the workload's devices.
fn io_mean_latency_ns(w: &WorkloadSample) -> Option<f64> {
    let (mut sum, mut ops) = (0.0, 0u64);
    for d in &w.io {
        if let Some(lat) = d.latency_mean_ns {
            let n = d.read_ops + d.write_ops;
            sum += lat as f64 * n.max(1) as f64;
            ops += n.max(1);
        }
    }
    (ops > 0).then(|| sum / ops as f64)
}

fn estimate_one(
    p: &EstimatorParams,
    state: &mut WorkloadState,
    w: &WorkloadSample,
    now: Timestamp,
    quiet: bool,
) -> InterferenceEstimate {
    let mut components = Vec::new();
    let mut unavailable = Vec::new();
    for (name, kind, weight) in COMPONENTS {
        let Some(value) = raw_value(name, w).filter(|v| v.is_finite() && *v >= 0.0) else {
            unavailable.push(name.to_string());
            continue;
        };
        let baseline = state.baselines.entry(name).or_insert_with(|| Baseline::new(p.history));
        // Judge this period against the baseline learned so far, then learn from it.
        let base = baseline.value(kind, p);
        baseline.learn(value, quiet);
        let Some(base) = base else {
            unavailable.push(name.to_string());
            continue;
        };
        let slowdown = match kind {
            Kind::Share => (value - base).max(0.0),
            Kind::Ratio if base > 0.0 => (value / base - 1.0).clamp(0.0, p.ratio_cap),
            Kind::Ratio => 0.0,
        };
        components.push(ScoreComponent {
            name: name.to_string(),
            value,
            baseline: base,
            weight,
            contribution: weight * slowdown,
        });
    }
    let score = components.iter().map(|c| c.contribution).sum();
    InterferenceEstimate { workload: w.workload.id, at: now, score, components, unavailable, antagonists: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::testkit::{host, workload};
    use truce_common::signal::{DelayCell, PerfSignals};

    fn component<'a>(e: &'a InterferenceEstimate, name: &str) -> Option<&'a ScoreComponent> {
        e.components.iter().find(|c| c.name == name)
    }

    #[test]
    fn no_pmu_means_cpi_is_unavailable_and_not_scored() {
        let mut est = Estimator::default();
        let s = host(0, vec![workload(1, "a", 500, 500)], vec![]);
        let e = est.observe(&s);
        assert!(e[0].unavailable.iter().any(|u| u == "cpi_inflation"));
        assert!(component(&e[0], "cpi_inflation").is_none());
        // Score is exactly the sum of the available contributions.
        let sum: f64 = e[0].components.iter().map(|c| c.contribution).sum();
        assert_eq!(e[0].score, sum);
    }

    #[test]
    fn rq_delay_share_counts_against_an_uncontended_baseline() {
        let mut est = Estimator::default();
        let s = host(0, vec![workload(1, "a", 600, 400)], vec![]);
        let e = est.observe(&s);
        let c = component(&e[0], "rq_delay_share").map(|c| (c.value, c.baseline, c.contribution));
        assert_eq!(c, Some((0.4, 0.0, 0.4)));
    }

    #[test]
    fn cpi_baseline_learns_in_quiet_periods_and_inflation_shows_under_contention() {
        let mut est = Estimator::default();
        let mut t = 0;
        // Quiet: CPI 1.0, no neighbour wait.
        for _ in 0..10 {
            let mut w = workload(1, "a", 900, 10);
            w.perf = Some(PerfSignals { cycles: 1_000_000, instructions: 1_000_000, llc_misses: 0 });
            est.observe(&host(t, vec![w], vec![]));
            t += 1;
        }
        // Contended: CPI 1.5 while a neighbour delays it heavily.
        let mut w = workload(1, "a", 500, 400);
        w.perf = Some(PerfSignals { cycles: 1_500_000, instructions: 1_000_000, llc_misses: 0 });
        let delay = DelayCell { victim: 1, delayer: 2, wait_ns: 400_000_000, count: 100 };
        let e = est.observe(&host(t, vec![w], vec![delay]));
        let cpi = component(&e[0], "cpi_inflation").map(|c| (c.baseline, c.contribution));
        let (base, contrib) = cpi.unwrap_or((0.0, 0.0));
        assert!((base - 1.0).abs() < 1e-9, "baseline {base}");
        assert!((contrib - 0.5).abs() < 1e-9, "contribution {contrib}");
    }

    #[test]
    fn contended_periods_do_not_move_the_baseline() {
        let mut est = Estimator::default();
        for t in 0..5 {
            let delay = DelayCell { victim: 1, delayer: 2, wait_ns: 500_000_000, count: 10 };
            est.observe(&host(t, vec![workload(1, "a", 500, 500)], vec![delay]));
        }
        let e = est.observe(&host(6, vec![workload(1, "a", 500, 500)], vec![]));
        // Still the prior: five contended periods are no evidence of the uncontended value.
        assert_eq!(component(&e[0], "rq_delay_share").map(|c| c.baseline), Some(0.0));
    }

    #[test]
    fn ratio_baseline_is_unavailable_before_enough_history() {
        let mut est = Estimator::default();
        let delay = DelayCell { victim: 1, delayer: 2, wait_ns: 500_000_000, count: 10 };
        let mut w = workload(1, "a", 500, 500);
        w.perf = Some(PerfSignals { cycles: 2, instructions: 1, llc_misses: 0 });
        let e = est.observe(&host(0, vec![w], vec![delay]));
        assert!(e[0].unavailable.iter().any(|u| u == "cpi_inflation"));
    }
}
