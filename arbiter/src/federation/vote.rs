//! Judging a proposal and counting the votes (formula in docs/federation.md).
//!
//! weight(voter) = accuracy × criticality, where
//! - accuracy = 1 / clamp(MASE, mase_floor, mase_cap), MASE measured by the tallying site
//!   from the voter's published forecasts (the prior `mase_prior` while too few are checked);
//! - criticality = the criticality (1..=10) of the voter's workloads the migration touches
//!   (the destination's host that would receive them; 1 for a bystander).
//!
//! share = Σ weight(approving) / Σ weight(voting); the proposal passes when at least
//! `min_votes` votes came in and share > pass_share. A tie does not pass.

use super::forecast::{Forecast, ForecastModel, exceedance};
use serde::{Deserialize, Serialize};
use truce_common::model::Timestamp;
use truce_common::wire::{CountedVote, HostForecast, MigrationProposal, MigrationVote, VoteTally};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoteRules {
    /// A proposal passes when the approving weight is more than this share of all weight.
    pub pass_share: f64,
    pub min_votes: usize,
    /// MASE below this counts as this (no site earns unbounded weight for a lucky streak).
    pub mase_floor: f64,
    /// MASE above this counts as this (a broken forecaster still has a voice, barely).
    pub mase_cap: f64,
    /// MASE assumed while too few forecasts have been checked: as good as the naive forecast.
    pub mase_prior: f64,
}

impl Default for VoteRules {
    fn default() -> Self {
        VoteRules { pass_share: 0.5, min_votes: 1, mase_floor: 0.1, mase_cap: 100.0, mase_prior: 1.0 }
    }
}

/// The three factors of one vote's weight.
pub fn weight(rules: &VoteRules, mase: Option<f64>, criticality: u8) -> (f64, f64, f64) {
    let m = mase.filter(|m| m.is_finite()).unwrap_or(rules.mase_prior).clamp(rules.mase_floor, rules.mase_cap);
    let accuracy = 1.0 / m;
    let crit = f64::from(criticality.clamp(1, 10));
    (accuracy, crit, accuracy * crit)
}

/// Count `votes` (each with the voter's MASE as the tallying site measured it).
pub fn tally(rules: &VoteRules, proposal: &MigrationProposal, votes: Vec<(MigrationVote, Option<f64>)>, missing: Vec<String>, at: Timestamp) -> VoteTally {
    let mut counted = Vec::with_capacity(votes.len());
    let (mut approve, mut total) = (0.0, 0.0);
    for (vote, mase) in votes {
        let (accuracy_weight, criticality_weight, w) = weight(rules, mase, vote.criticality);
        total += w;
        if vote.approve {
            approve += w;
        }
        counted.push(CountedVote { vote, mase, accuracy_weight, criticality_weight, weight: w });
    }
    let share = if total > 0.0 { approve / total } else { 0.0 };
    let passed = counted.len() >= rules.min_votes.max(1) && share > rules.pass_share;
    VoteTally {
        proposal: proposal.clone(),
        votes: counted,
        missing,
        approve_weight: approve,
        total_weight: total,
        share,
        pass_share: rules.pass_share,
        passed,
        at,
    }
}

