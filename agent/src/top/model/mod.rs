//! The two views' state, and the rows the operator's sort and filter leave visible.

pub mod cluster;
pub mod federation;
pub mod host;

use super::state::{SortKey, UiState};
use cluster::{ClusterModel, WorkloadRow};
use host::{HostModel, HostWorkloadRow};
use std::cmp::Ordering;
use truce_common::model::Timestamp;

/// Where the data comes from and whether it still flows.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Connection {
    Connecting,
    Live,
    /// The source went away; what is shown is as of `since` (ms) and the client retries.
    Lost { reason: String, since_ms: u64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The arbiter address or the agent socket.
    pub source: String,
    pub connection: Connection,
}

fn num(a: Option<f64>, b: Option<f64>) -> Ordering {
    // Missing sorts after present, whichever the direction.
    match (a, b) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn directed(o: Ordering, reverse: bool) -> Ordering {
    if reverse { o.reverse() } else { o }
}

/// Cluster rows after the filter, in the chosen order (numbers worst first unless reversed).
pub fn cluster_rows(model: &ClusterModel, ui: &UiState, now: Timestamp) -> Vec<WorkloadRow> {
    let mut rows: Vec<WorkloadRow> = model.workload_rows(now).into_iter().filter(|r| ui.matches(&[&r.host, &r.name, &r.path])).collect();
    rows.sort_by(|a, b| {
        let o = match ui.sort {
            SortKey::Score | SortKey::RqDelay => num(a.score, b.score),
            SortKey::Name => a.name.cmp(&b.name),
            SortKey::Host => a.host.cmp(&b.host),
            SortKey::Cpu => num(a.cpu_used_m.map(|v| v as f64), b.cpu_used_m.map(|v| v as f64)),
            SortKey::Credits => num(a.credits, b.credits),
            SortKey::Leases => b.leases.cmp(&a.leases),
        };
        directed(o, ui.reverse).then_with(|| a.name.cmp(&b.name))
    });
    rows
}

pub fn host_rows(model: &HostModel, ui: &UiState) -> Vec<HostWorkloadRow> {
    let mut rows: Vec<HostWorkloadRow> = model.rows(ui.spark).into_iter().filter(|r| ui.matches(&[&r.name, &r.path])).collect();
    rows.sort_by(|a, b| {
        let o = match ui.sort {
            SortKey::Name | SortKey::Host => a.name.cmp(&b.name),
            SortKey::Cpu => num(a.cpu_m.map(|v| v as f64), b.cpu_m.map(|v| v as f64)),
            SortKey::RqDelay => num(a.rq_delay_pct, b.rq_delay_pct),
            SortKey::Score | SortKey::Credits | SortKey::Leases => num(a.score, b.score),
        };
        directed(o, ui.reverse).then_with(|| a.name.cmp(&b.name))
    });
    rows
}
