//! A site's federation settings (the `[federation]` table maps onto [`SiteConfig`]).

use super::forecast::ForecastModel;
use super::vote::VoteRules;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    /// This site's name; its peer certificate carries the same name.
    pub name: String,
    /// How often the site forecasts and publishes its status.
    pub period_ms: u64,
    /// Utilisation samples kept per host.
    pub history: usize,
    /// Forecast horizon in periods.
    pub horizon_steps: u32,
    pub model: ForecastModel,
    /// Utilisation (fraction of capacity) above which a host is overloaded.
    pub overload_level: f64,
    /// A proposal moves workloads until the host's forecast falls to this.
    pub target_level: f64,
    /// Overload probability at which a site proposes (and a bystander agrees).
    pub threshold: f64,
    /// Forecast errors kept per site for MASE, and how many before MASE counts.
    pub accuracy_window: usize,
    pub accuracy_min_points: usize,
    pub votes: VoteRules,
    /// Periods the source host is watched after a migration.
    pub watch_periods: usize,
    /// The gain must reach this fraction of what the moved workloads used.
    pub min_gain_fraction: f64,
    /// Periods before the same host may be proposed again after a vote.
    pub cooldown_periods: u32,
    /// When the gain does not show: roll back and propose the next destination (true), or only roll back.
    pub propose_alternative: bool,
    /// How long a proposer waits for votes before counting what it has.
    pub vote_timeout_ms: u64,
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            name: "site".into(),
            period_ms: 10_000,
            history: 60,
            horizon_steps: 6,
            model: ForecastModel::default(),
            overload_level: 0.9,
            target_level: 0.75,
            threshold: 0.5,
            accuracy_window: 120,
            accuracy_min_points: 5,
            votes: VoteRules::default(),
            watch_periods: 6,
            min_gain_fraction: 0.5,
            cooldown_periods: 30,
            propose_alternative: true,
            vote_timeout_ms: 5_000,
        }
    }
}

impl SiteConfig {
    /// Every number in range, or the key that is not.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let frac = |key, v: f64| if (0.0..=1.0).contains(&v) { Ok(()) } else { Err((key, format!("{v} must be within 0..=1"))) };
        frac("federation.overload_level", self.overload_level)?;
        frac("federation.target_level", self.target_level)?;
        frac("federation.threshold", self.threshold)?;
        frac("federation.votes.pass_share", self.votes.pass_share)?;
        frac("federation.min_gain_fraction", self.min_gain_fraction)?;
        if self.target_level >= self.overload_level {
            return Err(("federation.target_level", "must be below overload_level".into()));
        }
        if self.history < 3 || self.horizon_steps == 0 || self.period_ms == 0 || self.watch_periods == 0 {
            return Err(("federation.history", "history >= 3, and horizon_steps, period_ms, watch_periods > 0".into()));
        }
        if !(self.votes.mase_floor > 0.0 && self.votes.mase_floor <= self.votes.mase_cap) {
            return Err(("federation.votes.mase_floor", "must be > 0 and <= mase_cap".into()));
        }
        Ok(())
    }
}
