//! The inspection stream: snapshots of what the arbiter sees, for `truce top`.

use super::federation::FederationMessage;
use super::message::SessionId;
use super::report::SignalSummary;
use crate::estimate::{DemandForecast, InterferenceEstimate};
use crate::model::{Bid, Credits, Decision, HostId, Lease, Resource, Timestamp, WorkloadId, WorkloadRef};
use serde::{Deserialize, Serialize};

/// Start receiving [`InspectEvent`]s that pass `filter`; answered by `Ack { seq }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    pub seq: u64,
    pub filter: InspectFilter,
}

/// Empty lists mean "all" kinds of the first release; the opt-in kinds
/// ([`InspectKind::opt_in`]) come only when named.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectFilter {
    pub hosts: Vec<HostId>,
    pub kinds: Vec<InspectKind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InspectKind {
    Hosts,
    Workloads,
    Estimates,
    Bids,
    Prices,
    Leases,
    Decisions,
    Forecasts,
    Accounts,
    /// Opt-in: the federation's proposals, votes, tallies and verdicts as this site sees them.
    Federation,
}

impl InspectKind {
    /// Kinds added after version 1 first shipped. A subscriber gets them only when it names
    /// them in its filter, so an older `truce top` (which cannot decode them) never sees one.
    pub fn opt_in(self) -> bool {
        matches!(self, InspectKind::Forecasts | InspectKind::Accounts | InspectKind::Federation)
    }
}

impl InspectFilter {
    pub fn accepts(&self, event: &InspectEvent) -> bool {
        let kind = event.kind();
        let kind_ok = self.kinds.contains(&kind) || (self.kinds.is_empty() && !kind.opt_in());
        let host_ok = match event.host() {
            Some(h) => self.hosts.is_empty() || self.hosts.contains(h),
            None => true,
        };
        kind_ok && host_ok
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSnapshot {
    pub host: HostId,
    pub session: SessionId,
    pub connected_at: Timestamp,
    pub workloads: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSummary {
    pub workload: WorkloadRef,
    pub name: String,
    pub signals: SignalSummary,
}

/// A market price: credits per unit per second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub resource: Resource,
    pub price: f64,
}

/// A workload's market account: credits it holds and its reputation as borrower and lender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub workload: WorkloadId,
    pub credits: Credits,
    pub reputation: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InspectEvent {
    Hosts { at: Timestamp, hosts: Vec<HostSnapshot> },
    Workloads { host: HostId, at: Timestamp, workloads: Vec<WorkloadSummary> },
    Estimates { host: HostId, at: Timestamp, estimates: Vec<InterferenceEstimate> },
    Bids { host: HostId, bids: Vec<Bid> },
    Prices { host: HostId, at: Timestamp, prices: Vec<Price> },
    Leases { host: HostId, at: Timestamp, leases: Vec<Lease> },
    Decisions { host: HostId, round: u64, decisions: Vec<Decision> },
    /// Opt-in: the demand forecasts of the host's last report.
    Forecasts { host: HostId, at: Timestamp, forecasts: Vec<DemandForecast> },
    /// Opt-in: credits and reputation after the host's last round (markets that keep a ledger).
    Accounts { host: HostId, at: Timestamp, accounts: Vec<Account> },
    /// Opt-in: a federation message this arbiter's site sent, received or concluded (site
    /// statuses with their forecasts, proposals, votes with their weights, tallies, verdicts).
    /// `site` is this arbiter's site.
    /// Boxed: the largest event by far, and the rarest.
    Federation { site: String, at: Timestamp, message: Box<FederationMessage> },
}

impl InspectEvent {
    pub fn kind(&self) -> InspectKind {
        match self {
            InspectEvent::Hosts { .. } => InspectKind::Hosts,
            InspectEvent::Workloads { .. } => InspectKind::Workloads,
            InspectEvent::Estimates { .. } => InspectKind::Estimates,
            InspectEvent::Bids { .. } => InspectKind::Bids,
            InspectEvent::Prices { .. } => InspectKind::Prices,
            InspectEvent::Leases { .. } => InspectKind::Leases,
            InspectEvent::Decisions { .. } => InspectKind::Decisions,
            InspectEvent::Forecasts { .. } => InspectKind::Forecasts,
            InspectEvent::Accounts { .. } => InspectKind::Accounts,
            InspectEvent::Federation { .. } => InspectKind::Federation,
        }
    }

    /// The host the snapshot is about; `None` for the all-hosts list.
    pub fn host(&self) -> Option<&HostId> {
        match self {
            InspectEvent::Hosts { .. } | InspectEvent::Federation { .. } => None,
            InspectEvent::Workloads { host, .. }
            | InspectEvent::Estimates { host, .. }
            | InspectEvent::Bids { host, .. }
            | InspectEvent::Prices { host, .. }
            | InspectEvent::Leases { host, .. }
            | InspectEvent::Decisions { host, .. }
            | InspectEvent::Forecasts { host, .. }
            | InspectEvent::Accounts { host, .. } => Some(host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_selects_by_kind_and_host() {
        let ev = InspectEvent::Bids { host: HostId("a".into()), bids: vec![] };
        assert!(InspectFilter::default().accepts(&ev));
        let only_b = InspectFilter { hosts: vec![HostId("b".into())], kinds: vec![] };
        assert!(!only_b.accepts(&ev));
        let only_leases = InspectFilter { hosts: vec![], kinds: vec![InspectKind::Leases] };
        assert!(!only_leases.accepts(&ev));
        let hosts = InspectEvent::Hosts { at: Timestamp(0), hosts: vec![] };
        assert!(only_b.accepts(&hosts), "the host list is not about one host");
    }

    #[test]
    fn opt_in_kinds_reach_only_subscribers_that_name_them() {
        let ev = InspectEvent::Accounts { host: HostId("a".into()), at: Timestamp(0), accounts: vec![] };
        assert!(!InspectFilter::default().accepts(&ev), "an old subscriber cannot decode it");
        let named = InspectFilter { hosts: vec![], kinds: vec![InspectKind::Accounts] };
        assert!(named.accepts(&ev));
    }
}
