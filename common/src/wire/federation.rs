//! Site-to-site federation messages (ALPN `truce-fed/1`): each site's utilisation forecasts,
//! migration proposals, votes and the weighted tally. The rules live in
//! `truce_arbiter::federation` and docs/federation.md; these are only the shapes on the wire.
//! A tally carries every input of the vote, so `truce top` can show why a proposal passed.

use crate::model::{HostId, Timestamp, WorkloadRef};
use serde::{Deserialize, Serialize};

/// A proposal is named by the site that made it and that site's counter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProposalId {
    pub site: String,
    pub seq: u64,
}

impl std::fmt::Display for ProposalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.site, self.seq)
    }
}

/// One host's utilisation now and its forecast `horizon_ms` ahead. Utilisation is a fraction
/// of the host's capacity (1.0 = full).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostForecast {
    pub host: HostId,
    pub utilisation: f64,
    pub forecast_mean: f64,
    /// Standard deviation of the forecast error (from the model's recent residuals).
    pub forecast_sigma: f64,
    pub horizon_ms: u64,
    /// P(utilisation > the site's overload threshold at the horizon).
    pub overload_probability: f64,
    /// Highest criticality among the workloads on the host (1 = least critical).
    pub criticality: u8,
}

/// What a site tells its peers every period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteStatus {
    pub site: String,
    pub at: Timestamp,
    pub hosts: Vec<HostForecast>,
}

/// One workload a proposal moves: its share of the source host's capacity and how critical it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationWorkload {
    pub workload: WorkloadRef,
    /// Utilisation it adds wherever it runs, as a fraction of one host.
    pub demand: f64,
    pub criticality: u8,
    /// Kubernetes namespace and pod name, when the workload is a pod.
    #[serde(default)]
    pub pod: Option<PodRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

/// "Host `host` of my site will overload; move these workloads to `destination`."
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationProposal {
    pub id: ProposalId,
    pub destination: String,
    /// 1 (can wait) ..= 10 (urgent): from the overload probability and the workloads' criticality.
    pub priority: u8,
    pub host: HostId,
    pub overload_probability: f64,
    /// Utilisation above which a host counts as overloaded (fraction of capacity).
    pub overload_level: f64,
    /// Overload probability at which the proposer acts (and a bystander agrees).
    pub threshold: f64,
    /// The source host's recent utilisation, oldest first, so voters can run their own model on it.
    pub history: Vec<f64>,
    pub horizon_steps: u32,
    pub workloads: Vec<MigrationWorkload>,
    pub at: Timestamp,
    /// Set when this proposal replaces one whose gain did not show.
    #[serde(default)]
    pub alternative_to: Option<ProposalId>,
}

/// A site's ballot on a proposal, with the reason it gives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationVote {
    pub proposal: ProposalId,
    pub voter: String,
    pub approve: bool,
    /// The probability the voter's own model gives to what it judged (source overload, or its
    /// own overload after accepting the workloads).
    pub judged_probability: f64,
    /// Criticality of the voter's workloads that the migration touches (1 when none).
    pub criticality: u8,
    pub reason: String,
}

/// One vote as counted: the vote and every factor of its weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountedVote {
    pub vote: MigrationVote,
    /// The voter's recent forecast accuracy as the tallying site measured it; `None` while
    /// there is too little history (the prior, 1.0, is used).
    pub mase: Option<f64>,
    pub accuracy_weight: f64,
    pub criticality_weight: f64,
    pub weight: f64,
}

/// The outcome of a vote, with everything that went into it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VoteTally {
    pub proposal: MigrationProposal,
    pub votes: Vec<CountedVote>,
    /// Sites that were asked and did not answer in time.
    pub missing: Vec<String>,
    pub approve_weight: f64,
    pub total_weight: f64,
    pub share: f64,
    pub pass_share: f64,
    pub passed: bool,
    pub at: Timestamp,
}

/// What happened to an accepted migration after it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationVerdict {
    /// The source host's utilisation fell by at least the expected share.
    Confirmed { gain: f64, expected: f64 },
    /// The gain did not show within the window; the migration was rolled back.
    RolledBack { gain: f64, expected: f64 },
    /// The gain did not show; rolled back and an alternative was proposed.
    Alternative { gain: f64, expected: f64, next: ProposalId },
    /// The executor failed; nothing is assumed to have moved.
    Failed { error: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FederationMessage {
    Status(SiteStatus),
    Proposal(MigrationProposal),
    Vote(MigrationVote),
    Tally(VoteTally),
    Verdict { proposal: ProposalId, at: Timestamp, verdict: MigrationVerdict },
}

impl FederationMessage {
    /// The site the message speaks for; it must be the sender's certificate identity.
    pub fn speaker(&self) -> &str {
        match self {
            FederationMessage::Status(s) => &s.site,
            FederationMessage::Proposal(p) => &p.id.site,
            FederationMessage::Vote(v) => &v.voter,
            FederationMessage::Tally(t) => &t.proposal.id.site,
            FederationMessage::Verdict { proposal, .. } => &proposal.site,
        }
    }
}
