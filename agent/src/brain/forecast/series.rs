//! One forecast series: bounded history, each model's issued forecasts and rolling errors.

use super::models::{ModelKind, PathForecast, forecast_all};
use super::ForecasterParams;
use crate::brain::stats::{Ring, normal_cdf, two_sided_z};
use std::collections::VecDeque;
use truce_common::estimate::DemandForecast;
use truce_common::model::{Resource, Timestamp, WorkloadId};

#[derive(Clone, Debug)]
struct Slot {
    kind: ModelKind,
    /// The last fit: the step it was made at and its path (longer than the horizon for
    /// costly models so it can be served until the next refit).
    fit: Option<(u64, PathForecast)>,
    /// Forecasts issued at recent origins, to score once the actuals arrive.
    issued: VecDeque<(u64, PathForecast)>,
    abs_errors: Ring,
}

impl Slot {
    fn mae(&self) -> Option<f64> {
        (!self.abs_errors.is_empty()).then(|| self.abs_errors.iter().sum::<f64>() / self.abs_errors.len() as f64)
    }

    /// The forecast this model issues at `step` (after the observation at `step`).
    fn current(&self, step: u64, horizon: usize) -> Option<PathForecast> {
        let (at, path) = self.fit.as_ref()?;
        let off = usize::try_from(step.checked_sub(*at)?).ok()?;
        let end = off.checked_add(horizon)?;
        (end <= path.point.len()).then(|| PathForecast {
            point: path.point[off..end].to_vec(),
            half_width: path.half_width[off..end].to_vec(),
        })
    }
}

#[derive(Clone, Debug)]
pub(super) struct Series {
    history: Ring,
    /// Number of observations so far; the step of the newest one is `steps - 1`.
    steps: u64,
    slots: Vec<Slot>,
    last_seen: Timestamp,
    /// How many of the newest values are equal: the history is flat when it covers all of it
    /// (kept as values arrive, so no period rescans the history to know).
    equal_run: usize,
    anomaly: bool,
    /// Staggers the costly refits of series born together, so a host's refits spread over
    /// the refit interval instead of landing in one period.
    phase: u64,
}

impl Series {
    pub(super) fn new(p: &ForecasterParams, phase: u64) -> Series {
        let slots = p
            .models
            .iter()
            .map(|&kind| Slot { kind, fit: None, issued: VecDeque::new(), abs_errors: Ring::new(p.mase_window) })
            .collect();
        let phase = phase % p.refit_every.max(1) as u64;
        Series { history: Ring::new(p.history), steps: 0, slots, last_seen: Timestamp(0), equal_run: 0, anomaly: false, phase }
    }

    pub(super) fn last_seen(&self) -> Timestamp {
        self.last_seen
    }

    /// Add this period's value, score the models on it and refit what is due. Costly models
    /// are refitted only when `may_refit` (the CPU budget holds a refit) and not on a flat
    /// history, where the cheap models are exact already; otherwise their last paths serve
    /// while they last. Returns the due costly refits (deferred, run).
    pub(super) fn push(&mut self, y: f64, now: Timestamp, p: &ForecasterParams, may_refit: bool) -> (usize, usize) {
        let step = self.steps;
        self.last_seen = now;
        // Score what each model said about this step, then check the served model's one-step call.
        let served = self.served_index(p);
        self.anomaly = false;
        let z = two_sided_z(p.level);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            for (origin, path) in &slot.issued {
                let k = step.saturating_sub(*origin) as usize;
                if (1..=path.point.len()).contains(&k) {
                    slot.abs_errors.push((y - path.point[k - 1]).abs());
                    if k == 1 && Some(i) == served {
                        let sigma = path.half_width[0] / z;
                        let err = (y - path.point[0]).abs();
                        self.anomaly = if sigma > 0.0 { err > 3.0 * sigma } else { err > 1e-6 * path.point[0].abs().max(1.0) };
                    }
                }
            }
        }
        self.forget_scored(step, p);
        self.append(y);

