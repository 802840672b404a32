//! The status file `truce-agent explain` and `truce top` read: the leases this agent holds,
//! and per workload its score, worst antagonist and last bid.
use super::run::SeenRound;
use super::sampler::now;
use crate::enforce::{BidStatus, Enforcer, LeaseStatus, Status, WorkloadStatus};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use truce_common::model::{Bid, Setting, WorkloadId};

/// How often the status is rewritten at most when nothing the agent holds changed.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// When the daemon rewrites the status file. It serves `truce-agent explain` and `truce top`,
/// which a person reads: a changed holding (a lease taken or ended, a new value) is written
/// at once; otherwise once a second is enough. Rewriting it on every renewal cost 1.65 ms of
/// the agent's CPU per `decisions` frame in the VM, a fifth of its work per period
/// (docs/benchmarks.md mitigation run 44); every period at a 100 ms period cost 19 % of its
/// CPU on ext4, which flushes a file renamed over another (run 8).
pub(super) struct StatusWriter {
    path: PathBuf,
    host: String,
    enforcing: bool,
    period: Duration,
    written: Option<Instant>,
    /// What the leases held at the last write: (cgroup, file, value).
    held: Vec<(String, String, Setting)>,
}

impl StatusWriter {
    pub fn new(path: PathBuf, host: &str, enforcing: bool, period: Duration) -> StatusWriter {
        StatusWriter { path, host: host.to_string(), enforcing, period, written: None, held: Vec::new() }
    }

    /// After decisions: written when the holdings changed; a renewal of the same values (a
    /// later expiry) waits for [`StatusWriter::periodic`].
    pub fn after_decisions(&mut self, enforcer: &Enforcer, round: Option<&SeenRound>, bids: &HashMap<WorkloadId, Bid>) {
        if held(enforcer) != self.held {
            self.write(enforcer, round, bids);
        }
    }

    /// Once per period: written when the last write is a second old.
    pub fn periodic(&mut self, enforcer: &Enforcer, round: Option<&SeenRound>, bids: &HashMap<WorkloadId, Bid>) {
        if self.written.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
            self.write(enforcer, round, bids);
        }
    }

    pub fn write(&mut self, enforcer: &Enforcer, round: Option<&SeenRound>, bids: &HashMap<WorkloadId, Bid>) {
        write_status(&self.path, &self.host, self.enforcing, enforcer, round, bids, self.period);
        self.written = Some(Instant::now());
        self.held = held(enforcer);
    }
}

fn held(enforcer: &Enforcer) -> Vec<(String, String, Setting)> {
    enforcer.leases().iter().map(|l| (l.cgroup.clone(), l.slot.to_string(), l.setting.clone())).collect()
}

/// Rewrite the status file. A failure is logged, never fatal: the status explains, it does not
/// decide anything.
fn write_status(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::tests::{decision, scratch_enforcer};
    use truce_common::model::Timestamp;

    #[test]
    fn decisions_rewrite_the_status_only_when_the_holdings_change() {
        let (mut e, tmp, _) = scratch_enforcer("status");
        let file = tmp.join("status.json");
        let mut status = StatusWriter::new(file.clone(), "h", true, Duration::from_secs(1));
        let bids = HashMap::new();
        let quota = |m| Setting::CpuMax { millicores: m, period_us: 100_000 };
        e.apply(&decision(1, quota(300)), Timestamp(1)).expect("first");
        status.after_decisions(&e, None, &bids);
        assert!(file.exists(), "a new lease was not written at once");
        std::fs::remove_file(&file).expect("rm");
        e.apply(&decision(1, quota(300)), Timestamp(2)).expect("renewal");
        status.after_decisions(&e, None, &bids);
        assert!(!file.exists(), "a renewal of the same value rewrote the status");
        status.periodic(&e, None, &bids);
        assert!(!file.exists(), "the periodic write came before its second");
        e.apply(&decision(1, quota(400)), Timestamp(3)).expect("new value");
        status.after_decisions(&e, None, &bids);
        assert!(file.exists(), "a new value was not written at once");
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
