//! Plugs the market into the QUIC server's round seam (`server::RoundResolver`).
//!
//! Until the server passes each host's capacity and workload inventory, hosts are registered
//! on their first round with `HostDefaults`, and every workload that bids joins its host with an
//! equal entitlement. Lease ids in the decisions are ledger ids: the server must forward them
//! unchanged, or renewals and repayment cannot find their lease.

use super::book::{Bounds, HostBook, WorkloadSpec};
use super::exchange::Exchange;
use crate::server::{RoundInput, RoundResolver};
use std::collections::BTreeMap;
use std::sync::Mutex;
use truce_common::model::{Bid, Credits, Decision, HostId, Resource, Timestamp};

#[derive(Clone, Debug, PartialEq)]
pub struct HostDefaults {
    pub capacity: BTreeMap<Resource, u64>,
    /// Each workload's floor as a fraction of its entitlement.
    pub floor_fraction: f64,
    pub income_per_second: Credits,
}

pub struct MarketResolver {
    inner: Mutex<(Exchange, HostDefaults)>,
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
        }
    }
}

/// Register the host, or add workloads that bid for the first time (entitlements are re-split
/// equally among all known workloads).
fn ensure_host(
    exchange: &mut Exchange,
    defaults: &HostDefaults,
    host: &HostId,
    bids: &[Bid],
    now: Timestamp,
) {
    let known = exchange.book(host).cloned();
    let mut workloads: BTreeMap<_, _> = known
        .as_ref()
        .map(|b| {
            b.workloads
                .iter()
                .map(|(w, s)| (*w, s.workload.clone()))
                .collect()
        })
        .unwrap_or_default();
    let before = workloads.len();
    for b in bids {
        workloads
            .entry(b.workload.id)
            .or_insert_with(|| b.workload.clone());
    }
    if known.is_some() && workloads.len() == before {
        return;
    }
    let n = workloads.len().max(1) as u64;
    let mut book = HostBook::new(host.clone(), defaults.capacity.clone());
    for (id, workload) in workloads {
        let bounds = defaults
            .capacity
            .iter()
            .map(|(r, cap)| {
                let e = cap / n;
                let floor = (e as f64 * defaults.floor_fraction.clamp(0.0, 1.0)) as u64;
                (
                    *r,
                    Bounds {
                        floor,
                        entitlement: e,
                        ceiling: *cap,
                    },
                )
            })
            .collect();
        book.workloads.insert(
            id,
            WorkloadSpec {
                workload,
                weight: 100,
                priority: 1,
                bounds,
            },
        );
    }
    if let Some(old) = known {
        book.round = old.round;
    }
    let income = book
        .workloads
        .keys()
        .map(|w| (*w, defaults.income_per_second))
        .collect();
    if let Err(err) = exchange.set_host(book, &income, now) {
        tracing::warn!(host = %host, cause = %err, "could not register the host with the market");
    }
}

impl RoundResolver for MarketResolver {
    fn resolve(&self, input: &RoundInput<'_>) -> Vec<Decision> {
        // A panic elsewhere while holding the lock leaves the exchange consistent (the ledger
        // commits or not as a whole), so a poisoned lock is still usable.
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (exchange, defaults) = &mut *guard;
        ensure_host(exchange, defaults, input.host, input.bids, input.now);
        match exchange.round(input.host, input.bids, input.now) {
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
    use truce_common::model::{Ask, BidId, WorkloadId, WorkloadRef};

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
}
