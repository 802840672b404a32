//! What an agent reports each period: a compact summary per workload, not the raw sample.

use crate::estimate::{DemandForecast, InterferenceEstimate};
use crate::model::{HostId, Resource, Timestamp, WorkloadRef};
use crate::signal::WorkloadSample;
use serde::{Deserialize, Serialize};

/// One period's report from one host; answered by `Ack { seq }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub seq: u64,
    /// Must equal the session's certificate host, or the report is refused.
    pub host: HostId,
    pub at: Timestamp,
    pub period_ms: u64,
    pub workloads: Vec<WorkloadReport>,
    /// What the market may trade on this host. Added after version 1 shipped: absent from older
    /// agents' reports (and left out of the encoding when `None`), so both sides still decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
}

/// The host's tradeable capacity and the workloads its agent may enforce (those under its
/// configured roots), with their configured bounds. The arbiter builds the host's market book
/// from it; without it, hosts fall back to the arbiter's configured defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Per resource, in its unit (millicores, bytes, bytes/s on one device).
    pub capacity: Vec<Capacity>,
    pub managed: Vec<ManagedWorkload>,
}

/// An amount of one resource, in its unit: a host's capacity, or a workload's usage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub resource: Resource,
    pub amount: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManagedWorkload {
    pub workload: WorkloadRef,
    /// Configured priority (at least 1).
    pub priority: u32,
    /// Configured floors and ceilings; a resource not listed has none.
    pub bounds: Vec<ResourceBounds>,
    /// What it used over the last period, per resource (millicores, bytes); CPU includes the
    /// time it waited on a run queue (runnable time), so a workload held back by contention
    /// is not taken for one that wants little. The market bases demand on it, so an idle
    /// workload's unused entitlement is what a cut takes first. Added
    /// after version 1: absent from older agents (the market then assumes the entitlement) and
    /// left out of the encoding when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<Capacity>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceBounds {
    pub resource: Resource,
    pub floor: Option<u64>,
    pub ceiling: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadReport {
    pub workload: WorkloadRef,
    pub name: String,
    pub signals: SignalSummary,
    pub estimate: Option<InterferenceEstimate>,
    pub forecasts: Vec<DemandForecast>,
}

/// Rates and levels over one period. `None` means the host could not measure it
/// (DESIGN.md invariant 5): it is never filled in with zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalSummary {
    pub cpu_millicores: Option<u64>,
    /// Run-queue wait / (run + wait); `None` when the workload never ran.
    pub rq_delay_share: Option<f64>,
    /// `None` without a PMU.
    pub cpi: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub io_read_bps: Option<u64>,
    pub io_write_bps: Option<u64>,
    pub net_rx_bps: Option<u64>,
    pub net_tx_bps: Option<u64>,
    pub psi_cpu_some_avg10: Option<f64>,
    pub psi_memory_some_avg10: Option<f64>,
    pub psi_io_some_avg10: Option<f64>,
}

impl SignalSummary {
    /// Summarise one sample taken over `period_ms`. A zero period gives no rates.
    pub fn from_sample(s: &WorkloadSample, period_ms: u64) -> SignalSummary {
        let per_s = |v: u64| (period_ms > 0).then(|| v.saturating_mul(1000) / period_ms);
        let io_read: u64 = s.io.iter().map(|d| d.read_bytes).sum();
        let io_write: u64 = s.io.iter().map(|d| d.write_bytes).sum();
        SignalSummary {
            // usage_usec over period_ms: usec / ms = millicores.
            cpu_millicores: s.files.cpu_usage_us.and_then(|us| (period_ms > 0).then(|| us / period_ms)),
            rq_delay_share: s.cpu.rq_delay_share(),
            cpi: s.perf.as_ref().and_then(|p| p.cpi()),
            memory_bytes: s.files.memory_current,
            io_read_bps: s.files.io_rbytes.or((!s.io.is_empty()).then_some(io_read)).and_then(per_s),
            io_write_bps: s.files.io_wbytes.or((!s.io.is_empty()).then_some(io_write)).and_then(per_s),
            net_rx_bps: s.net.as_ref().and_then(|n| per_s(n.rx_bytes)),
            net_tx_bps: s.net.as_ref().and_then(|n| per_s(n.tx_bytes)),
            psi_cpu_some_avg10: s.psi.cpu.as_ref().map(|p| p.some_avg10),
            psi_memory_some_avg10: s.psi.memory.as_ref().map(|p| p.some_avg10),
            psi_io_some_avg10: s.psi.io.as_ref().map(|p| p.some_avg10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WorkloadId;
    use crate::signal::{CgroupFileSignals, CpuSignals, NetSignals, PsiSignals};

    fn sample() -> WorkloadSample {
        WorkloadSample {
            workload: WorkloadRef { id: WorkloadId(7), path: "/a".into() },
            name: "a".into(),
            cpu: CpuSignals { on_cpu_ns: 300, rq_wait_ns: 100, ..Default::default() },
            io: vec![],
            net: Some(NetSignals { rx_bytes: 2000, tx_bytes: 500, ..Default::default() }),
            perf: None,
            psi: PsiSignals::default(),
            files: CgroupFileSignals { cpu_usage_us: Some(500_000), ..Default::default() },
        }
    }

    #[test]
    fn summary_converts_period_counters_to_rates() {
        let s = SignalSummary::from_sample(&sample(), 1000);
        assert_eq!(s.cpu_millicores, Some(500));
        assert_eq!(s.net_rx_bps, Some(2000));
        assert_eq!(s.rq_delay_share, Some(0.25));
    }

    #[test]
    fn summary_leaves_missing_signals_missing() {
        let s = SignalSummary::from_sample(&sample(), 1000);
        assert_eq!(s.cpi, None, "no PMU must not become a CPI");
        assert_eq!(s.io_read_bps, None);
        assert_eq!(s.memory_bytes, None);
        assert_eq!(SignalSummary::from_sample(&sample(), 0).cpu_millicores, None);
        let unmeasured = WorkloadSample { net: None, ..sample() };
        let s = SignalSummary::from_sample(&unmeasured, 1000);
        assert_eq!((s.net_rx_bps, s.net_tx_bps), (None, None), "network probes off must not become zero traffic");
    }
}
