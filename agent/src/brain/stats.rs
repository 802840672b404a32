//! Small numeric helpers shared by the estimator, attribution and forecaster.
//! Everything here is allocation-light and deterministic.

use std::collections::VecDeque;

/// A bounded history: the newest `cap` values, oldest first. Bounds memory and fitting cost.
#[derive(Clone, Debug)]
pub struct Ring {
    cap: usize,
    values: VecDeque<f64>,
}

impl Ring {
    pub fn new(cap: usize) -> Ring {
        let cap = cap.max(1);
        Ring { cap, values: VecDeque::with_capacity(cap) }
    }

    pub fn push(&mut self, v: f64) {
        if self.values.len() == self.cap {
            self.values.pop_front();
        }
        self.values.push_back(v);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn to_vec(&self) -> Vec<f64> {
        self.values.iter().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        self.values.iter().copied()
    }

    /// The newest value.
    pub fn last(&self) -> Option<f64> {
        self.values.back().copied()
    }
}

/// Quantile by linear interpolation between order statistics; `None` for no data.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(v[lo] + (v[hi] - v[lo]) * frac)
}

/// Pearson correlation; `None` when either side has (near) zero variance, because a constant
/// series correlates with nothing and reporting 0 would look like evidence of innocence.
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len().min(ys.len());
    if n < 3 {
        return None;
    }
    let (xs, ys) = (&xs[xs.len() - n..], &ys[ys.len() - n..]);
    let mx = xs.iter().sum::<f64>() / n as f64;
    let my = ys.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    let scale_x = mx.abs().max(1e-12);
    let scale_y = my.abs().max(1e-12);
    // Relative variance guards against rounding noise on a flat series.
    if sxx / n as f64 <= 1e-12 * scale_x * scale_x || syy / n as f64 <= 1e-12 * scale_y * scale_y {
        return None;
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// The strongest positive Pearson correlation of `cause[t - lag]` with `effect[t]` for
/// `lag` in `0..=max_lag` (CPI2: an antagonist's usage leads the victim's slowdown).
/// Both slices are aligned at their ends (the newest samples line up).
pub fn lagged_correlation(cause: &[f64], effect: &[f64], max_lag: usize) -> Option<(f64, usize)> {
    let n = cause.len().min(effect.len());
    let (cause, effect) = (&cause[cause.len() - n..], &effect[effect.len() - n..]);
    let mut best: Option<(f64, usize)> = None;
    for lag in 0..=max_lag.min(n.saturating_sub(3)) {
        let c = &cause[..n - lag];
        let e = &effect[lag..];
        if let Some(r) = pearson(c, e)
            && best.is_none_or(|(b, _)| r > b)
        {
            best = Some((r, lag));
        }
    }
    best
}

/// Standard normal CDF (Abramowitz & Stegun 7.1.26 erf; error < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    let erf = if x >= 0.0 { erf } else { -erf };
    0.5 * (1.0 + erf)
}

/// z such that P(|N(0,1)| <= z) = level, for the usual interval levels (bisection on the CDF).
pub fn two_sided_z(level: f64) -> f64 {
    let target = 0.5 + level.clamp(0.5, 0.999) / 2.0;
    let (mut lo, mut hi) = (0.0_f64, 6.0_f64);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if normal_cdf(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_drops_oldest_when_full() {
        let mut r = Ring::new(3);
        for v in [1.0, 2.0, 3.0, 4.0] {
            r.push(v);
        }
        assert_eq!(r.to_vec(), vec![2.0, 3.0, 4.0]);
    }

    #[test]
    fn quantile_interpolates() {
        let xs = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&xs, 0.0), Some(1.0));
        assert_eq!(quantile(&xs, 1.0), Some(4.0));
        assert_eq!(quantile(&xs, 0.5), Some(2.5));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn pearson_of_flat_series_is_none() {
        assert_eq!(pearson(&[1.0, 1.0, 1.0, 1.0], &[1.0, 2.0, 3.0, 4.0]), None);
        let r = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0, 8.1]).unwrap_or(0.0);
        assert!(r > 0.99, "r = {r}");
    }

    #[test]
    fn lagged_correlation_finds_the_lead() {
        // effect[t] = cause[t - 2]
        let cause: Vec<f64> = (0..40).map(|i| ((i * 7) % 11) as f64).collect();
        let mut effect = vec![0.0, 0.0];
        effect.extend_from_slice(&cause[..38]);
        let (r, lag) = lagged_correlation(&cause, &effect, 4).unwrap_or((0.0, 99));
        assert_eq!(lag, 2);
        assert!(r > 0.99, "r = {r}");
    }

    #[test]
    fn normal_cdf_and_z_agree() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-6);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-4);
        assert!((two_sided_z(0.9) - 1.644_854).abs() < 1e-3);
    }
}
