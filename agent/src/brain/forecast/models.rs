//! The forecasting models: two cheap baselines and two augurs models.
//!
//! Every model turns a bounded history into a point path for steps 1..=h with a
//! `level` interval. The online [`super::Forecaster`] and the rolling-origin benchmark
//! (`agent/examples/forecast_bench.rs`) call the same [`ModelKind::forecast`].

use crate::brain::stats::two_sided_z;
use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::{Fit, Predict};

/// Which model. Names are stable: they appear in `DemandForecast::model` and the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// y[t+k] = y[t+k-m]: the benchmark every other model is scored against.
    SeasonalNaive,
    /// Flat forecast at an exponentially weighted level.
    Ewma,
    /// augurs AutoETS (non-seasonal; error/trend searched).
    Ets,
    /// augurs MSTL (season `m`) with an AutoETS trend.
    Mstl,
    /// Mean of the seasonal-naive and ETS paths: hedges level shifts against daily shape.
    Blend,
}

impl ModelKind {
    pub const ALL: [ModelKind; 5] =
        [ModelKind::SeasonalNaive, ModelKind::Ewma, ModelKind::Ets, ModelKind::Mstl, ModelKind::Blend];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::SeasonalNaive => "seasonal_naive",
            ModelKind::Ewma => "ewma",
            ModelKind::Ets => "ets",
            ModelKind::Mstl => "mstl",
            ModelKind::Blend => "blend",
        }
    }

    /// Whether the model is expensive enough that the online forecaster only refits it
    /// every K periods.
    pub fn is_costly(self) -> bool {
        matches!(self, ModelKind::Ets | ModelKind::Mstl | ModelKind::Blend)
    }

    /// Forecast steps 1..=horizon after the end of `history`. `None` when the model cannot be
    /// fitted on this history (too short, not finite, or the fit failed) — never a guess.
    pub fn forecast(self, history: &[f64], season: usize, horizon: usize, level: f64) -> Option<PathForecast> {
        if history.len() < 3 || horizon == 0 || history.iter().any(|v| !v.is_finite()) {
            return None;
        }
        match self {
            ModelKind::SeasonalNaive => seasonal_naive(history, season, horizon, level),
            ModelKind::Ewma => Some(ewma(history, 0.3, horizon, level)),
            ModelKind::Ets => ets(history, horizon, level),
            ModelKind::Mstl => mstl(history, season, horizon, level),
            ModelKind::Blend => blend(seasonal_naive(history, season, horizon, level), ets(history, horizon, level)),
        }
    }
}

/// Forecast with several models at once, fitting ETS only once for both `Ets` and `Blend`.
pub fn forecast_all(
    kinds: &[ModelKind],
    history: &[f64],
    season: usize,
    horizon: usize,
    level: f64,
) -> Vec<(ModelKind, Option<PathForecast>)> {
    let needs_ets = kinds.iter().any(|k| matches!(k, ModelKind::Ets | ModelKind::Blend));
    let ets_path = if needs_ets { ModelKind::Ets.forecast(history, season, horizon, level) } else { None };
    kinds
        .iter()
        .map(|&k| {
            let f = match k {
                ModelKind::Ets => ets_path.clone(),
                ModelKind::Blend => blend(ModelKind::SeasonalNaive.forecast(history, season, horizon, level), ets_path.clone()),
                other => other.forecast(history, season, horizon, level),
            };
            (k, f)
        })
        .collect()
}

fn blend(a: Option<PathForecast>, b: Option<PathForecast>) -> Option<PathForecast> {
    let (a, b) = (a?, b?);
    Some(PathForecast {
        point: a.point.iter().zip(&b.point).map(|(x, y)| (x + y) / 2.0).collect(),
        half_width: a.half_width.iter().zip(&b.half_width).map(|(x, y)| (x + y) / 2.0).collect(),
    })
}

/// Point forecasts for steps 1..=h and the interval half-width at each step.
#[derive(Clone, Debug, PartialEq)]
pub struct PathForecast {
    pub point: Vec<f64>,
    pub half_width: Vec<f64>,
}