        let history = self.history.to_vec();
        let flat = self.is_flat();
        let stale: Vec<ModelKind> = self.slots.iter().filter(|slot| self.is_due(slot, step, p)).map(|slot| slot.kind).collect();
        // Costly models forecast past the horizon so the path lasts until the next refit.
        let (cheap, costly): (Vec<ModelKind>, Vec<ModelKind>) = stale.iter().partition(|k| !k.is_costly());
        let mut fresh = forecast_all(&cheap, &history, p.season, p.horizon, p.level);
        let counts = match (flat, may_refit) {
            (true, _) => (0, 0),
            (false, true) => {
                fresh.extend(forecast_all(&costly, &history, p.season, p.horizon + p.refit_every.max(1), p.level));
                (0, costly.len())
            }
            (false, false) => (costly.len(), 0),
        };
        for slot in &mut self.slots {
            if let Some((_, f)) = fresh.iter_mut().find(|(k, _)| *k == slot.kind) {
                slot.fit = f.take().map(|f| (step, f));
            }
            if let Some(f) = slot.current(step, p.horizon) {
                slot.issued.push_back((step, f));
            }
        }
        counts
    }

    /// Add this period's value and nothing else: the forecaster's CPU budget is spent, so no
    /// model is scored or fitted (the caller serves the forecasts of its last full period).
    /// Returns how many costly refits were due and wait.
    pub(super) fn record(&mut self, y: f64, now: Timestamp, p: &ForecasterParams) -> usize {
        let step = self.steps;
        self.last_seen = now;
        self.anomaly = false;
        self.forget_scored(step, p);
        self.append(y);
        if self.is_flat() {
            return 0;
        }
        self.slots.iter().filter(|slot| slot.kind.is_costly() && self.is_due(slot, step, p)).count()
    }

    /// Drop the forecasts issued a horizon or more before `step`: nothing left to score.
    fn forget_scored(&mut self, step: u64, p: &ForecasterParams) {
        for slot in &mut self.slots {
            slot.issued.retain(|(origin, _)| step.saturating_sub(*origin) < p.horizon as u64);
        }
    }

    fn append(&mut self, y: f64) {
        let repeats = self.history.last() == Some(y);
        self.equal_run = if repeats { self.equal_run + 1 } else { 1 };
        self.history.push(y);
        self.steps += 1;
    }

    /// Every value in the history is the same (the cheap models are exact on it).
    fn is_flat(&self) -> bool {
        self.equal_run >= self.history.len()
    }

    /// Whether `slot` should be fitted at `step`: the cheap models every period, a costly one
    /// once its series reaches its phase and then every `refit_every` periods.
    fn is_due(&self, slot: &Slot, step: u64, p: &ForecasterParams) -> bool {
        match &slot.fit {
            _ if !slot.kind.is_costly() => true,
            None => step >= self.phase,
            Some((at, _)) => step - at >= p.refit_every.max(1) as u64,
        }
    }

    /// Mean absolute seasonal difference of the history: the MASE denominator.
    fn scale(&self, season: usize) -> Option<f64> {
        let h = self.history.to_vec();
        let m = if season >= 1 && h.len() > season { season } else { 1 };
        if h.len() <= m {
            return None;
        }
        let s = (m..h.len()).map(|i| (h[i] - h[i - m]).abs()).sum::<f64>() / (h.len() - m) as f64;
        (s > 0.0).then_some(s)
    }

    /// Lowest rolling error among models with enough evaluations; EWMA (or whatever has a
    /// forecast) until then. Models share the series' scale, so MAE ranks as MASE does. Only
    /// a model whose last fit still covers the horizon from the newest step can serve: a
    /// costly model whose refit waits for the CPU budget drops out once its path runs out.
    fn served_index(&self, p: &ForecasterParams) -> Option<usize> {
        let step = self.steps.checked_sub(1)?;
        let live = |s: &Slot| s.current(step, p.horizon).is_some();
        let ready = self.slots.iter().enumerate().filter(|(_, s)| s.abs_errors.len() >= p.min_evaluations && live(s));
        let best = ready
            .filter_map(|(i, s)| s.mae().map(|m| (i, m)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i);
        best.or_else(|| self.slots.iter().position(|s| s.kind == ModelKind::Ewma && live(s)))
            .or_else(|| self.slots.iter().position(live))
    }

    /// Rolling MASE per model (`None` before any error or on a flat series).
    pub(super) fn scores(&self, season: usize) -> Vec<(ModelKind, Option<f64>)> {
        let scale = self.scale(season);
        self.slots.iter().map(|s| (s.kind, s.mae().zip(scale).map(|(m, d)| m / d))).collect()
    }

    pub(super) fn forecast(
        &self,
        workload: WorkloadId,
        resource: Resource,
        at: Timestamp,
        period_ms: u64,
        allocated: Option<u64>,
        p: &ForecasterParams,
    ) -> Option<DemandForecast> {
        let slot = &self.slots[self.served_index(p)?];
        let step = self.steps.checked_sub(1)?;
        let f = slot.current(step, p.horizon)?;
        let z = two_sided_z(p.level);
        let n = f.point.len().max(1) as f64;
        let mean = f.point.iter().sum::<f64>() / n;
        let upper = f.point.iter().zip(&f.half_width).map(|(x, w)| x + w).fold(f64::MIN, f64::max);
        let lower = f.point.iter().zip(&f.half_width).map(|(x, w)| x - w).fold(f64::MAX, f64::min).max(0.0);
        let overload_probability = allocated.map(|cap| {
            let cap = cap as f64;
            f.point
                .iter()
                .zip(&f.half_width)
                .map(|(x, w)| {
                    let sigma = w / z;
                    if sigma > 0.0 { 1.0 - normal_cdf((cap - x) / sigma) } else if *x > cap { 1.0 } else { 0.0 }
                })
                .fold(0.0, f64::max)
        });
        let mase = match (slot.mae(), self.scale(p.season)) {
            (Some(mae), Some(scale)) if slot.abs_errors.len() >= p.min_evaluations => Some(mae / scale),
            _ => None,
        };
        Some(DemandForecast {
            workload,
            resource,
            at,
            horizon_ms: p.horizon as u64 * period_ms,
            mean,
            lower,
            upper,
            level: p.level,
            model: slot.kind.name().to_string(),
            mase,
            overload_probability,
            anomaly: self.anomaly,
        })
    }
}
