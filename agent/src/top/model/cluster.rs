//! The cluster view's state, built from the arbiter's inspection events. Pure: events and
//! the time in, rows out; the renderer and `--json` read the same rows.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use truce_common::estimate::{DemandForecast, InterferenceEstimate};
use truce_common::model::{Bid, Decision, HostId, Lease, Resource, Timestamp, WorkloadId};
use truce_common::wire::{Account, HostSnapshot, InspectEvent, Price, WorkloadSummary};

/// Recent decisions kept per host.
const DECISIONS_KEPT: usize = 64;

#[derive(Debug, Default)]
struct HostEntry {
    snapshot: Option<HostSnapshot>,
    workloads: BTreeMap<WorkloadId, WorkloadSummary>,
    workloads_at: Option<Timestamp>,
    estimates: HashMap<WorkloadId, InterferenceEstimate>,
    estimates_seen: bool,
    forecasts: HashMap<WorkloadId, Vec<DemandForecast>>,
    prices: Vec<Price>,
    accounts: HashMap<WorkloadId, Account>,
    leases: Vec<Lease>,
    bids: HashMap<WorkloadId, Bid>,
    decisions: VecDeque<Decision>,
    round: u64,
}

#[derive(Debug, Default)]
pub struct ClusterModel {
    hosts: BTreeMap<HostId, HostEntry>,
    /// The arbiter's federation site, when it is one.
    pub federation: super::federation::FederationModel,
    /// A host list has arrived (the arbiter sends one on subscribe and on every change).
    listed: bool,
    pub updated: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostRow {
    pub host: String,
    pub session: Option<u64>,
    pub connected_at_ms: Option<u64>,
    pub workloads: usize,
    /// The worst interference score on the host.
    pub worst_score: Option<f64>,
    pub leases: usize,
    /// Credits per unit per second, by resource.
    pub prices: BTreeMap<String, f64>,
    pub round: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AntagonistCell {
    pub id: u64,
    pub name: String,
    /// Share of the victim's slowdown, 0..=1.
    pub blame: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkloadRow {
    pub host: String,
    pub id: u64,
    pub name: String,
    pub path: String,
    pub score: Option<f64>,
    pub antagonist: Option<AntagonistCell>,
    pub cpu_used_m: Option<u64>,
    /// Millicores of the newest live CPU lease; `None` without one.
    pub cpu_alloc_m: Option<u64>,
    /// Mean and upper bound of the CPU demand forecast, millicores.
    pub cpu_forecast_m: Option<f64>,
    pub cpu_forecast_upper_m: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// The host's CPU price, credits per millicore per second.
    pub cpu_price: Option<f64>,
    pub credits: Option<f64>,
    pub reputation: Option<i64>,
    pub leases: usize,
    /// Why the last decision about it was taken.
    pub last_reason: Option<String>,
}

/// Everything known about one workload, for the detail pane.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadDetail {
    pub row: WorkloadRow,
    pub estimate: Option<InterferenceEstimate>,
    pub forecasts: Vec<DemandForecast>,
    pub leases: Vec<Lease>,
    pub bid: Option<Bid>,
    pub decisions: Vec<Decision>,
    /// Names of the host's workloads, to label antagonists.
    pub names: BTreeMap<u64, String>,
}

impl ClusterModel {
    pub fn apply(&mut self, ev: InspectEvent) {
        match ev {
            InspectEvent::Hosts { at, hosts } => {
                self.listed = true;
                self.updated = Some(at);
                // Hosts that left take their figures with them; the arbiter forgets them too.
                self.hosts.retain(|h, _| hosts.iter().any(|s| &s.host == h));
                for s in hosts {
                    let host = s.host.clone();
                    self.hosts.entry(host).or_default().snapshot = Some(s);
                }
            }
            InspectEvent::Workloads { host, at, workloads } => {
                let e = self.hosts.entry(host).or_default();
                e.workloads = workloads.into_iter().map(|w| (w.workload.id, w)).collect();
                e.workloads_at = Some(at);
                self.updated = Some(at);
            }
            InspectEvent::Estimates { host, estimates, .. } => {
                let e = self.hosts.entry(host).or_default();
                e.estimates = estimates.into_iter().map(|e| (e.workload, e)).collect();
                e.estimates_seen = true;
            }
            InspectEvent::Forecasts { host, forecasts, .. } => {
                let mut by: HashMap<WorkloadId, Vec<DemandForecast>> = HashMap::new();
                for f in forecasts {
                    by.entry(f.workload).or_default().push(f);
                }
                self.hosts.entry(host).or_default().forecasts = by;
            }
            InspectEvent::Bids { host, bids } => {
                let e = self.hosts.entry(host).or_default();
                for b in bids {
                    e.bids.insert(b.workload.id, b);
                }
            }
            InspectEvent::Prices { host, prices, .. } => self.hosts.entry(host).or_default().prices = prices,
            InspectEvent::Accounts { host, accounts, .. } => {
                self.hosts.entry(host).or_default().accounts = accounts.into_iter().map(|a| (a.workload, a)).collect();
            }
            InspectEvent::Leases { host, leases, .. } => self.hosts.entry(host).or_default().leases = leases,
            InspectEvent::Decisions { host, round, decisions } => {
                let e = self.hosts.entry(host).or_default();
                e.round = e.round.max(round);
                for d in decisions {
                    e.decisions.push_front(d);
                }
                e.decisions.truncate(DECISIONS_KEPT);
            }
            InspectEvent::Federation { site, at, message } => self.federation.apply(site, at, *message),
        }
    }

    /// True once the host list and, for every listed host, its workloads and estimates are in:
    /// what `--once` waits for.
    pub fn complete(&self) -> bool {
        self.listed && self.hosts.values().all(|h| h.workloads_at.is_some() && h.estimates_seen)
    }

    pub fn host_rows(&self, now: Timestamp) -> Vec<HostRow> {
        self.hosts
            .iter()
            .map(|(host, e)| HostRow {
                host: host.0.clone(),
                session: e.snapshot.as_ref().map(|s| s.session.0),
                connected_at_ms: e.snapshot.as_ref().map(|s| s.connected_at.0),
                workloads: e.workloads.len(),
                worst_score: e.estimates.values().map(|x| x.score).reduce(f64::max),
                leases: e.leases.iter().filter(|l| l.expiry > now).count(),
                prices: e.prices.iter().map(|p| (p.resource.to_string(), p.price)).collect(),
                round: e.round,
            })
            .collect()
    }

    /// Every workload of every host, most interfered first.
    pub fn workload_rows(&self, now: Timestamp) -> Vec<WorkloadRow> {
        let mut rows: Vec<WorkloadRow> = self.hosts.iter().flat_map(|(h, e)| e.workloads.values().map(move |w| row(h, e, w, now))).collect();
        rows.sort_by(|a, b| b.score.unwrap_or(-1.0).total_cmp(&a.score.unwrap_or(-1.0)).then_with(|| a.name.cmp(&b.name)));
        rows
    }

    pub fn detail(&self, host: &str, id: u64, now: Timestamp) -> Option<WorkloadDetail> {
        let (h, e) = self.hosts.iter().find(|(h, _)| h.0 == host)?;
        let w = e.workloads.get(&WorkloadId(id))?;
        let id = WorkloadId(id);
        Some(WorkloadDetail {
            row: row(h, e, w, now),
            estimate: e.estimates.get(&id).cloned(),
            forecasts: e.forecasts.get(&id).cloned().unwrap_or_default(),
            leases: e.leases.iter().filter(|l| l.holder == id && l.expiry > now).cloned().collect(),
            bid: e.bids.get(&id).cloned(),
            decisions: e.decisions.iter().filter(|d| d.workload.id == id).take(8).cloned().collect(),
            names: e.workloads.values().map(|w| (w.workload.id.0, w.name.clone())).collect(),
        })
    }
}

fn name_of(e: &HostEntry, id: WorkloadId) -> String {
    e.workloads.get(&id).map_or_else(|| id.to_string(), |w| w.name.clone())
}

fn row(host: &HostId, e: &HostEntry, w: &WorkloadSummary, now: Timestamp) -> WorkloadRow {
    let id = w.workload.id;
    let est = e.estimates.get(&id);
    let live: Vec<&Lease> = e.leases.iter().filter(|l| l.holder == id && l.expiry > now).collect();
    // The newest CPU lease is what the agent enforces (a later grant replaces the earlier one).
    let cpu_lease = live.iter().filter(|l| l.resource == Resource::Cpu).max_by_key(|l| (l.start, l.id));
    let cpu_forecast = e.forecasts.get(&id).and_then(|fs| fs.iter().find(|f| f.resource == Resource::Cpu));
    let account = e.accounts.get(&id);
    WorkloadRow {
        host: host.0.clone(),
        id: id.0,
        name: w.name.clone(),
        path: w.workload.path.clone(),
        score: est.map(|x| x.score),
        antagonist: est.and_then(|x| x.antagonists.first()).map(|a| AntagonistCell { id: a.workload.0, name: name_of(e, a.workload), blame: a.blame }),
        cpu_used_m: w.signals.cpu_millicores,
        cpu_alloc_m: cpu_lease.map(|l| l.amount),
        cpu_forecast_m: cpu_forecast.map(|f| f.mean),
        cpu_forecast_upper_m: cpu_forecast.map(|f| f.upper),
        memory_bytes: w.signals.memory_bytes,
        cpu_price: e.prices.iter().find(|p| p.resource == Resource::Cpu).map(|p| p.price),
        credits: account.map(|a| a.credits.as_credits()),
        reputation: account.map(|a| a.reputation),
        leases: live.len(),
        last_reason: e.decisions.iter().find(|d| d.workload.id == id).and_then(|d| d.reasons.first()).map(|r| format!("{}: {}", r.code, r.detail)),
    }
}
