//! The federation pane of the cluster view: what the arbiter's site saw of the vote. Pure:
//! inspection events in, rows out.
//!
//! Per proposal (newest first): where it moves what, why (overload probability), every vote
//! with its weight's factors (1/MASE × criticality), the tally and the verdict. Per site: its
//! latest status (hosts forecast, the most loaded one).

use serde::Serialize;
use std::collections::BTreeMap;
use truce_common::model::Timestamp;
use truce_common::wire::{FederationMessage, MigrationProposal, MigrationVerdict, MigrationVote, ProposalId, SiteStatus, VoteTally};

/// Proposals kept (the oldest are forgotten).
const PROPOSALS_KEPT: usize = 16;

#[derive(Debug, Default)]
pub struct FederationModel {
    /// This arbiter's site.
    pub site: Option<String>,
    statuses: BTreeMap<String, SiteStatus>,
    proposals: Vec<ProposalEntry>,
}

#[derive(Debug)]
struct ProposalEntry {
    proposal: MigrationProposal,
    /// Votes as they arrived (before the tally weighs them).
    votes: BTreeMap<String, MigrationVote>,
    tally: Option<VoteTally>,
    verdict: Option<MigrationVerdict>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteRow {
    pub site: String,
    pub at_ms: u64,
    pub hosts: usize,
    /// The host most likely to overload, its forecast utilisation and that probability.
    pub riskiest: Option<(String, f64, f64)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VoteRow {
    pub voter: String,
    pub approve: bool,
    pub reason: String,
    /// `None` until the tally: the proposer weighs votes when it counts them.
    pub mase: Option<f64>,
    pub accuracy_weight: Option<f64>,
    pub criticality_weight: Option<f64>,
    pub weight: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProposalRow {
    pub id: String,
    pub host: String,
    pub destination: String,
    pub priority: u8,
    pub overload_probability: f64,
    pub workloads: usize,
    pub votes: Vec<VoteRow>,
    pub missing: Vec<String>,
    /// Approving share of the weight cast, and the share needed.
    pub share: Option<(f64, f64)>,
    /// "open", "passed" or "rejected".
    pub outcome: String,
    pub verdict: Option<String>,
}

fn id_text(id: &ProposalId) -> String {
    format!("{}#{}", id.site, id.seq)
}

fn verdict_text(v: &MigrationVerdict) -> String {
    match v {
        MigrationVerdict::Confirmed { gain, expected } => format!("confirmed: gain {gain:.2} of {expected:.2} expected"),
        MigrationVerdict::RolledBack { gain, expected } => format!("rolled back: gain {gain:.2} of {expected:.2} expected"),
        MigrationVerdict::Alternative { gain, expected, next } => format!("rolled back (gain {gain:.2} of {expected:.2}); next {}", id_text(next)),
        MigrationVerdict::Failed { error } => format!("failed: {error}"),
    }
}

impl FederationModel {
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.proposals.is_empty()
    }

    fn entry(&mut self, p: &MigrationProposal) -> &mut ProposalEntry {
        let at = match self.proposals.iter().position(|e| e.proposal.id == p.id) {
            Some(i) => i,
            None => {
                self.proposals.push(ProposalEntry { proposal: p.clone(), votes: BTreeMap::new(), tally: None, verdict: None });
                if self.proposals.len() > PROPOSALS_KEPT {
                    self.proposals.remove(0);
                }
                self.proposals.len() - 1
            }
        };
        &mut self.proposals[at]
    }

    pub fn apply(&mut self, site: String, _at: Timestamp, message: FederationMessage) {
        self.site = Some(site);
        match message {
            FederationMessage::Status(s) => {
                self.statuses.insert(s.site.clone(), s);
            }
            FederationMessage::Proposal(p) => {
                self.entry(&p);
            }
            FederationMessage::Vote(v) => {
                if let Some(e) = self.proposals.iter_mut().find(|e| e.proposal.id == v.proposal) {
                    e.votes.insert(v.voter.clone(), v);
                }
            }
            FederationMessage::Tally(t) => {
                let e = self.entry(&t.proposal);
                for c in &t.votes {
                    e.votes.insert(c.vote.voter.clone(), c.vote.clone());
                }
                e.tally = Some(t);
            }
            FederationMessage::Verdict { proposal, verdict, .. } => {
                if let Some(e) = self.proposals.iter_mut().find(|e| e.proposal.id == proposal) {
                    e.verdict = Some(verdict);
                }
            }
        }
    }

    pub fn site_rows(&self) -> Vec<SiteRow> {
        self.statuses
            .values()
            .map(|s| SiteRow {
                site: s.site.clone(),
                at_ms: s.at.0,
                hosts: s.hosts.len(),
                riskiest: s.hosts.iter().max_by(|a, b| a.overload_probability.total_cmp(&b.overload_probability)).map(|h| (h.host.0.clone(), h.forecast_mean, h.overload_probability)),
            })
            .collect()
    }

    /// Newest first.
    pub fn proposal_rows(&self) -> Vec<ProposalRow> {
        self.proposals
            .iter()
            .rev()
            .map(|e| {
                let counted = |voter: &str| e.tally.as_ref().and_then(|t| t.votes.iter().find(|c| c.vote.voter == voter));
                let votes = e
                    .votes
                    .values()
                    .map(|v| {
                        let c = counted(&v.voter);
                        VoteRow {
                            voter: v.voter.clone(),
                            approve: v.approve,
                            reason: v.reason.clone(),
                            mase: c.and_then(|c| c.mase),
                            accuracy_weight: c.map(|c| c.accuracy_weight),
                            criticality_weight: c.map(|c| c.criticality_weight),
                            weight: c.map(|c| c.weight),
                        }
                    })
                    .collect();
                let outcome = match &e.tally {
                    None => "open",
                    Some(t) if t.passed => "passed",
                    Some(_) => "rejected",
                };
                ProposalRow {
                    id: id_text(&e.proposal.id),
                    host: e.proposal.host.0.clone(),
                    destination: e.proposal.destination.clone(),
                    priority: e.proposal.priority,
                    overload_probability: e.proposal.overload_probability,
                    workloads: e.proposal.workloads.len(),
                    votes,
                    missing: e.tally.as_ref().map(|t| t.missing.clone()).unwrap_or_default(),
                    share: e.tally.as_ref().map(|t| (t.share, t.pass_share)),
                    outcome: outcome.into(),
                    verdict: e.verdict.as_ref().map(verdict_text),
                }
            })
            .collect()
    }
}
