//! Plugs the market into the QUIC server's round seam (`server::RoundResolver`).
//!
//! A host's book comes from its agent's inventory (capacity, the workloads it may enforce and
//! their configured bounds); a host whose agent sends none is registered with `HostDefaults`,
//! and every workload that bids joins it. Lease ids in the decisions are ledger ids: the server
//! forwards them unchanged, or renewals and repayment could not find their lease.

use super::book::{Bounds, HostBook, WorkloadSpec};
use super::setting::enforceable;
use super::exchange::Exchange;
use super::pricing::initial_price;
use crate::ledger::{AccountId, WorkloadKey};
use crate::cluster::Replica;
use crate::server::{Leadership, MarketView, RoundInput, RoundResolver};
use std::collections::BTreeMap;
use std::sync::Mutex;
use truce_common::model::{Bid, Credits, Decision, HostId, Resource, Timestamp, WorkloadId, WorkloadRef};
use truce_common::wire::{Account, Inventory, Price, ResourceBounds};

#[derive(Clone, Debug, PartialEq)]
pub struct HostDefaults {
    pub capacity: BTreeMap<Resource, u64>,
    /// Each workload's floor as a fraction of its entitlement.
    pub floor_fraction: f64,
    pub income_per_second: Credits,
}

pub struct MarketResolver {
    inner: Mutex<(Exchange, HostDefaults)>,
    /// When each host's agent last sent usage with its inventory (federation reads it).
    usage_at: Mutex<BTreeMap<HostId, Timestamp>>,
    /// Set when the ledger is replicated: only the confirmed leader runs rounds.
    replica: Option<Replica>,
}

impl std::fmt::Debug for MarketResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MarketResolver")
    }
}

impl MarketResolver {
    pub fn new(exchange: Exchange, defaults: HostDefaults) -> MarketResolver {
        MarketResolver {
            inner: Mutex::new((exchange, defaults)),
            usage_at: Mutex::default(),
            replica: None,
        }
    }

    /// Run rounds only while `replica` is the confirmed raft leader (its exchange should
    /// write through the same replica's [`ReplicatedLedger`](crate::cluster::ReplicatedLedger)).
    pub fn replicated(exchange: Exchange, defaults: HostDefaults, replica: Replica) -> MarketResolver {
        MarketResolver { inner: Mutex::new((exchange, defaults)), usage_at: Mutex::default(), replica: Some(replica) }
    }

    /// This period's host observations for a federation site: hosts whose agents reported
    /// usage within `stale` of `now` (`federation::observe`).
    pub fn host_observations(&self, now: Timestamp, stale: std::time::Duration) -> Vec<crate::federation::HostObservation> {
        let usage_at = self.usage_at.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        crate::federation::observe::observations(guard.0.books(), &usage_at, now, stale)
    }
}

/// The book a round should run on: from the agent's inventory when it sent one (its capacity,
/// the workloads it may enforce, their configured bounds), else from `defaults` with every
/// workload that ever bid. Entitlements split capacity equally (every weight is 100, like a
/// fresh cgroup's cpu.weight); floors are the configured ones or `floor_fraction` of the
/// entitlement.
fn wanted_book(defaults: &HostDefaults, host: &HostId, inventory: Option<&Inventory>, bids: &[Bid], known: Option<&HostBook>) -> HostBook {
    let capacity: BTreeMap<Resource, u64> = match inventory {
        Some(inv) if !inv.capacity.is_empty() => {
            inv.capacity.iter().filter(|c| enforceable(c.resource) && c.amount > 0).map(|c| (c.resource, c.amount)).collect()
        }
        _ => defaults.capacity.clone(),
    };
    // (workload, priority, configured bounds)
    let mut members: BTreeMap<WorkloadId, (WorkloadRef, u32, Vec<ResourceBounds>)> = BTreeMap::new();
    match inventory {
        Some(inv) => {
            for m in &inv.managed {
                members.insert(m.workload.id, (m.workload.clone(), m.priority.max(1), m.bounds.clone()));
            }
        }
        None => {
            for (id, spec) in known.map(|b| &b.workloads).into_iter().flatten() {
                members.insert(*id, (spec.workload.clone(), spec.priority, Vec::new()));
            }
            for b in bids {
                members.entry(b.workload.id).or_insert_with(|| (b.workload.clone(), 1, Vec::new()));
            }
        }
    }
    let n = members.len().max(1) as u64;
    let mut book = HostBook::new(host.clone(), capacity.clone());
    for (id, (workload, priority, configured)) in members {
        let bounds = capacity
            .iter()
            .map(|(r, cap)| {
                let e = cap / n;
                let set = configured.iter().find(|b| b.resource == *r);
                let ceiling = set.and_then(|b| b.ceiling).unwrap_or(*cap).min(*cap);
                let floor = set
                    .and_then(|b| b.floor)
                    .unwrap_or((e as f64 * defaults.floor_fraction.clamp(0.0, 1.0)) as u64)
                    .min(ceiling);
                (*r, Bounds { floor, entitlement: e.clamp(floor, ceiling), ceiling })
            })
            .collect();
        book.workloads.insert(id, WorkloadSpec { workload, weight: 100, priority, bounds });
    }
    if let Some(inv) = inventory {
        book.usage = inv
            .managed
            .iter()
            .flat_map(|m| m.usage.iter().map(move |u| ((m.workload.id, u.resource), u.amount)))
            .filter(|((_, r), _)| book.capacity.contains_key(r))
            .collect();
    }
    if let Some(old) = known {
        book.round = old.round;
    }
    book
}

