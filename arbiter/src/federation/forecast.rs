//! Utilisation forecasts for federation: a model, its forecast with an error spread, and the
//! probability that the utilisation passes an overload level. Pure: numbers in, numbers out.

use serde::{Deserialize, Serialize};

/// Which model a site forecasts its hosts with.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "model")]
pub enum ForecastModel {
    /// Holt's linear trend (double exponential smoothing).
    Holt { alpha: f64, beta: f64 },
    /// The mean of the history: blind to trends, so poor on a rising host.
    Mean,
}

impl Default for ForecastModel {
    fn default() -> Self {
        ForecastModel::Holt { alpha: 0.5, beta: 0.3 }
    }
}

/// A forecast `steps` ahead: the expected utilisation and the spread of the error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forecast {
    pub mean: f64,
    pub sigma: f64,
}

/// Below this the normal tail is a step function; a floor keeps probabilities graded.
const MIN_SIGMA: f64 = 0.01;

impl ForecastModel {
    /// `None` with fewer than two points of history (no trend, no spread).
    pub fn forecast(&self, history: &[f64], steps: u32) -> Option<Forecast> {
        let finite: Vec<f64> = history.iter().copied().filter(|v| v.is_finite()).collect();
        if finite.len() < 2 {
            return None;
        }
        let h = f64::from(steps.max(1));
        match *self {
            ForecastModel::Holt { alpha, beta } => {
                let (alpha, beta) = (alpha.clamp(0.01, 1.0), beta.clamp(0.0, 1.0));
                let mut level = finite[0];
                let mut trend = finite[1] - finite[0];
                let mut sq = 0.0;
                for &y in &finite[1..] {
                    let predicted = level + trend;
                    sq += (y - predicted).powi(2);
                    let prev = level;
                    level = alpha * y + (1.0 - alpha) * (level + trend);
                    trend = beta * (level - prev) + (1.0 - beta) * trend;
                }
                let sigma1 = (sq / (finite.len() - 1) as f64).sqrt();
                // The error of an h-step forecast grows with h; sqrt(h) is the random-walk rate.
                Some(Forecast { mean: level + h * trend, sigma: (sigma1 * h.sqrt()).max(MIN_SIGMA) })
            }
            ForecastModel::Mean => {
                let n = finite.len() as f64;
                let mean = finite.iter().sum::<f64>() / n;
                let var = finite.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n;
                Some(Forecast { mean, sigma: var.sqrt().max(MIN_SIGMA) })
            }
        }
    }
}

/// P(X > level) for X ~ Normal(mean, sigma).
pub fn exceedance(f: Forecast, level: f64) -> f64 {
    let sigma = f.sigma.max(MIN_SIGMA);
    let z = (level - f.mean) / sigma;
    (1.0 - normal_cdf(z)).clamp(0.0, 1.0)
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), extended to negative x.
fn erfc(x: f64) -> f64 {
    let ax = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * ax);
    let poly = t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let tail = poly * (-ax * ax).exp();
    if x >= 0.0 { tail } else { 2.0 - tail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holt_follows_a_trend_and_the_mean_does_not() {
        let rising: Vec<f64> = (0..30).map(|i| 0.3 + 0.02 * f64::from(i)).collect();
        let holt = ForecastModel::default().forecast(&rising, 5).expect("forecast");
        assert!((holt.mean - (0.3 + 0.02 * 34.0)).abs() < 1e-6, "{holt:?}");
        let mean = ForecastModel::Mean.forecast(&rising, 5).expect("forecast");
        assert!(mean.mean < 0.65, "{mean:?}");
        assert!(exceedance(holt, 0.9) > 0.5 && exceedance(mean, 0.9) < 0.1);
    }

    #[test]
    fn exceedance_is_a_normal_tail() {
        let f = Forecast { mean: 0.5, sigma: 0.1 };
        assert!((exceedance(f, 0.5) - 0.5).abs() < 1e-6);
        assert!((exceedance(f, 0.6) - 0.158_655).abs() < 1e-5);
        assert!((exceedance(f, 0.4) - 0.841_345).abs() < 1e-5);
    }

    #[test]
    fn too_little_or_broken_history_gives_no_forecast() {
        assert!(ForecastModel::default().forecast(&[0.5], 3).is_none());
        assert!(ForecastModel::Mean.forecast(&[f64::NAN, 0.2], 3).is_none());
    }
}
