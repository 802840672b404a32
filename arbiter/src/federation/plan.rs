//! Turning a host's overload forecast into a migration proposal: which workloads, where to,
//! how urgent. Pure.

use super::forecast::{Forecast, exceedance};
use truce_common::wire::{HostForecast, MigrationWorkload, SiteStatus};

/// What to move and where.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub destination: String,
    pub workloads: Vec<MigrationWorkload>,
    pub priority: u8,
    /// P(the destination's receiving host overloads after the move), as the proposer sees it.
    pub destination_risk: f64,
}

/// Pick workloads until the forecast falls below `target` (least critical first, then the
/// largest, so the fewest and least important workloads move), and the peer whose least
/// loaded host has the lowest overload risk with them added. `None` when no peer can take
/// them below `threshold` risk or nothing can move.
pub fn plan(
    forecast: Forecast,
    overload_probability: f64,
    target: f64,
    level: f64,
    threshold: f64,
    workloads: &[MigrationWorkload],
    peers: &[&SiteStatus],
) -> Option<Plan> {
    let mut candidates: Vec<&MigrationWorkload> = workloads.iter().filter(|w| w.demand.is_finite() && w.demand > 0.0).collect();
    candidates.sort_by(|a, b| a.criticality.cmp(&b.criticality).then(b.demand.total_cmp(&a.demand)).then(a.workload.id.cmp(&b.workload.id)));
    let mut moved = 0.0;
    let mut chosen = Vec::new();
    for w in candidates {
        if forecast.mean - moved <= target {
            break;
        }
        moved += w.demand;
        chosen.push(w.clone());
    }
    if chosen.is_empty() {
        return None;
    }
    let mut best: Option<(f64, &str)> = None;
    for peer in peers {
        let Some(host) = least_loaded(&peer.hosts) else { continue };
        let risk = exceedance(Forecast { mean: host.forecast_mean + moved, sigma: host.forecast_sigma }, level);
        if risk < threshold && best.is_none_or(|(r, name)| risk < r || (risk == r && peer.site.as_str() < name)) {
            best = Some((risk, &peer.site));
        }
    }
    let (risk, destination) = best?;
    let max_crit = chosen.iter().map(|w| w.criticality).max().unwrap_or(1);
    Some(Plan { destination: destination.to_string(), priority: priority(overload_probability, max_crit), workloads: chosen, destination_risk: risk })
}

/// 1..=10: the overload probability scaled by how critical the moving workloads are
/// (criticality 1 halves it, 10 keeps it whole).
pub fn priority(overload_probability: f64, max_criticality: u8) -> u8 {
    let crit = f64::from(max_criticality.clamp(1, 10));
    let p = overload_probability.clamp(0.0, 1.0) * (0.5 + 0.5 * crit / 10.0);
    (p * 10.0).round().clamp(1.0, 10.0) as u8
}

pub fn least_loaded(hosts: &[HostForecast]) -> Option<&HostForecast> {
    hosts.iter().filter(|h| h.forecast_mean.is_finite()).min_by(|a, b| a.forecast_mean.total_cmp(&b.forecast_mean))
}

#[cfg(test)]
mod tests {
    use super::*;
    use truce_common::model::{HostId, Timestamp, WorkloadId, WorkloadRef};

    fn w(id: u64, demand: f64, criticality: u8) -> MigrationWorkload {
        MigrationWorkload { workload: WorkloadRef { id: WorkloadId(id), path: format!("/w{id}") }, demand, criticality, pod: None }
    }

    fn peer(site: &str, mean: f64) -> SiteStatus {
        SiteStatus {
            site: site.into(),
            at: Timestamp(0),
            hosts: vec![HostForecast { host: HostId(format!("{site}-1")), utilisation: mean, forecast_mean: mean, forecast_sigma: 0.05, horizon_ms: 1000, overload_probability: 0.0, criticality: 1 }],
        }
    }

    #[test]
    fn least_critical_largest_first_to_the_roomiest_peer() {
        let f = Forecast { mean: 1.1, sigma: 0.05 };
        let wl = [w(1, 0.3, 5), w(2, 0.2, 1), w(3, 0.1, 1), w(4, 0.4, 9)];
        let (b, c) = (peer("b", 0.4), peer("c", 0.2));
        let p = plan(f, 0.99, 0.8, 0.9, 0.5, &wl, &[&b, &c]).expect("a plan");
        assert_eq!(p.workloads.iter().map(|w| w.workload.id.0).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(p.destination, "c");
        assert_eq!(p.priority, 5);
    }

    #[test]
    fn no_peer_with_room_means_no_plan() {
        let f = Forecast { mean: 1.1, sigma: 0.05 };
        assert!(plan(f, 0.99, 0.8, 0.9, 0.5, &[w(1, 0.5, 1)], &[&peer("b", 0.7)]).is_none());
        assert!(plan(f, 0.99, 0.8, 0.9, 0.5, &[], &[&peer("b", 0.1)]).is_none());
    }
}
