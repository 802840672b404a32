//! How well a site has been forecasting lately: MASE over a rolling window.
//!
//! Every status a site publishes carries, per host, the utilisation now and the forecast for
//! `now + horizon`. When a later status reaches that time, the forecast's absolute error is
//! recorded. MASE = mean of those errors / mean absolute one-step change of the actual series
//! (the in-sample naive forecast's error, Hyndman & Koehler 2006). Any site can compute any
//! peer's MASE from the statuses it receives, so nobody grades itself.

use std::collections::{BTreeMap, VecDeque};
use truce_common::model::{HostId, Timestamp};
use truce_common::wire::SiteStatus;

#[derive(Clone, Debug)]
pub struct AccuracyTracker {
    window: usize,
    min_points: usize,
    pending: BTreeMap<HostId, VecDeque<(Timestamp, f64)>>,
    last_actual: BTreeMap<HostId, f64>,
    errors: VecDeque<f64>,
    naive: VecDeque<f64>,
}

impl AccuracyTracker {
    /// Keep the last `window` errors; report a MASE once `min_points` are in.
    pub fn new(window: usize, min_points: usize) -> AccuracyTracker {
        AccuracyTracker {
            window: window.max(1),
            min_points: min_points.max(1),
            pending: BTreeMap::new(),
            last_actual: BTreeMap::new(),
            errors: VecDeque::new(),
            naive: VecDeque::new(),
        }
    }

    /// Feed a site's status: resolve forecasts that have come due, then remember the new ones.
    pub fn observe(&mut self, status: &SiteStatus) {
        for h in &status.hosts {
            self.actual(&h.host, status.at, h.utilisation);
            if h.forecast_mean.is_finite() {
                self.pending.entry(h.host.clone()).or_default().push_back((status.at.plus_ms(h.horizon_ms), h.forecast_mean));
            }
        }
    }

    fn actual(&mut self, host: &HostId, at: Timestamp, value: f64) {
        if !value.is_finite() {
            return;
        }
        if let Some(prev) = self.last_actual.insert(host.clone(), value) {
            push(&mut self.naive, (value - prev).abs(), self.window);
        }
        let Some(queue) = self.pending.get_mut(host) else { return };
        while queue.front().is_some_and(|(due, _)| *due <= at) {
            if let Some((_, forecast)) = queue.pop_front() {
                push(&mut self.errors, (forecast - value).abs(), self.window);
            }
        }
    }

    /// `None` until `min_points` forecasts have been checked (or the series never moved).
    pub fn mase(&self) -> Option<f64> {
        if self.errors.len() < self.min_points || self.naive.is_empty() {
            return None;
        }
        let mae = self.errors.iter().sum::<f64>() / self.errors.len() as f64;
        let scale = self.naive.iter().sum::<f64>() / self.naive.len() as f64;
        (scale > 1e-9).then(|| mae / scale)
    }

    pub fn checked(&self) -> usize {
        self.errors.len()
    }
}

fn push(q: &mut VecDeque<f64>, v: f64, cap: usize) {
    q.push_back(v);
    while q.len() > cap {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use truce_common::wire::HostForecast;

    fn status(at: u64, actual: f64, forecast: f64) -> SiteStatus {
        SiteStatus {
            site: "s".into(),
            at: Timestamp(at),
            hosts: vec![HostForecast {
                host: HostId("h".into()),
                utilisation: actual,
                forecast_mean: forecast,
                forecast_sigma: 0.1,
                horizon_ms: 2000,
                overload_probability: 0.0,
                criticality: 1,
            }],
        }
    }

    #[test]
    fn perfect_forecasts_score_zero_and_lagging_ones_score_high() {
        let series: Vec<f64> = (0..20).map(|i| 0.1 * f64::from(i)).collect();
        let mut good = AccuracyTracker::new(50, 5);
        let mut bad = AccuracyTracker::new(50, 5);
        for (i, y) in series.iter().enumerate() {
            let at = i as u64 * 1000;
            good.observe(&status(at, *y, y + 0.2));
            bad.observe(&status(at, *y, series[0]));
        }
        assert!(good.mase().expect("enough points") < 1e-9);
        let bad = bad.mase().expect("enough points");
        assert!(bad > 5.0, "a flat forecast of a rising series: {bad}");
    }

    #[test]
    fn no_mase_before_enough_points() {
        let mut t = AccuracyTracker::new(50, 5);
        for i in 0..4 {
            t.observe(&status(i * 1000, 0.5, 0.5));
        }
        assert_eq!(t.mase(), None);
    }
}
