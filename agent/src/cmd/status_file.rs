//! The status file `truce-agent explain` and `truce top` read: the leases this agent holds,
//! and per workload its score, worst antagonist and last bid.
use super::run::SeenRound;
use super::sampler::now;
use crate::enforce::{BidStatus, Enforcer, LeaseStatus, Status, WorkloadStatus};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use truce_common::model::{Bid, WorkloadId};

/// Rewrite the status file. A failure is logged, never fatal: the status explains, it does not
/// decide anything.
pub(super) fn write_status(
    path: &Path,
    host: &str,
    enforcing: bool,
    enforcer: &Enforcer,
    round: Option<&SeenRound>,
    bids: &HashMap<WorkloadId, Bid>,
    period: Duration,
) {
    let leases = enforcer
        .leases()
        .iter()
        .map(|l| LeaseStatus {
            lease: l.id.0,
            cgroup: l.cgroup.clone(),
            file: l.slot.to_string(),
            setting: l.setting.clone(),
            start: l.start,
            expiry: l.expiry,
            decision: l.decision.0,
            bids: l.bids.iter().map(|b| b.0).collect(),
            reasons: l.reasons.clone(),
        })
        .collect();
    let workloads = round
        .map(|(round, names)| {
            names
                .iter()
                .map(|(id, cgroup, name)| {
                    let estimate = round.estimates.iter().find(|e| e.workload == *id);
                    WorkloadStatus {
                        cgroup: cgroup.clone(),
                        id: id.0,
                        name: name.clone(),
                        score: estimate.map(|e| e.score),
                        antagonist: estimate.and_then(|e| e.antagonists.first()).map(|a| a.explanation.clone()),
                        last_bid: bids.get(id).map(|b| BidStatus {
                            id: b.id.0,
                            at: b.at,
                            asks: b.asks.iter().map(|a| format!("{} {} at <= {} /unit/s", a.resource, a.amount, a.max_price)).collect(),
                            releases: b.releases.iter().map(|r| format!("{} {} at >= {} /unit/s", r.resource, r.amount, r.min_price)).collect(),
                            slo_breach: b.slo_breach,
                            reasons: b.reasons.clone(),
                        }),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let status = Status { host: host.to_string(), pid: std::process::id(), at: now(), period_ms: period.as_millis() as u64, enforcing, leases, workloads, own_cgroup: enforcer.scope().own.clone() };
    if let Err(e) = status.write_atomic(path) {
        tracing::warn!(file = %path.display(), cause = %e, "could not write the status file (`truce-agent explain` will be stale)");
    }
}
