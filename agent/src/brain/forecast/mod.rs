//! Demand forecaster: per workload and resource, a forecast over a configurable horizon with
//! an interval, served by whichever model has the lowest rolling MASE on that series.
//!
//! Cost is bounded: the history is a ring of `history` periods, and the augurs models are
//! refitted only every `refit_every` periods. Between refits they serve the path computed at
//! the last fit, shifted to the current step (the fit predicts `refit_every + horizon` steps).
//!
//! - `mean` is the average point forecast over the horizon, `upper`/`lower` the widest interval
//!   bound reached in it, so `upper` is the peak the bidder must cover.
//! - The overload probability is the largest per-step probability (normal errors, σ from the
//!   interval) that demand exceeds the current allocation: a lower bound on "at any step".
//! - `anomaly` is set when this period's value fell outside ±3σ of the served model's
//!   one-step forecast.

pub mod budget;
pub mod models;
mod series;

pub use budget::{CpuBudget, Effort};
pub use models::{ModelKind, PathForecast};
use series::Series;
use std::collections::HashMap;
use truce_common::estimate::DemandForecast;
use truce_common::model::{Resource, WorkloadId};
use truce_common::signal::{HostSample, WorkloadSample};

use super::policy::Allocation;

#[derive(Clone, Debug)]
pub struct ForecasterParams {
    /// Steps (periods) ahead.
    pub horizon: usize,
    /// Season length in periods, for seasonal naive and MSTL.
    pub season: usize,
    /// Ring buffer length per series.
    pub history: usize,
    /// Refit the augurs models every this many periods.
    pub refit_every: usize,
    /// Interval coverage.
    pub level: f64,
    /// Errors kept per model for the rolling MASE.
    pub mase_window: usize,
    /// Errors a model needs before it can be served.
    pub min_evaluations: usize,
    pub models: Vec<ModelKind>,
    pub forget_after_ms: u64,
}

impl Default for ForecasterParams {
    fn default() -> ForecasterParams {
        ForecasterParams {
            horizon: 10,
            season: 60,
            // ~30 ms of CPU per refit of all models on 360 points (release build, measured with
            // the forecast_bench example), less on 240: refitting
            // every 30 periods keeps 100 series under 10 % of one core at 1 s periods.
            history: 240,
            refit_every: 30,
            level: 0.9,
            mase_window: 120,
            min_evaluations: 20,
            models: ModelKind::ALL.to_vec(),
            forget_after_ms: 600_000,
        }
    }
}

#[derive(Debug, Default)]
pub struct Forecaster {
    params: ForecasterParams,
    series: HashMap<(WorkloadId, Resource), Series>,
    /// Costly refits that were due but waited for the CPU budget, since start.
    deferred_refits: u64,
    /// Costly refits run, since start (the budget learns their cost from it).
    refits_run: u64,
    /// What the last forecasting period made: served again by periods only recorded.
    last: Vec<DemandForecast>,
}

/// This period's demand per resource, in the resource's unit.
pub fn demand(w: &WorkloadSample, period_ms: u64) -> Vec<(Resource, f64)> {
    let per_s = |bytes: u64| bytes as f64 * 1000.0 / period_ms.max(1) as f64;
    let mut out = vec![(Resource::Cpu, super::attribution::cpu_millicores(w, period_ms))];
    if let Some(m) = w.files.memory_current {
        out.push((Resource::Memory, m as f64));
    }
    for d in &w.io {
        out.push((Resource::Io { dev: d.dev }, per_s(d.read_bytes + d.write_bytes)));
    }
    if let Some(n) = &w.net {
        out.push((Resource::Net, per_s(n.rx_bytes + n.tx_bytes)));
    }
    out
}

impl Forecaster {
    pub fn new(params: ForecasterParams) -> Forecaster {
        Forecaster { params, series: HashMap::new(), deferred_refits: 0, refits_run: 0, last: Vec::new() }
    }

    /// Costly refits that were due but waited for the CPU budget, since start.
    pub fn deferred_refits(&self) -> u64 {
        self.deferred_refits
    }