fn std_dev(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return 0.0;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Flat series make the ETS optimiser degenerate; they are forecast exactly instead.
fn is_flat(history: &[f64]) -> bool {
    let (lo, hi) = history.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    hi - lo <= 1e-9 * hi.abs().max(1.0)
}

fn seasonal_naive(history: &[f64], season: usize, horizon: usize, level: f64) -> Option<PathForecast> {
    let n = history.len();
    // Without a full season, seasonal naive degrades to naive (m = 1), as is customary.
    let m = if season >= 1 && n > season { season } else { 1 };
    let sigma = std_dev((m..n).map(|i| history[i] - history[i - m]));
    let z = two_sided_z(level);
    let mut point = Vec::with_capacity(horizon);
    let mut half_width = Vec::with_capacity(horizon);
    for k in 1..=horizon {
        let seasons_back = k.div_ceil(m);
        point.push(history[n + k - 1 - seasons_back * m]);
        half_width.push(z * sigma * (seasons_back as f64).sqrt());
    }
    Some(PathForecast { point, half_width })
}

fn ewma(history: &[f64], alpha: f64, horizon: usize, level: f64) -> PathForecast {
    let mut lvl = history[0];
    let mut residuals = Vec::with_capacity(history.len());
    for &y in &history[1..] {
        residuals.push(y - lvl);
        lvl += alpha * (y - lvl);
    }
    let sigma = std_dev(residuals.into_iter());
    let z = two_sided_z(level);
    PathForecast {
        point: vec![lvl; horizon],
        half_width: (1..=horizon).map(|k| z * sigma * (1.0 + (k - 1) as f64 * alpha * alpha).sqrt()).collect(),
    }
}

fn flat(history: &[f64], horizon: usize) -> Option<PathForecast> {
    let last = *history.last()?;
    Some(PathForecast { point: vec![last; horizon], half_width: vec![0.0; horizon] })
}

fn from_augurs(f: augurs::Forecast, horizon: usize) -> Option<PathForecast> {
    let iv = f.intervals?;
    if f.point.len() != horizon || iv.upper.len() != horizon || f.point.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let half_width = f.point.iter().zip(&iv.upper).map(|(p, u)| (u - p).abs()).collect();
    Some(PathForecast { point: f.point, half_width })
}

fn ets(history: &[f64], horizon: usize, level: f64) -> Option<PathForecast> {
    if is_flat(history) {
        return flat(history, horizon);
    }
    let fitted = AutoETS::non_seasonal().fit(history).ok()?;
    from_augurs(fitted.predict(horizon, level).ok()?, horizon)
}

fn mstl(history: &[f64], season: usize, horizon: usize, level: f64) -> Option<PathForecast> {
    // STL needs two full seasons to separate season from trend.
    if season < 2 || history.len() < 2 * season {
        return None;
    }
    if is_flat(history) {
        return flat(history, horizon);
    }
    let model = MSTLModel::new(vec![season], AutoETS::non_seasonal().into_trend_model());
    let fitted = model.fit(history).ok()?;
    from_augurs(fitted.predict(horizon, level).ok()?, horizon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(n: usize, m: usize) -> Vec<f64> {
        (0..n).map(|i| 100.0 + 30.0 * ((i % m) as f64 / m as f64 * std::f64::consts::TAU).sin()).collect()
    }

    #[test]
    fn seasonal_naive_repeats_last_season() {
        let h = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
        let f = ModelKind::SeasonalNaive.forecast(&h, 3, 4, 0.9);
        assert_eq!(f.map(|f| f.point), Some(vec![1.0, 2.0, 3.0, 1.0]));
    }

    #[test]
    fn mstl_needs_two_seasons() {
        assert!(ModelKind::Mstl.forecast(&daily(30, 24), 24, 5, 0.9).is_none());
    }

    #[test]
    fn augurs_models_track_a_seasonal_series() {
        let m = 24;
        let y = daily(m * 6, m);
        for kind in [ModelKind::Mstl, ModelKind::SeasonalNaive] {
            let f = kind.forecast(&y, m, m, 0.9);
            let Some(f) = f else { panic!("{} failed", kind.name()) };
            let truth = &daily(m * 7, m)[m * 6..];
            let mae: f64 = f.point.iter().zip(truth).map(|(a, b)| (a - b).abs()).sum::<f64>() / m as f64;
            assert!(mae < 3.0, "{}: mae {mae}", kind.name());
            assert!(f.half_width.iter().all(|w| w.is_finite() && *w >= 0.0));
        }
    }

    #[test]
    fn flat_and_non_finite_histories_do_not_panic() {
        let flat = vec![5.0; 100];
        for kind in ModelKind::ALL {
            if let Some(f) = kind.forecast(&flat, 10, 3, 0.9) {
                assert!(f.point.iter().all(|p| (p - 5.0).abs() < 1e-6), "{}: {:?}", kind.name(), f.point);
            }
            assert!(kind.forecast(&[1.0, f64::NAN, 2.0, 3.0], 2, 3, 0.9).is_none());
        }
    }
}