/// Register the host, or update its book when its inventory (or, without one, its set of
/// bidders) changed.
fn ensure_host(exchange: &mut Exchange, defaults: &HostDefaults, input: &RoundInput<'_>) {
    let known = exchange.book(input.host);
    let book = wanted_book(defaults, input.host, input.inventory, input.bids, known);
    if known.is_some_and(|k| k.capacity == book.capacity && k.workloads == book.workloads) {
        if let Err(err) = exchange.set_usage(input.host, book.usage) {
            tracing::warn!(host = %input.host, cause = %err, "could not refresh the host's usage");
        }
        return;
    }
    let income = book.workloads.keys().map(|w| (*w, defaults.income_per_second)).collect();
    tracing::info!(host = %input.host, workloads = book.workloads.len(), capacity = ?book.capacity, "market book updated");
    if let Err(err) = exchange.set_host(book, &income, input.now) {
        tracing::warn!(host = %input.host, cause = %err, "could not register the host with the market");
    }
}

impl RoundResolver for MarketResolver {
    fn leadership(&self) -> Leadership {
        self.replica.as_ref().map_or(Leadership::Serving, Replica::leadership)
    }

    /// The ledger's prices for the host's resources and every workload's balance and
    /// reputation; `None` for a host the market has not registered yet.
    fn market_view(&self, host: &HostId) -> Option<MarketView> {
        let guard = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let exchange = &guard.0;
        let book = exchange.book(host)?;
        let ledger = exchange.ledger();
        let prices = book
            .capacity
            .keys()
            .map(|r| Price {
                resource: *r,
                price: ledger
                    .price(host, *r)
                    .unwrap_or_else(|| initial_price(*r))
                    .as_credits(),
            })
            .collect();
        let accounts = book
            .workloads
            .keys()
            .map(|w| {
                let key = WorkloadKey::new(host, *w);
                Account {
                    workload: *w,
                    credits: ledger.balance(&AccountId::Workload(key.clone())),
                    reputation: ledger.reputation(&key).score,
                }
            })
            .collect();
        Some(MarketView { prices, accounts })
    }

