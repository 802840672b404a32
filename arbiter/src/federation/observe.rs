//! A site's per-period host observations, taken from the live market: each host's CPU
//! utilisation is what its agent last reported its managed workloads used, over the CPU
//! capacity it reported. Pure: the books and the time come in, observations go out.
//!
//! A host whose agent reported no usage, or none for `stale`, is left out (its utilisation is
//! unknown, not zero); so is a host without CPU capacity.

use super::site::HostObservation;
use crate::market::HostBook;
use std::collections::BTreeMap;
use std::time::Duration;
use truce_common::model::{HostId, Resource, Timestamp};
use truce_common::wire::MigrationWorkload;

/// A workload's criticality (1..=10, docs/federation.md) from its priority (1..=100):
/// every ten points of priority one step.
pub fn criticality(priority: u32) -> u8 {
    priority.div_ceil(10).clamp(1, 10) as u8
}

/// `usage_at`: when each host's usage was last refreshed.
pub fn observations<'a>(books: impl Iterator<Item = &'a HostBook>, usage_at: &BTreeMap<HostId, Timestamp>, now: Timestamp, stale: Duration) -> Vec<HostObservation> {
    let oldest = now.0.saturating_sub(stale.as_millis() as u64);
    let mut out = Vec::new();
    for book in books {
        let Some(cap) = book.capacity.get(&Resource::Cpu).copied().filter(|c| *c > 0) else { continue };
        if usage_at.get(&book.host).is_none_or(|at| at.0 < oldest) {
            continue;
        }
        let used: Vec<(&crate::market::WorkloadSpec, u64)> =
            book.workloads.iter().filter_map(|(w, spec)| book.usage(*w, Resource::Cpu).map(|u| (spec, u))).collect();
        if used.is_empty() {
            continue;
        }
        let total: u64 = used.iter().map(|(_, u)| u).sum();
        out.push(HostObservation {
            host: book.host.clone(),
            utilisation: total as f64 / cap as f64,
            workloads: used
                .into_iter()
                .map(|(spec, u)| MigrationWorkload { workload: spec.workload.clone(), demand: u as f64 / cap as f64, criticality: criticality(spec.priority), pod: None })
                .collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::{Bounds, WorkloadSpec};
    use truce_common::model::{WorkloadId, WorkloadRef};

    fn book(host: &str, usage: &[(u64, u64, u32)]) -> HostBook {
        let mut b = HostBook::new(HostId(host.into()), BTreeMap::from([(Resource::Cpu, 2000)]));
        for (w, used, priority) in usage {
            let workload = WorkloadRef { id: WorkloadId(*w), path: format!("/w{w}") };
            let bounds = BTreeMap::from([(Resource::Cpu, Bounds { floor: 0, entitlement: 1000, ceiling: 2000 })]);
            b.workloads.insert(WorkloadId(*w), WorkloadSpec { workload, weight: 100, priority: *priority, bounds });
            b.usage.insert((WorkloadId(*w), Resource::Cpu), *used);
        }
        b
    }

    #[test]
    fn utilisation_is_reported_usage_over_capacity_and_stale_hosts_are_left_out() {
        let books = [book("fresh", &[(1, 1500, 50), (2, 300, 1)]), book("stale", &[(3, 100, 1)]), book("silent", &[])];
        let at = BTreeMap::from([(HostId("fresh".into()), Timestamp(9_500)), (HostId("stale".into()), Timestamp(1_000)), (HostId("silent".into()), Timestamp(9_500))]);
        let obs = observations(books.iter(), &at, Timestamp(10_000), Duration::from_secs(5));
        assert_eq!(obs.len(), 1, "{obs:?}");
        assert_eq!(obs[0].host, HostId("fresh".into()));
        assert!((obs[0].utilisation - 0.9).abs() < 1e-9);
        assert_eq!(obs[0].workloads.iter().map(|w| (w.workload.id.0, w.criticality)).collect::<Vec<_>>(), vec![(1, 5), (2, 1)]);
        assert!((obs[0].workloads[0].demand - 0.75).abs() < 1e-9);
    }

    #[test]
    fn criticality_steps_every_ten_priority_points() {
        assert_eq!([0, 1, 10, 11, 50, 100, 500].map(criticality), [1, 1, 1, 2, 5, 10, 10]);
    }
}
