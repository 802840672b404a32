//! What the market knows about one host between rounds: capacity, the workloads present with
//! their bounds, and when each last flagged an SLO breach.
//!
//! Allocations are not kept here: a workload's current holding is the amount of its open lease
//! in the ledger (or its entitlement when it has none), so a restarted or newly elected arbiter
//! resumes from the replicated ledger alone.

use std::collections::BTreeMap;
use truce_common::model::{HostId, Resource, Timestamp, WorkloadId, WorkloadRef};

/// A workload's limits for one resource, in the resource's unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Never allocate less (keeps the workload alive).
    pub floor: u64,
    /// What it holds when nobody trades: the default its cgroup has without truce.
    pub entitlement: u64,
    /// Never allocate more.
    pub ceiling: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    pub workload: WorkloadRef,
    /// Fairness weight (weighted max-min); 100 is the default, like cpu.weight.
    pub weight: u32,
    /// Configured priority; a bid's own priority is used when it is higher.
    pub priority: u32,
    /// Bounds per resource. A resource not listed here: floor 0, entitlement 0, ceiling capacity.
    pub bounds: BTreeMap<Resource, Bounds>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HostBook {
    pub host: HostId,
    /// Rounds resolved so far on this host.
    pub round: u64,
    /// Capacity per tradeable resource; resources not listed are not traded on this host.
    pub capacity: BTreeMap<Resource, u64>,
    /// The workloads present on the host now. A lease holder missing from here has vanished.
    pub workloads: BTreeMap<WorkloadId, WorkloadSpec>,
    /// When each workload last flagged an SLO breach.
    pub breach_at: BTreeMap<WorkloadId, Timestamp>,
    /// What each workload used over its agent's last period, where the agent reported it.
    /// Refreshed every report without re-registering the host.
    pub usage: BTreeMap<(WorkloadId, Resource), u64>,
}

impl HostBook {
    pub fn new(host: HostId, capacity: BTreeMap<Resource, u64>) -> HostBook {
        HostBook {
            host,
            round: 0,
            capacity,
            workloads: BTreeMap::new(),
            breach_at: BTreeMap::new(),
            usage: BTreeMap::new(),
        }
    }

    pub fn bounds(&self, w: WorkloadId, r: Resource) -> Bounds {
        let cap = self.capacity.get(&r).copied().unwrap_or(0);
        self.workloads
            .get(&w)
            .and_then(|s| s.bounds.get(&r).copied())
            .unwrap_or(Bounds {
                floor: 0,
                entitlement: 0,
                ceiling: cap,
            })
    }

    /// What `w` used of `r` last period; `None` when its agent did not say.
    pub fn usage(&self, w: WorkloadId, r: Resource) -> Option<u64> {
        self.usage.get(&(w, r)).copied()
    }

    /// Record what a round decided that is not in the ledger.
    pub fn advance(&mut self, outcome: &super::round::RoundOutcome) {
        self.round = outcome.round;
        for (w, at) in &outcome.breaches {
            self.breach_at.insert(*w, *at);
        }
        // Forget boosts of workloads that left.
        let present = &self.workloads;
        self.breach_at.retain(|w, _| present.contains_key(w));
    }
}