    fn resolve(&self, input: &RoundInput<'_>) -> Vec<Decision> {
        // A replica that stopped leading (checked again once the lock is ours: rounds queue
        // behind a write that may be waiting for a quorum) decides nothing.
        let serving = || self.leadership() == Leadership::Serving;
        if !serving() {
            return Vec::new();
        }
        // A panic elsewhere while holding the lock leaves the exchange consistent (the ledger
        // commits or not as a whole), so a poisoned lock is still usable.
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !serving() {
            return Vec::new();
        }
        let (exchange, defaults) = &mut *guard;
        ensure_host(exchange, defaults, input);
        if input.inventory.is_some_and(|i| i.managed.iter().any(|m| !m.usage.is_empty())) {
            self.usage_at.lock().unwrap_or_else(|p| p.into_inner()).insert(input.host.clone(), input.now);
        }
        let pending = exchange.submit_round(input.host, input.bids, input.now);
        // Wait for the ledger without the exchange: other hosts' rounds go into the same raft
        // entry meanwhile (cluster::ledger, group commit).
        drop(guard);
        match pending.and_then(|p| p.finish()) {
            Ok(outcome) => outcome.decisions,
            Err(err) => {
                // No decisions: existing leases lapse and the agents revert on their own.
                tracing::warn!(host = %input.host, cause = %err, "market round failed");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;
    use crate::market::Market;
    use truce_common::model::{Ask, BidId, Timestamp};
    use truce_common::wire::{Capacity, ManagedWorkload};

    fn bid(w: u64, id: u64, now: Timestamp, ask: u64) -> Bid {
        Bid {
            id: BidId(id),
            workload: WorkloadRef {
                id: WorkloadId(w),
                path: format!("/w{w}"),
            },
            at: now,
            asks: if ask > 0 {
                vec![Ask {
                    resource: Resource::Cpu,
                    amount: ask,
                    max_price: 0.01,
                }]
            } else {
                vec![]
            },
            releases: vec![],
            trades: vec![],
            willingness_to_pay: Credits::from_credits(100.0),
            priority: 1,
            slo_breach: false,
            lease_ms: 5_000,
            reasons: vec![],
        }
    }

    #[test]
    fn resolver_registers_hosts_on_first_round_and_keeps_lease_ids_across_rounds() {
        let dir = std::env::temp_dir().join(format!("truce-serve-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok();
        let ledger = Ledger::open(dir.join("ledger.redb")).expect("open");
        let defaults = HostDefaults {
            capacity: BTreeMap::from([(Resource::Cpu, 4000)]),
            floor_fraction: 0.25,
            income_per_second: Credits::from_credits(1.0),
        };
        let resolver = MarketResolver::new(Exchange::new(ledger, Market::default()), defaults);
        let host = HostId("h".into());
        let mut leases = Vec::new();
        for (i, now) in [60_000u64, 160_000, 161_000, 162_000]
            .into_iter()
            .enumerate()
        {
            let now = Timestamp(now);
            let bids = [
                bid(1, 10 * i as u64, now, 1000),
                bid(2, 10 * i as u64 + 1, now, 0),
            ];
            let decisions = resolver.resolve(&RoundInput {
                host: &host,
                round: i as u64,
                now,
                bids: &bids,
                inventory: None,
            });
            let mine = decisions.iter().find(|d| d.workload.id == WorkloadId(1));
            if i == 0 {
                // Registered just now: no income yet, so nothing to pay a loan with.
                assert!(mine.is_none(), "{decisions:?}");
                continue;
            }
            leases.push(
                mine.expect("the asker gets a decision once it has earned")
                    .lease
                    .id,
            );
        }
        assert!(
            leases.windows(2).all(|w| w[0] == w[1]),
            "renewed, not reopened: {leases:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_inventory_sets_capacity_members_and_configured_bounds() {
        let defaults = HostDefaults { capacity: BTreeMap::from([(Resource::Cpu, 4000)]), floor_fraction: 0.25, income_per_second: Credits(1) };
        let managed = |id: u64, floor: Option<u64>| ManagedWorkload {
            workload: WorkloadRef { id: WorkloadId(id), path: format!("/w{id}") },
            priority: 50,
            bounds: vec![ResourceBounds { resource: Resource::Cpu, floor, ceiling: Some(1500) }],
            usage: vec![],
        };
        let inv = Inventory {
            capacity: vec![Capacity { resource: Resource::Cpu, amount: 2000 }, Capacity { resource: Resource::Net, amount: 1 << 20 }],
            managed: vec![managed(1, Some(300)), managed(2, None)],
        };
        // A bidder the agent does not manage does not join the book.
        let bids = [bid(9, 1, Timestamp(0), 100)];
        let book = wanted_book(&defaults, &HostId("h".into()), Some(&inv), &bids, None);
        assert_eq!(book.capacity, BTreeMap::from([(Resource::Cpu, 2000)]), "net has no cgroup knob and is not traded");
        assert_eq!(book.workloads.keys().copied().collect::<Vec<_>>(), vec![WorkloadId(1), WorkloadId(2)]);
        assert_eq!(book.bounds(WorkloadId(1), Resource::Cpu), Bounds { floor: 300, entitlement: 1000, ceiling: 1500 });
        assert_eq!(book.bounds(WorkloadId(2), Resource::Cpu), Bounds { floor: 250, entitlement: 1000, ceiling: 1500 });
        assert_eq!(book.workloads[&WorkloadId(1)].priority, 50);
        // Without an inventory, the defaults and the bidders make the book.
        let book = wanted_book(&defaults, &HostId("h".into()), None, &bids, None);
        assert_eq!(book.capacity, defaults.capacity);
        assert_eq!(book.bounds(WorkloadId(9), Resource::Cpu), Bounds { floor: 1000, entitlement: 4000, ceiling: 4000 });
    }
}