    /// Costly refits run, since start.
    pub fn refits_run(&self) -> u64 {
        self.refits_run
    }

    pub fn params(&self) -> &ForecasterParams {
        &self.params
    }

    /// Feed one period; returns a forecast for every series seen in it.
    pub fn observe(&mut self, sample: &HostSample, allocations: &HashMap<WorkloadId, Allocation>) -> Vec<DemandForecast> {
        self.observe_within(sample, allocations, Effort::Full { refits: u64::MAX })
    }

    /// As [`Forecaster::observe`], doing what the caller's CPU budget ([`CpuBudget`]) allows:
    /// `Full` refits due costly models until its allowance is used (a series' models go
    /// together, so the last series may take it past), `Cheap` leaves them to their last paths while
    /// those last, and `Record` only records the period: each series keeps the value, no
    /// model is scored or fitted, and the last forecasts serve again (their `at` says how old
    /// they are). The cheap models alone cost more than a 5 % share under emulation, so the
    /// budget has to cover all of the forecaster's work, not only refits.
    pub fn observe_within(&mut self, sample: &HostSample, allocations: &HashMap<WorkloadId, Allocation>, effort: Effort) -> Vec<DemandForecast> {
        let within_budget = effort != Effort::Record;
        let mut allowance = match effort {
            Effort::Full { refits } => refits,
            _ => 0,
        };
        let now = sample.at;
        let mut out = Vec::new();
        for w in &sample.workloads {
            let alloc = allocations.get(&w.workload.id);
            for (resource, value) in demand(w, sample.period_ms) {
                let phase = self.series.len() as u64;
                let series = self.series.entry((w.workload.id, resource)).or_insert_with(|| Series::new(&self.params, phase));
                if !within_budget {
                    self.deferred_refits += series.record(value, now, &self.params) as u64;
                    continue;
                }
                let (deferred, ran) = series.push(value, now, &self.params, allowance > 0);
                allowance = allowance.saturating_sub(ran as u64);
                self.deferred_refits += deferred as u64;
                self.refits_run += ran as u64;
                let allocated = alloc.and_then(|a| a.get(&resource));
                if let Some(f) = series.forecast(w.workload.id, resource, now, sample.period_ms, allocated, &self.params)
                {
                    out.push(f);
                }
            }
        }
        let forget = self.params.forget_after_ms;
        self.series.retain(|_, s| now.ms_since(s.last_seen()) <= forget);
        if within_budget {
            self.last.clone_from(&out);
            return out;
        }
        // Only workloads still here: a gone workload's forecast would bid for nobody.
        let present: std::collections::HashSet<WorkloadId> = sample.workloads.iter().map(|w| w.workload.id).collect();
        self.last.retain(|f| present.contains(&f.workload));
        self.last.clone()
    }

