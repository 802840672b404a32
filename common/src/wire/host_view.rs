//! The agent's local inspection stream, served on its unix socket for `truce top --agent`.
//!
//! A client says `hello` (capability `observer`), is welcomed with the host and its period,
//! sends `subscribe`, and gets `ack`, the recent history as [`HostHistory`] frames, then one
//! [`HostView`] per period.

use super::inspect::WorkloadSummary;
use crate::estimate::{DemandForecast, InterferenceEstimate, InterferenceMatrix};
use crate::model::{Decision, DecisionId, HostId, LeaseId, Setting, Timestamp, WorkloadId};
use crate::signal::Unavailable;
use serde::{Deserialize, Serialize};

/// The `hello` capability of a session that only watches: it is not a host's agent, holds
/// no workloads and may only subscribe.
pub const CAP_OBSERVER: &str = "observer";

/// A lease the agent is enforcing right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcedLease {
    pub lease: LeaseId,
    pub cgroup: String,
    pub setting: Setting,
    pub start: Timestamp,
    pub expiry: Timestamp,
    pub decision: DecisionId,
}

/// One period as the agent saw it: signals, estimates, the who-delayed-whom matrix,
/// forecasts, what it enforces and the latest decisions with their reasons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    pub host: HostId,
    pub at: Timestamp,
    pub period_ms: u64,
    pub workloads: Vec<WorkloadSummary>,
    pub estimates: Vec<InterferenceEstimate>,
    pub matrix: InterferenceMatrix,
    pub forecasts: Vec<DemandForecast>,
    pub leases: Vec<EnforcedLease>,
    /// Newest first.
    pub decisions: Vec<Decision>,
    /// The arbiter connection in words (`connected to ...`, `down: ...`); empty without one.
    pub arbiter: String,
    pub unavailable: Vec<Unavailable>,
    /// Workloads left out to keep the frame under the size limit (the least interfered).
    pub omitted: u32,
}

/// Recent per-period values of one workload, oldest first, the last at `end`; one slot per
/// period, `None` where the workload was absent or the value unavailable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSeries {
    pub workload: WorkloadId,
    pub name: String,
    pub end: Timestamp,
    pub score: Vec<Option<f32>>,
    pub cpu_millicores: Vec<Option<u32>>,
    pub rq_delay_share: Vec<Option<f32>>,
}

/// Backfill for a new subscriber, split over frames of a bounded number of workloads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostHistory {
    pub host: HostId,
    pub period_ms: u64,
    pub series: Vec<WorkloadSeries>,
}