/// How a site judges a proposal with its own model and its own hosts' forecasts.
///
/// - The destination asks: would my least loaded host stay below the overload level with the
///   workloads added? It approves when P(overload after) < the proposal's threshold.
/// - A bystander asks: is the source really headed for overload? It runs its own model on
///   the source's history and approves when P(overload) >= the threshold.
pub fn judge(me: &str, model: &ForecastModel, my_hosts: &[HostForecast], p: &MigrationProposal) -> MigrationVote {
    let demand: f64 = p.workloads.iter().map(|w| w.demand.max(0.0)).sum();
    let (approve, prob, criticality, reason) = if p.destination == me {
        let best = my_hosts.iter().filter(|h| h.forecast_mean.is_finite()).min_by(|a, b| a.forecast_mean.total_cmp(&b.forecast_mean));
        match best {
            Some(h) => {
                let after = Forecast { mean: h.forecast_mean + demand, sigma: h.forecast_sigma };
                let prob = exceedance(after, p.overload_level);
                let approve = prob < p.threshold;
                let reason = format!(
                    "host {} forecast {:.3} + {demand:.3} incoming: P(> {:.2}) = {prob:.3} {} {:.2}",
                    h.host,
                    h.forecast_mean,
                    p.overload_level,
                    if approve { "<" } else { ">=" },
                    p.threshold
                );
                (approve, prob, h.criticality, reason)
            }
            None => (false, 1.0, 1, "no forecast for any of my hosts yet".to_string()),
        }
    } else {
        match model.forecast(&p.history, p.horizon_steps) {
            Some(f) => {
                let prob = exceedance(f, p.overload_level);
                let approve = prob >= p.threshold;
                let reason = format!(
                    "my model puts {} at {:.3} ± {:.3} in {} steps: P(> {:.2}) = {prob:.3} {} {:.2}",
                    p.host,
                    f.mean,
                    f.sigma,
                    p.horizon_steps,
                    p.overload_level,
                    if approve { ">=" } else { "<" },
                    p.threshold
                );
                (approve, prob, 1, reason)
            }
            None => (false, 0.0, 1, "too little history in the proposal to judge".to_string()),
        }
    };
    MigrationVote { proposal: p.id.clone(), voter: me.to_string(), approve, judged_probability: prob, criticality, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use truce_common::model::{HostId, WorkloadId, WorkloadRef};
    use truce_common::wire::{MigrationWorkload, ProposalId};

    fn proposal(destination: &str) -> MigrationProposal {
        MigrationProposal {
            id: ProposalId { site: "a".into(), seq: 1 },
            destination: destination.into(),
            priority: 5,
            host: HostId("a-1".into()),
            overload_probability: 0.9,
            overload_level: 0.9,
            threshold: 0.5,
            history: (0..20).map(|i| 0.5 + 0.02 * f64::from(i)).collect(),
            horizon_steps: 5,
            workloads: vec![MigrationWorkload { workload: WorkloadRef { id: WorkloadId(1), path: "/w".into() }, demand: 0.2, criticality: 2, pod: None }],
            at: Timestamp(0),
            alternative_to: None,
        }
    }

    fn vote(voter: &str, approve: bool, criticality: u8) -> MigrationVote {
        MigrationVote { proposal: ProposalId { site: "a".into(), seq: 1 }, voter: voter.into(), approve, judged_probability: 0.5, criticality, reason: String::new() }
    }

    #[test]
    fn weight_is_inverse_mase_times_criticality() {
        let r = VoteRules::default();
        assert_eq!(weight(&r, Some(2.0), 3), (0.5, 3.0, 1.5));
        assert_eq!(weight(&r, None, 1), (1.0, 1.0, 1.0));
        assert_eq!(weight(&r, Some(0.0), 1).0, 10.0, "floored");
        assert_eq!(weight(&r, Some(f64::INFINITY), 0), (1.0, 1.0, 1.0), "non-finite MASE uses the prior, criticality at least 1");
    }

    #[test]
    fn an_inaccurate_dissenter_is_outweighed_and_a_tie_does_not_pass() {
        let r = VoteRules::default();
        let p = proposal("b");
        let even = tally(&r, &p, vec![(vote("b", true, 1), Some(1.0)), (vote("c", false, 1), Some(1.0))], vec![], Timestamp(0));
        assert_eq!(even.share, 0.5);
        assert!(!even.passed);
        let weighted = tally(&r, &p, vec![(vote("b", true, 1), Some(1.0)), (vote("c", false, 1), Some(4.0))], vec![], Timestamp(0));
        assert!((weighted.share - 0.8).abs() < 1e-12, "{}", weighted.share);
        assert!(weighted.passed);
    }

    #[test]
    fn a_critical_destination_outweighs_an_accurate_bystander() {
        let r = VoteRules::default();
        let t = tally(&r, &proposal("b"), vec![(vote("b", false, 6), Some(2.0)), (vote("c", true, 1), Some(0.5))], vec![], Timestamp(0));
        assert!((t.share - 2.0 / 5.0).abs() < 1e-12, "{}", t.share);
        assert!(!t.passed);
    }

    #[test]
    fn bystanders_judge_with_their_own_model() {
        let p = proposal("b");
        assert!(judge("c", &ForecastModel::default(), &[], &p).approve, "Holt sees the trend");
        assert!(!judge("c", &ForecastModel::Mean, &[], &p).approve, "the mean does not");
    }

    #[test]
    fn the_destination_judges_its_own_headroom() {
        let host = |mean: f64| HostForecast {
            host: HostId("b-1".into()),
            utilisation: mean,
            forecast_mean: mean,
            forecast_sigma: 0.05,
            horizon_ms: 5000,
            overload_probability: 0.0,
            criticality: 4,
        };
        let p = proposal("b");
        let roomy = judge("b", &ForecastModel::default(), &[host(0.3)], &p);
        assert!(roomy.approve && roomy.criticality == 4, "{roomy:?}");
        assert!(!judge("b", &ForecastModel::default(), &[host(0.75)], &p).approve);
        assert!(!judge("b", &ForecastModel::default(), &[], &p).approve, "no forecast, no room");
    }

    #[test]
    fn too_few_votes_never_pass() {
        let r = VoteRules { min_votes: 2, ..VoteRules::default() };
        assert!(!tally(&r, &proposal("b"), vec![(vote("b", true, 1), None)], vec!["c".into()], Timestamp(0)).passed);
    }
}
