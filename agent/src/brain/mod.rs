//! The agent's pure core: estimator → attribution → forecaster → bidder.
//!
//! No tokio, no aya, no file I/O: every call takes the period's [`HostSample`] (whose `at` is
//! the time) and whatever the daemon read for it (policies, allocations, SLO latency files),
//! so `truce-agent replay` drives it exactly as the daemon does.

pub mod attribution;
pub mod bidder;
pub mod estimator;
pub mod forecast;
pub mod policy;
pub mod slo;
mod stats;
#[cfg(test)]
pub(crate) mod testkit;

pub use attribution::{Attribution, AttributionParams};
pub use bidder::{BidInput, BidderParams};
pub use estimator::{Estimator, EstimatorParams};
pub use forecast::{Forecaster, ForecasterParams, ModelKind};
pub use policy::{Allocation, Bounds, PsiResource, SloCeiling, WorkloadPolicy};
pub use slo::SloVerdict;

use std::collections::HashMap;
use truce_common::estimate::{DemandForecast, InterferenceEstimate, InterferenceMatrix};
use truce_common::model::{Bid, BidId, Timestamp, WorkloadId};
use truce_common::signal::HostSample;

#[derive(Clone, Debug, Default)]
pub struct BrainParams {
    pub estimator: EstimatorParams,
    pub attribution: AttributionParams,
    pub forecaster: ForecasterParams,
    pub bidder: BidderParams,
}

/// What the daemon knows about each workload beyond the sample. Workloads without a policy
/// get [`WorkloadPolicy::default`].
#[derive(Clone, Debug, Default)]
pub struct RoundInputs {
    pub policies: HashMap<WorkloadId, WorkloadPolicy>,
    pub allocations: HashMap<WorkloadId, Allocation>,
    /// Latest value of each workload's external latency file, in ms.
    pub external_latency_ms: HashMap<WorkloadId, f64>,
}

/// Everything the core concluded from one period.
#[derive(Clone, Debug)]
pub struct Round {
    pub at: Timestamp,
    /// One per workload in the sample, antagonists ranked.
    pub estimates: Vec<InterferenceEstimate>,
    pub matrix: InterferenceMatrix,
    pub forecasts: Vec<DemandForecast>,
    pub slo: Vec<(WorkloadId, SloVerdict)>,
    /// Only workloads with something to ask, offer or report (see [`bidder::bid`]).
    pub bids: Vec<Bid>,
}

#[derive(Debug, Default)]
pub struct Brain {
    params: BrainParams,
    estimator: Estimator,
    attribution: Attribution,
    forecaster: Forecaster,
    next_bid: u64,
}

impl Brain {
    /// `first_bid_id` lets the daemon keep bid ids unique across restarts.
    pub fn new(params: BrainParams, first_bid_id: u64) -> Brain {
        Brain {
            estimator: Estimator::new(params.estimator.clone()),
            attribution: Attribution::new(params.attribution.clone()),
            forecaster: Forecaster::new(params.forecaster.clone()),
            params,
            next_bid: first_bid_id,
        }
    }

    /// Run one period through the whole core.
    pub fn observe(&mut self, sample: &HostSample, inputs: &RoundInputs) -> Round {
        let forecasts = self.forecaster.observe(sample, &inputs.allocations);
        self.decide(sample, inputs, forecasts)
    }

    /// One period without the forecaster: estimates, SLO verdicts and bids, using `forecasts`
    /// made elsewhere (the daemon refits its models on a background thread, so a refit never
    /// delays a bid).
    pub fn decide(&mut self, sample: &HostSample, inputs: &RoundInputs, forecasts: Vec<DemandForecast>) -> Round {
        let mut estimates = self.estimator.observe(sample);
        let matrix = self.attribution.observe(sample, &mut estimates);
        let default_policy = WorkloadPolicy::default();
        let mut slo = Vec::with_capacity(sample.workloads.len());
        let mut bids = Vec::new();
        for (w, estimate) in sample.workloads.iter().zip(&estimates) {
            let id = w.workload.id;
            let policy = inputs.policies.get(&id).unwrap_or(&default_policy);
            let verdict = slo::check(policy, w, inputs.external_latency_ms.get(&id).copied());
            let own: Vec<DemandForecast> = forecasts.iter().filter(|f| f.workload == id).cloned().collect();
            let input = BidInput {
                sample: w,
                period_ms: sample.period_ms,
                estimate,
                forecasts: &own,
                policy,
                allocation: inputs.allocations.get(&id),
                slo: &verdict,
            };
            if let Some(b) = bidder::bid(&self.params.bidder, &input, BidId(self.next_bid), sample.at) {
                self.next_bid += 1;
                bids.push(b);
            }
            slo.push((id, verdict));
        }
        Round { at: sample.at, estimates, matrix, forecasts, slo, bids }
    }

    /// Rolling MASE per model for one series (for `observe` and the replay report).
    pub fn forecast_scores(&self, workload: WorkloadId, resource: truce_common::model::Resource) -> Vec<(ModelKind, Option<f64>)> {
        self.forecaster.scores(workload, resource)
    }
}