    /// The rolling MASE of every model on one series (for `observe` and tests).
    pub fn scores(&self, workload: WorkloadId, resource: Resource) -> Vec<(ModelKind, Option<f64>)> {
        self.series.get(&(workload, resource)).map(|s| s.scores(self.params.season)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::testkit::{host, workload};

    fn params() -> ForecasterParams {
        ForecasterParams { horizon: 4, season: 12, history: 48, refit_every: 8, min_evaluations: 8, ..Default::default() }
    }

    /// The cheap models only: for tests of the probability and anomaly logic, where augurs
    /// fits (slow in debug builds) add nothing.
    fn cheap_params() -> ForecasterParams {
        ForecasterParams { models: vec![ModelKind::SeasonalNaive, ModelKind::Ewma], ..params() }
    }

    fn cpu_forecast(out: &[DemandForecast]) -> Option<&DemandForecast> {
        out.iter().find(|f| f.resource == Resource::Cpu)
    }

    #[test]
    fn seasonal_cpu_is_forecast_with_an_interval_and_a_served_model() {
        let mut fc = Forecaster::new(params());
        let mut last = Vec::new();
        for t in 0..56u64 {
            // A 12-period cycle on a slow trend (a flat seasonal difference has no MASE scale).
            let on_ms = 200 + 100 * (t % 12) + 3 * t;
            last = fc.observe(&host(t, vec![workload(1, "a", on_ms, 0)], vec![]), &HashMap::new());
        }
        let Some(f) = cpu_forecast(&last) else { panic!("no cpu forecast") };
        assert!(f.lower <= f.mean && f.mean <= f.upper, "{f:?}");
        assert_eq!(f.horizon_ms, 4000);
        // The served model beats seasonal naive's in-sample error, and a seasonal model serves.
        assert!(f.mase.is_some_and(|m| m < 1.0), "{f:?}");
        assert!(matches!(f.model.as_str(), "seasonal_naive" | "mstl" | "blend"), "{}", f.model);
        assert!(!f.anomaly);
    }

    #[test]
    fn overload_probability_rises_when_demand_nears_the_allocation() {
        let mut fc = Forecaster::new(cheap_params());
        let mut tight = HashMap::new();
        tight.insert(WorkloadId(1), Allocation { entries: vec![(Resource::Cpu, 480)] });
        let mut roomy = HashMap::new();
        roomy.insert(WorkloadId(1), Allocation { entries: vec![(Resource::Cpu, 5000)] });
        let (mut p_tight, mut p_roomy) = (None, None);
        for t in 0..40u64 {
            // Irregular demand between 400 and 499 millicores.
            let s = host(t, vec![workload(1, "a", 400 + (t * 37) % 100, 0)], vec![]);
            p_tight = cpu_forecast(&fc.observe(&s, &tight)).and_then(|f| f.overload_probability);
            let mut fc2 = Forecaster::new(cheap_params());
            fc2.series = fc.series.clone();
            p_roomy = cpu_forecast(&fc2.observe(&s, &roomy)).and_then(|f| f.overload_probability);
        }
        let (Some(tight), Some(roomy)) = (p_tight, p_roomy) else { panic!("no probabilities") };
        assert!(tight > 0.1, "tight {tight}");
        assert!(roomy < 0.01, "roomy {roomy}");
    }

    #[test]
    fn a_sudden_spike_is_an_anomaly() {
        let mut fc = Forecaster::new(cheap_params());
        for t in 0..40u64 {
            fc.observe(&host(t, vec![workload(1, "a", 300 + (t % 2) * 10, 0)], vec![]), &HashMap::new());
        }
        let out = fc.observe(&host(40, vec![workload(1, "a", 1900, 0)], vec![]), &HashMap::new());
        assert!(cpu_forecast(&out).is_some_and(|f| f.anomaly));
    }

    #[test]
    fn periods_over_budget_are_only_recorded_and_serve_the_last_forecasts() {
        let p = ForecasterParams { models: vec![ModelKind::Ewma, ModelKind::Ets], min_evaluations: 2, ..params() };
        let mut fc = Forecaster::new(p);
        let at = |t: u64, on_ms: u64| host(t, vec![workload(1, "a", on_ms + (t * 37) % 100, 0)], vec![]);
        let mut full = Vec::new();
        for t in 0..20u64 {
            full = fc.observe(&at(t, 300), &HashMap::new());
        }
        assert_eq!(fc.deferred_refits(), 0);
        let before = cpu_forecast(&full).expect("a forecast").clone();
        // Over budget while demand triples: the forecasts of period 19 serve, unchanged.
        for t in 20..40u64 {
            let served = fc.observe_within(&at(t, 900), &HashMap::new(), Effort::Record);
            assert_eq!(cpu_forecast(&served), Some(&before), "period {t}");
        }
        assert!(fc.deferred_refits() > 0, "due ETS refits waited");
        // Back within budget: the recorded periods are in the history the models see.
        let after = fc.observe(&at(40, 900), &HashMap::new());
        let f = cpu_forecast(&after).expect("a forecast");
        assert!(f.at > before.at);
        assert!(f.mean > 800.0, "the recorded level shift is forecast: {f:?}");
    }

    #[test]
    fn refits_held_back_in_cheap_periods_are_counted_and_a_model_whose_path_ran_out_is_not_served() {
        let p = ForecasterParams { models: vec![ModelKind::Ewma, ModelKind::Ets], min_evaluations: 2, ..params() };
        let mut fc = Forecaster::new(p);
        let demand = |t: u64| host(t, vec![workload(1, "a", 300 + (t * 37) % 100, 0)], vec![]);
        for t in 0..20u64 {
            fc.observe(&demand(t), &HashMap::new());
        }
        assert_eq!(fc.deferred_refits(), 0);
        assert!(fc.refits_run() > 0);
        let mut last = Vec::new();
        for t in 20..40u64 {
            last = fc.observe_within(&demand(t), &HashMap::new(), Effort::Cheap);
        }
        assert!(fc.deferred_refits() > 0, "due ETS refits were held back");
        let f = cpu_forecast(&last).expect("the cheap models still forecast");
        assert_eq!(f.at, demand(39).at, "made this period");
        // ETS's last path covers refit_every + horizon steps from its fit, 20 steps ago.
        assert_eq!(f.model, "ewma", "{f:?}");
    }

    #[test]
    fn a_full_period_runs_no_more_refits_than_its_allowance() {
        // Series born together are all due at once; an allowance of one refit fits one series.
        let p = ForecasterParams { models: vec![ModelKind::Ewma, ModelKind::Ets], refit_every: 30, ..params() };
        let mut fc = Forecaster::new(p);
        let workloads = |t: u64| (1..=4).map(|i| workload(i, "w", 300 + (t * 37 * i) % 100, 0)).collect::<Vec<_>>();
        for t in 0..12u64 {
            fc.observe_within(&host(t, workloads(t), vec![]), &HashMap::new(), Effort::Cheap);
        }
        let before = fc.refits_run();
        fc.observe_within(&host(12, workloads(12), vec![]), &HashMap::new(), Effort::Full { refits: 1 });
        assert_eq!(fc.refits_run() - before, 1, "one ETS refit, the others wait");
        assert!(fc.deferred_refits() > 0);
    }

    #[test]
    fn a_workload_gone_while_over_budget_is_not_served() {
        let mut fc = Forecaster::new(cheap_params());
        for t in 0..10u64 {
            fc.observe(&host(t, vec![workload(1, "a", 300, 0), workload(2, "b", 500 + t, 0)], vec![]), &HashMap::new());
        }
        let served = fc.observe_within(&host(10, vec![workload(2, "b", 510, 0)], vec![]), &HashMap::new(), Effort::Record);
        assert!(!served.is_empty());
        assert!(served.iter().all(|f| f.workload == WorkloadId(2)), "{served:?}");
    }

    #[test]
    fn a_flat_series_gets_no_costly_refit_and_defers_nothing() {
        let mut fc = Forecaster::new(ForecasterParams { models: vec![ModelKind::Ewma, ModelKind::Ets], ..params() });
        let mut last = Vec::new();
        for t in 0..30u64 {
            last = fc.observe(&host(t, vec![workload(1, "a", 200, 0)], vec![]), &HashMap::new());
        }
        for t in 30..40u64 {
            let effort = if t % 2 == 0 { Effort::Record } else { Effort::Cheap };
            fc.observe_within(&host(t, vec![workload(1, "a", 200, 0)], vec![]), &HashMap::new(), effort);
        }
        assert_eq!(fc.deferred_refits(), 0);
        let f = cpu_forecast(&last).expect("a forecast");
        assert_eq!(f.model, "ewma", "{f:?}");
    }

    #[test]
    fn no_allocation_means_no_overload_probability() {
        let mut fc = Forecaster::new(params());
        let mut out = Vec::new();
        for t in 0..5 {
            out = fc.observe(&host(t, vec![workload(1, "a", 300 + t * 10, 0)], vec![]), &HashMap::new());
        }
        assert!(cpu_forecast(&out).is_some_and(|f| f.overload_probability.is_none()), "{out:?}");
    }
}
