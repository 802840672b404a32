//! The round resolver seam: the server collects a host's bids for one period and asks a
//! [`RoundResolver`] what to grant. The real market (`crate::market`) plugs in here; until
//! then [`ProportionalResolver`] grants asks pro rata out of a fixed per-host capacity.

use std::sync::atomic::{AtomicU64, Ordering};
use truce_common::model::{
    Bid, Decision, DecisionId, HostId, Lease, LeaseId, Lender, Reason, Resource, Setting, Timestamp,
};
use truce_common::wire::{Account, Inventory, Price};

/// One market round for one host. Pure: no I/O, time is an argument.
pub struct RoundInput<'a> {
    pub host: &'a HostId,
    pub round: u64,
    pub now: Timestamp,
    pub bids: &'a [Bid],
    /// The host's latest reported inventory, if its agent sent one.
    pub inventory: Option<&'a Inventory>,
}

/// What a market looks like on one host after a round, for `truce top` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MarketView {
    pub prices: Vec<Price>,
    /// Empty when the resolver keeps no accounts (nothing is shown rather than zeros).
    pub accounts: Vec<Account>,
}

/// May this arbiter run rounds now? A replica that is not the raft leader (or a leader a
/// majority no longer confirms) may not: its agents are redirected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    Serving,
    Elsewhere {
        /// The leader's agent address, when known.
        leader: Option<String>,
        reason: String,
    },
    /// No live leader is known, but this replica had one (or was one) so recently that an
    /// election should name the next by `settles_by`. A new agent's hello waits for it; a
    /// round or a renewal is refused at once, as under [`Leadership::Elsewhere`].
    Electing { reason: String, settles_by: std::time::Instant },
}

pub trait RoundResolver: Send + Sync {
    /// Decide this round. The resolver owns decision and lease ids: the server forwards them
    /// unchanged, because renewal, repayment and default find a lease by its id.
    fn resolve(&self, input: &RoundInput<'_>) -> Vec<Decision>;

    /// Prices, credits and reputation on `host` as they stand after its last round; `None`
    /// when this resolver has no such notion.
    fn market_view(&self, _host: &HostId) -> Option<MarketView> {
        None
    }

    /// Checked before a session opens, before every round and before acknowledging a
    /// renewal. A single arbiter always serves.
    fn leadership(&self) -> Leadership {
        Leadership::Serving
    }
}

/// What one host may hand out per round under [`ProportionalResolver`].
#[derive(Debug, Clone, PartialEq)]
pub struct HostCapacity {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    /// Per device, bytes/s.
    pub io_bps: u64,
    /// Flat price recorded on every lease, credits per unit per second.
    pub price: f64,
    pub min_lease_ms: u64,
    pub max_lease_ms: u64,
}

impl Default for HostCapacity {
    fn default() -> Self {
        HostCapacity {
            cpu_millicores: 4000,
            memory_bytes: 8 << 30,
            io_bps: 200 << 20,
            price: 0.0,
            min_lease_ms: 1_000,
            max_lease_ms: 300_000,
        }
    }
}

/// Not a market: every ask gets `ask × capacity / total asked` of its resource (all of it
/// when the round asks for less than the capacity), at a flat price, from the pool.
/// Network asks are not granted: there is no cgroup v2 network setting to enforce them.
#[derive(Debug, Default)]
pub struct ProportionalResolver {
    pub capacity: HostCapacity,
    /// Decision and lease ids, unique across hosts (each grant is a new lease).
    next_id: AtomicU64,
}

impl ProportionalResolver {
    pub fn new(capacity: HostCapacity) -> Self {
        ProportionalResolver { capacity, next_id: AtomicU64::new(1) }
    }

    fn capacity_of(&self, r: &Resource) -> Option<u64> {
        match r {
            Resource::Cpu => Some(self.capacity.cpu_millicores),
            Resource::Memory => Some(self.capacity.memory_bytes),
            Resource::Io { .. } => Some(self.capacity.io_bps),
            Resource::Net => None,
        }
    }
}

fn setting_for(resource: &Resource, amount: u64) -> Option<Setting> {
    match resource {
        Resource::Cpu => Some(Setting::CpuMax { millicores: amount, period_us: 100_000 }),
        Resource::Memory => Some(Setting::MemoryHigh { bytes: amount }),
        Resource::Io { dev } => Some(Setting::IoMax { dev: *dev, rbps: Some(amount), wbps: Some(amount) }),
        Resource::Net => None,
    }
}

impl RoundResolver for ProportionalResolver {
    /// The flat price of every lease it grants; it keeps no accounts.
    fn market_view(&self, _host: &HostId) -> Option<MarketView> {
        let prices = [Resource::Cpu, Resource::Memory].into_iter().map(|resource| Price { resource, price: self.capacity.price }).collect();
        Some(MarketView { prices, accounts: Vec::new() })
    }

