//! One site's federation state machine: forecasts its hosts, publishes its status, proposes
//! migrations when a host's overload probability passes the threshold, votes on peers'
//! proposals, tallies votes on its own, and watches accepted migrations. Pure: every input
//! carries its time, every effect is an [`Action`] for the runtime to carry out.

use super::accuracy::AccuracyTracker;
use super::config::SiteConfig;
use super::forecast::exceedance;
use super::plan::plan;
use super::vote::{judge, tally};
use super::watch::Watch;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use truce_common::model::{HostId, Timestamp};
use truce_common::wire::{
    FederationMessage, HostForecast, MigrationProposal, MigrationVerdict, MigrationVote, MigrationWorkload, ProposalId, SiteStatus, VoteTally,
};

/// One host's utilisation this period and the workloads on it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostObservation {
    pub host: HostId,
    pub utilisation: f64,
    pub workloads: Vec<MigrationWorkload>,
}

/// What an executor is asked to do, as the command hook receives it (JSON on stdin).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MigrationOrder {
    pub action: OrderAction,
    pub role: OrderRole,
    pub proposal: MigrationProposal,
    pub share: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderAction {
    Migrate,
    /// The gain did not show: undo the move.
    Rollback,
    /// The gain showed: finish (e.g. uncordon the source node).
    Confirm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderRole {
    /// The site the workloads leave.
    Source,
    /// The site they go to.
    Destination,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send to every peer.
    Broadcast(FederationMessage),
    Send { to: String, msg: FederationMessage },
    Execute(MigrationOrder),
    /// For `truce top`'s cluster view (and tests): tallies and verdicts as they happen.
    Publish(FederationMessage),
}

/// Proposal numbers one leader of a replicated site may use before the next leader's
/// (`term × PROPOSALS_PER_TERM + 1` on) could collide with them: at one proposal per period,
/// decades.
pub const PROPOSALS_PER_TERM: u64 = 1_000_000;

#[derive(Debug, Default)]
struct HostState {
    history: VecDeque<f64>,
    workloads: Vec<MigrationWorkload>,
}

#[derive(Debug)]
struct OpenVote {
    proposal: MigrationProposal,
    votes: BTreeMap<String, MigrationVote>,
}

#[derive(Debug)]
struct Running {
    proposal: MigrationProposal,
    share: f64,
    watch: Watch,
}

#[derive(Debug)]
pub struct Site {
    config: SiteConfig,
    peers: BTreeSet<String>,
    hosts: BTreeMap<HostId, HostState>,
    forecasts: Vec<HostForecast>,
    /// Every site's accuracy as seen from here (this site's own included).
    accuracy: BTreeMap<String, AccuracyTracker>,
    statuses: BTreeMap<String, SiteStatus>,
    open: Option<OpenVote>,
    running: Option<Running>,
    /// Destinations already tried per source host, so an alternative goes elsewhere.
    tried: BTreeMap<HostId, BTreeSet<String>>,
    /// Periods to wait after a vote before proposing again for the same host.
    cooldown: BTreeMap<HostId, u32>,
    next_seq: u64,
    tallies: Vec<VoteTally>,
}

impl Site {
    pub fn new(config: SiteConfig, peers: impl IntoIterator<Item = String>) -> Site {
        let peers: BTreeSet<String> = peers.into_iter().filter(|p| *p != config.name).collect();
        Site {
            peers,
            hosts: BTreeMap::new(),
            forecasts: Vec::new(),
            accuracy: BTreeMap::new(),
            statuses: BTreeMap::new(),
            open: None,
            running: None,
            tried: BTreeMap::new(),
            cooldown: BTreeMap::new(),
            next_seq: 1,
            tallies: Vec::new(),
            config,
        }
    }

    /// Number this site's proposals from `first` on. A replicated site's new leader starts a
    /// new [`Site`]; numbering from `term × PROPOSALS_PER_TERM` keeps its proposal ids apart
    /// from those its predecessor sent (peers file tallies and verdicts by id).
    pub fn numbering_from(mut self, first: u64) -> Site {
        self.next_seq = first.max(1);
        self
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &SiteConfig {
        &self.config
    }

    pub fn peers(&self) -> impl Iterator<Item = &String> {
        self.peers.iter()
    }

    /// MASE of `site` as this site measured it.
    pub fn mase_of(&self, site: &str) -> Option<f64> {
        self.accuracy.get(site).and_then(AccuracyTracker::mase)
    }

    pub fn tallies(&self) -> &[VoteTally] {
        &self.tallies
    }

    pub fn open_proposal(&self) -> Option<&ProposalId> {
        self.open.as_ref().map(|o| &o.proposal.id)
    }

    fn tracker(&mut self, site: &str) -> &mut AccuracyTracker {
        let (w, m) = (self.config.accuracy_window, self.config.accuracy_min_points);
        self.accuracy.entry(site.to_string()).or_insert_with(|| AccuracyTracker::new(w, m))
    }

    /// One period: record the observations, forecast, publish the status, watch a running
    /// migration, and propose one if a host is headed for overload.
    pub fn period(&mut self, at: Timestamp, observations: Vec<HostObservation>) -> Vec<Action> {
        let cfg = &self.config;
        let (limit, steps, model) = (cfg.history, cfg.horizon_steps, cfg.model);
        for o in observations {
            let h = self.hosts.entry(o.host).or_default();
            h.history.push_back(o.utilisation);
            while h.history.len() > limit {
                h.history.pop_front();
            }
            h.workloads = o.workloads;
        }
        let horizon_ms = self.config.period_ms.saturating_mul(u64::from(steps));
        self.forecasts = self
            .hosts
            .iter()
            .filter_map(|(host, h)| {
                let hist: Vec<f64> = h.history.iter().copied().collect();
                let f = model.forecast(&hist, steps)?;
                Some(HostForecast {
                    host: host.clone(),
                    utilisation: *h.history.back()?,
                    forecast_mean: f.mean,
                    forecast_sigma: f.sigma,
                    horizon_ms,
                    overload_probability: exceedance(f, self.config.overload_level),
                    criticality: h.workloads.iter().map(|w| w.criticality).max().unwrap_or(1).max(1),
                })
            })
            .collect();
        let status = SiteStatus { site: self.config.name.clone(), at, hosts: self.forecasts.clone() };
        let me = self.config.name.clone();
        self.tracker(&me).observe(&status);
        let mut actions = vec![Action::Broadcast(FederationMessage::Status(status))];
        for c in self.cooldown.values_mut() {
            *c = c.saturating_sub(1);
        }
        actions.extend(self.watch_running(at));
        if self.open.is_none() && self.running.is_none() {
            actions.extend(self.maybe_propose(at, None));
        }
        actions
    }

    fn maybe_propose(&mut self, at: Timestamp, alternative_to: Option<ProposalId>) -> Vec<Action> {
        let cfg = &self.config;
        let mut hot: Vec<&HostForecast> = self
            .forecasts
            .iter()
            .filter(|f| f.overload_probability >= cfg.threshold && (alternative_to.is_some() || self.cooldown.get(&f.host).copied().unwrap_or(0) == 0))
            .collect();
        hot.sort_by(|a, b| b.overload_probability.total_cmp(&a.overload_probability).then(a.host.cmp(&b.host)));
        for f in hot {
            let Some(state) = self.hosts.get(&f.host) else { continue };
            let tried = self.tried.get(&f.host);
            let peers: Vec<&SiteStatus> = self.statuses.values().filter(|s| self.peers.contains(&s.site) && tried.is_none_or(|t| !t.contains(&s.site))).collect();
            let forecast = super::forecast::Forecast { mean: f.forecast_mean, sigma: f.forecast_sigma };
            let Some(p) = plan(forecast, f.overload_probability, cfg.target_level, cfg.overload_level, cfg.threshold, &state.workloads, &peers) else {
                tracing::debug!(host = %f.host, p = f.overload_probability, "overload forecast but no peer can take the load");
                continue;
            };
            let id = ProposalId { site: cfg.name.clone(), seq: self.next_seq };
            self.next_seq += 1;
            let proposal = MigrationProposal {
                id,
                destination: p.destination,
                priority: p.priority,
                host: f.host.clone(),
                overload_probability: f.overload_probability,
                overload_level: cfg.overload_level,
                threshold: cfg.threshold,
                history: state.history.iter().copied().collect(),
                horizon_steps: cfg.horizon_steps,
                workloads: p.workloads,
                at,
                alternative_to,
            };
            tracing::info!(proposal = %proposal.id, host = %proposal.host, destination = %proposal.destination, p = proposal.overload_probability, priority = proposal.priority, "proposing a migration");
            self.tried.entry(f.host.clone()).or_default().insert(proposal.destination.clone());
            self.open = Some(OpenVote { proposal: proposal.clone(), votes: BTreeMap::new() });
            return vec![Action::Broadcast(FederationMessage::Proposal(proposal))];
        }
        Vec::new()
    }

    /// A message from peer `from` (already authenticated as that site).
    pub fn handle(&mut self, from: &str, msg: FederationMessage, at: Timestamp) -> Vec<Action> {
        if msg.speaker() != from || !self.peers.contains(from) {
            tracing::warn!(from, speaker = msg.speaker(), "federation message from a site that is not a peer or speaks for another; ignored");
            return Vec::new();
        }
        match msg {
            FederationMessage::Status(s) => {
                self.tracker(from).observe(&s);
                self.statuses.insert(from.to_string(), s);
                Vec::new()
            }
            FederationMessage::Proposal(p) => {
                let vote = judge(&self.config.name, &self.config.model, &self.forecasts, &p);
                tracing::info!(proposal = %p.id, approve = vote.approve, reason = %vote.reason, "voting");
                vec![Action::Send { to: from.to_string(), msg: FederationMessage::Vote(vote) }]
            }
            FederationMessage::Vote(v) => {
                let Some(open) = self.open.as_mut().filter(|o| o.proposal.id == v.proposal) else {
                    tracing::debug!(proposal = %v.proposal, voter = %v.voter, "vote for a proposal that is not open; ignored");
                    return Vec::new();
                };
                open.votes.insert(from.to_string(), v);
                if open.votes.len() == self.peers.len() { self.close_vote(at) } else { Vec::new() }
            }
            FederationMessage::Tally(t) => {
                let mut actions = vec![Action::Publish(FederationMessage::Tally(t.clone()))];
                if t.passed && t.proposal.destination == self.config.name {
                    actions.push(Action::Execute(MigrationOrder { action: OrderAction::Migrate, role: OrderRole::Destination, proposal: t.proposal.clone(), share: t.share }));
                }
                self.tallies.push(t);
                actions
            }
            FederationMessage::Verdict { proposal, at, verdict } => {
                let mut actions = vec![Action::Publish(FederationMessage::Verdict { proposal: proposal.clone(), at, verdict: verdict.clone() })];
                let undo = matches!(verdict, MigrationVerdict::RolledBack { .. } | MigrationVerdict::Alternative { .. });
                if let Some(t) = self.tallies.iter().find(|t| t.proposal.id == proposal && t.proposal.destination == self.config.name && t.passed) {
                    let action = if undo { Some(OrderAction::Rollback) } else if matches!(verdict, MigrationVerdict::Confirmed { .. }) { Some(OrderAction::Confirm) } else { None };
                    if let Some(action) = action {
                        actions.push(Action::Execute(MigrationOrder { action, role: OrderRole::Destination, proposal: t.proposal.clone(), share: t.share }));
                    }
                }
                actions
            }
        }
    }

    /// Count the votes of the open proposal (all peers answered, or the runtime's deadline passed).
    pub fn close_vote(&mut self, at: Timestamp) -> Vec<Action> {
        let Some(open) = self.open.take() else { return Vec::new() };
        let missing: Vec<String> = self.peers.iter().filter(|p| !open.votes.contains_key(*p)).cloned().collect();
        let votes = open.votes.into_values().map(|v| {
            let mase = self.mase_of(&v.voter);
            (v, mase)
        });
        let t = tally(&self.config.votes, &open.proposal, votes.collect(), missing, at);
        tracing::info!(proposal = %t.proposal.id, share = t.share, passed = t.passed, votes = t.votes.len(), missing = t.missing.len(), "vote tallied");
        self.cooldown.insert(t.proposal.host.clone(), self.config.cooldown_periods);
        let mut actions = vec![Action::Broadcast(FederationMessage::Tally(t.clone())), Action::Publish(FederationMessage::Tally(t.clone()))];
        if t.passed {
            let before = self.hosts.get(&t.proposal.host).map(|h| recent_mean(&h.history, self.config.watch_periods)).unwrap_or(0.0);
            let expected: f64 = t.proposal.workloads.iter().map(|w| w.demand).sum();
            self.running = Some(Running {
                proposal: t.proposal.clone(),
                share: t.share,
                watch: Watch::new(before, expected, self.config.watch_periods, self.config.min_gain_fraction),
            });
            actions.push(Action::Execute(MigrationOrder { action: OrderAction::Migrate, role: OrderRole::Source, proposal: t.proposal.clone(), share: t.share }));
        }
        self.tallies.push(t);
        actions
    }

    /// The executor failed to migrate: stop watching, tell the peers.
    pub fn migration_failed(&mut self, id: &ProposalId, error: String, at: Timestamp) -> Vec<Action> {
        if self.running.as_ref().is_some_and(|r| &r.proposal.id == id) {
            self.running = None;
        }
        let msg = FederationMessage::Verdict { proposal: id.clone(), at, verdict: MigrationVerdict::Failed { error } };
        vec![Action::Broadcast(msg.clone()), Action::Publish(msg)]
    }

    fn watch_running(&mut self, at: Timestamp) -> Vec<Action> {
        let Some(run) = self.running.as_mut() else { return Vec::new() };
        let Some(util) = self.hosts.get(&run.proposal.host).and_then(|h| h.history.back().copied()) else { return Vec::new() };
        let Some(result) = run.watch.observe(util) else { return Vec::new() };
        let Some(run) = self.running.take() else { return Vec::new() };
        let (gain, expected) = (result.gain, result.expected);
        let order = |action| Action::Execute(MigrationOrder { action, role: OrderRole::Source, proposal: run.proposal.clone(), share: run.share });
        let mut actions = Vec::new();
        let verdict = if result.met {
            actions.push(order(OrderAction::Confirm));
            self.tried.remove(&run.proposal.host);
            MigrationVerdict::Confirmed { gain, expected }
        } else {
            actions.push(order(OrderAction::Rollback));
            let alternative = if self.config.propose_alternative { self.maybe_propose(at, Some(run.proposal.id.clone())) } else { Vec::new() };
            let next = alternative.iter().find_map(|a| match a {
                Action::Broadcast(FederationMessage::Proposal(p)) => Some(p.id.clone()),
                _ => None,
            });
            actions.extend(alternative);
            match next {
                Some(next) => MigrationVerdict::Alternative { gain, expected, next },
                None => MigrationVerdict::RolledBack { gain, expected },
            }
        };
        tracing::info!(proposal = %run.proposal.id, gain, expected, verdict = ?verdict, "migration watch ended");
        let msg = FederationMessage::Verdict { proposal: run.proposal.id.clone(), at, verdict };
        // The verdict goes first so peers roll back before they see an alternative proposal.
        let mut out = vec![Action::Broadcast(msg.clone()), Action::Publish(msg)];
        out.extend(actions);
        out
    }
}

fn recent_mean(history: &VecDeque<f64>, n: usize) -> f64 {
    let n = n.max(1).min(history.len());
    if n == 0 {
        return 0.0;
    }
    history.iter().rev().take(n).sum::<f64>() / n as f64
}

#[cfg(test)]
#[path = "site_tests.rs"]
mod tests;