    fn resolve(&self, input: &RoundInput<'_>) -> Vec<Decision> {
        let mut asked: std::collections::BTreeMap<Resource, u128> = Default::default();
        for bid in input.bids {
            for ask in &bid.asks {
                *asked.entry(ask.resource).or_default() += u128::from(ask.amount);
            }
        }
        let mut out = Vec::new();
        for bid in input.bids {
            let lease_ms = bid.lease_ms.clamp(self.capacity.min_lease_ms, self.capacity.max_lease_ms);
            for ask in &bid.asks {
                let Some(cap) = self.capacity_of(&ask.resource) else { continue };
                let total = asked.get(&ask.resource).copied().unwrap_or(0);
                let amount = if total <= u128::from(cap) {
                    ask.amount
                } else {
                    // total > cap >= 0 here, so the division is safe and the share fits in u64.
                    (u128::from(ask.amount) * u128::from(cap) / total) as u64
                };
                let Some(setting) = setting_for(&ask.resource, amount) else { continue };
                if amount == 0 {
                    continue;
                }
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                out.push(Decision {
                    id: DecisionId(id),
                    round: input.round,
                    workload: bid.workload.clone(),
                    lease: Lease {
                        id: LeaseId(id),
                        holder: bid.workload.id,
                        lender: Lender::Pool,
                        resource: ask.resource,
                        amount,
                        price: self.capacity.price,
                        start: input.now,
                        expiry: input.now.plus_ms(lease_ms),
                    },
                    setting,
                    caused_by: vec![bid.id],
                    reasons: vec![Reason {
                        code: "proportional_share".into(),
                        detail: format!("granted {amount} of {} asked for {} (capacity {cap}, round asked {total})", ask.amount, ask.resource),
                    }],
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use truce_common::model::{Ask, BidId, Credits, WorkloadId, WorkloadRef};

    fn bid(id: u64, resource: Resource, amount: u64) -> Bid {
        Bid {
            id: BidId(id),
            workload: WorkloadRef { id: WorkloadId(id), path: format!("/w{id}") },
            at: Timestamp(0),
            asks: vec![Ask { resource, amount, max_price: 1.0 }],
            releases: vec![],
            trades: vec![],
            willingness_to_pay: Credits(0),
            priority: 1,
            slo_breach: false,
            lease_ms: 10_000,
            reasons: vec![],
        }
    }

    fn resolve(bids: &[Bid]) -> Vec<Decision> {
        let r = ProportionalResolver::new(HostCapacity { cpu_millicores: 1000, ..Default::default() });
        r.resolve(&RoundInput { host: &HostId("h".into()), round: 1, now: Timestamp(5), bids, inventory: None })
    }

    #[test]
    fn asks_within_capacity_are_granted_in_full() {
        let d = resolve(&[bid(1, Resource::Cpu, 300), bid(2, Resource::Cpu, 200)]);
        assert_eq!(d.iter().map(|d| d.lease.amount).collect::<Vec<_>>(), vec![300, 200]);
        assert_eq!(d[0].lease.expiry, Timestamp(10_005));
        assert_eq!(d[1].caused_by, vec![BidId(2)]);
    }

    #[test]
    fn oversubscribed_asks_are_scaled_to_capacity() {
        let d = resolve(&[bid(1, Resource::Cpu, 1500), bid(2, Resource::Cpu, 500)]);
        assert_eq!(d.iter().map(|d| d.lease.amount).collect::<Vec<_>>(), vec![750, 250]);
        assert!(d.iter().map(|d| d.lease.amount).sum::<u64>() <= 1000);
    }

    #[test]
    fn network_asks_are_not_granted() {
        assert!(resolve(&[bid(1, Resource::Net, 10)]).is_empty());
    }
}
