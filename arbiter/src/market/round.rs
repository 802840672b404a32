//! One market round on one host: bids in, decisions and ledger commands out. Pure: time is
//! an argument, the ledger is read, nothing is written (the caller applies the commands).

use super::book::HostBook;
use super::budget::{ask_caps, credit_settlement};
use super::decide::{DecisionInput, build_decisions};
use super::intake::{accept_bids, reason, release, want};
use super::lending::{LendingInput, Plan, Position, plan};
use super::optimiser::{Claim, allocate};
use super::pricing::initial_price;
use super::setting::enforceable;
use super::trades::{TradeMatch, match_trades};
use super::{Market, MarketError};
use crate::ledger::{
    AccountId, Command, LeaseEnd, LeaseRecord, LedgerState, Price, Reputation, WorkloadKey,
};
use std::collections::BTreeMap;
use truce_common::model::{Bid, BidId, Decision, LeaseId, Reason, Resource, Timestamp, WorkloadId};

/// Everything a round produced.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundOutcome {
    pub round: u64,
    pub decisions: Vec<Decision>,
    /// Apply these in order to the ledger.
    pub commands: Vec<Command>,
    /// Bids (or parts of bids) set aside, with why.
    pub rejected: Vec<(BidId, Reason)>,
    /// Final holdings per workload and resource.
    pub allocation: BTreeMap<(WorkloadId, Resource), u64>,
    /// Prices for the next round.
    pub prices: BTreeMap<Resource, Price>,
    pub trades: Vec<TradeMatch>,
    /// Workloads that flagged an SLO breach this round.
    pub breaches: Vec<(WorkloadId, Timestamp)>,
    /// Leases this round closed, and why.
    pub closed: Vec<ClosedLease>,
    /// LPs solved (0 when every resource took the fast path).
    pub solves: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosedLease {
    pub id: LeaseId,
    pub holder: WorkloadId,
    pub resource: Resource,
    pub end: LeaseEnd,
    /// `holder_vanished`, `expired`, `superseded` or `position_changed` (need dropped or moved).
    pub why: &'static str,
}

/// A lease ended this round and why.
pub(crate) struct Closing<'a> {
    pub lease: &'a LeaseRecord,
    pub end: LeaseEnd,
    pub why: &'static str,
}

/// What a workload wants of one resource before releases, from its (post-trade) entitlement
/// `e`, what it used last period and what it asked for on top.
///
/// An ask is relief beyond what the workload already has: it comes on top of the larger of
/// its entitlement and its use. Without an ask the workload has no claim above its
/// entitlement, and where its use is known it wants that use plus `headroom`, so an idle
/// workload's unused entitlement is what a cut takes first (the CPU antagonist is not cut to
/// its floor to spare a neighbour's idle share). Unknown use counts as the full entitlement.
fn demand(e: u64, used: Option<u64>, asked: u64, headroom: f64) -> u64 {
    match (asked, used) {
        (0, None) => e,
        (0, Some(u)) => {
            let wanted = (u as f64 * (1.0 + headroom.max(0.0))).ceil();
            if wanted >= e as f64 { e } else { wanted as u64 }
        }
        (a, u) => e.max(u.unwrap_or(0)).saturating_add(a),
    }
}

impl Market {
    pub fn resolve(
        &self,
        book: &HostBook,
        bids: &[Bid],
        ledger: &LedgerState,
        now: Timestamp,
    ) -> Result<RoundOutcome, MarketError> {
        let cfg = &self.config;
        let host = &book.host;
        let round = book.round + 1;
        let (bids, mut rejected) = accept_bids(book, bids, now, cfg.max_bid_age_ms);
        let breaches: Vec<(WorkloadId, Timestamp)> = bids
            .values()
            .filter(|b| b.slo_breach)
            .map(|b| (b.workload.id, now))
            .collect();
        let boost = |w: WorkloadId| {
            let flagged = breaches.iter().any(|(b, _)| *b == w).then_some(now);
            cfg.boost
                .multiplier(flagged.or(book.breach_at.get(&w).copied()), now)
        };
        let lease_ms = |w: WorkloadId| {
            bids.get(&w)
                .map_or(cfg.default_lease_ms, |b| b.lease_ms)
                .clamp(cfg.min_lease_ms, cfg.max_lease_ms)
        };
        let key = |w: WorkloadId| WorkloadKey::new(host, w);

        // Wallets: balance plus this round's income; refunds of closing leases are added below.
        let mut wallets: BTreeMap<WorkloadId, i64> = book
            .workloads
            .keys()
            .map(|w| {
                (
                    *w,
                    ledger
                        .balance(&AccountId::Workload(key(*w)))
                        .0
                        .saturating_add(ledger.accrual_due(&key(*w), now)),
                )
            })
            .collect();
        let mut commands = vec![Command::Accrue {
            host: host.clone(),
            now,
        }];

        // Leases that end no matter what: holder gone (default) or term over (repaid).
        let mut closings: Vec<Closing<'_>> = Vec::new();
        let mut active: BTreeMap<(WorkloadId, Resource), &LeaseRecord> = BTreeMap::new();
        for rec in ledger.leases_on(host) {
            let t = &rec.terms;
            if !book.workloads.contains_key(&t.holder) {
                let end = if rec.is_loan() {
                    LeaseEnd::Defaulted
                } else {
                    LeaseEnd::Repaid
                };
                closings.push(Closing {
                    lease: rec,
                    end,
                    why: "holder_vanished",
                });
            } else if t.expiry <= now {
                closings.push(Closing {
                    lease: rec,
                    end: LeaseEnd::Repaid,
                    why: "expired",
                });
            } else {
                match active.entry((t.holder, t.resource)) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        closings.push(Closing {
                            lease: rec,
                            end: LeaseEnd::Repaid,
                            why: "superseded",
                        });
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(rec);
                    }
                }
            }
        }

        // Refunds from leases that end regardless come back before anything is bought.
        for c in &closings {
            credit_settlement(&mut wallets, c.lease, now, c.end);
        }

        // Entitlements, then trades on top of them.
        let resources: Vec<Resource> = book
            .capacity
            .keys()
            .copied()
            .filter(|r| enforceable(*r))
            .collect();
        let mut effective: BTreeMap<(WorkloadId, Resource), u64> = BTreeMap::new();
        for w in book.workloads.keys() {
            for r in &resources {
                effective.insert((*w, *r), book.bounds(*w, *r).entitlement);
            }
        }
        let trades = match_trades(book, &bids, &mut effective);

        let price_of = |r: Resource| ledger.price(host, r).unwrap_or_else(|| initial_price(r));
        let ask_cap = ask_caps(&bids, &resources, &wallets, &price_of, &lease_ms);

        let mut allocation = BTreeMap::new();
        let mut prices = BTreeMap::new();
        let mut plans: BTreeMap<Resource, Vec<Plan>> = BTreeMap::new();
        let mut solves = 0;
        let mut reputations: BTreeMap<WorkloadKey, Reputation> = BTreeMap::new();
        for r in &resources {
            let r = *r;
            let capacity = book.capacity.get(&r).copied().unwrap_or(0);
            let price = price_of(r);
            let mut positions = Vec::with_capacity(book.workloads.len());
            let mut claims = Vec::with_capacity(book.workloads.len());
            let mut demand_total: u128 = 0;
            for (w, spec) in &book.workloads {
                let bounds = book.bounds(*w, r);
                let e = effective
                    .get(&(*w, r))
                    .copied()
                    .unwrap_or(bounds.entitlement);
                let current = active
                    .get(&(*w, r))
                    .map_or(bounds.entitlement, |l| l.terms.amount);
                let bid = bids.get(w);
                let ask = bid
                    .and_then(|b| want(b, r))
                    .filter(|a| Price::from_credits(a.max_price) >= price);
                if let (Some(b), None, Some(a)) = (bid, ask, bid.and_then(|b| want(b, r))) {
                    rejected.push((
                        b.id,
                        reason(
                            "priced_out",
                            format!(
                                "{r}: max price {} below market {}",
                                a.max_price,
                                price.as_credits()
                            ),
                        ),
                    ));
                }
                let asked = ask.map_or(0, |a| {
                    a.amount.min(ask_cap.get(&(*w, r)).copied().unwrap_or(0))
                });
                let offered = bid.and_then(|b| release(b, r));
                let demand = demand(e, book.usage(*w, r), asked, cfg.usage_headroom)
                    .saturating_sub(offered.map_or(0, |o| o.amount))
                    .clamp(bounds.floor, bounds.ceiling);
                let priority = bid
                    .map_or(spec.priority, |b| b.priority.max(spec.priority))
                    .max(1) as f64;
                let unit_value = ask.map_or(price.as_credits(), |a| a.max_price);
                let boosted = priority * boost(*w);
                let value = unit_value * boosted;
                demand_total += demand as u128;
                claims.push(Claim {
                    floor: bounds.floor,
                    upper: demand.max(e).min(bounds.ceiling),
                    current: current.clamp(bounds.floor, bounds.ceiling),
                    demand,
                    value,
                    // Priority and SLO boost weigh in the fairness stage too, or a fully
                    // contended host would split by weight alone and ignore both.
                    weight: spec.weight.max(1) as f64 * boosted,
                });
                positions.push(Position {
                    workload: *w,
                    entitlement: bounds.entitlement,
                    effective: e,
                    allocated: 0,
                    value,
                    max_price: ask.map(|a| Price::from_credits(a.max_price)),
                    release: offered.map(|o| (o.amount, Price::from_credits(o.max_price))),
                    reputation: reputations
                        .get(&key(*w))
                        .copied()
                        .unwrap_or_else(|| ledger.reputation(&key(*w)))
                        .score,
                    lease_ms: lease_ms(*w),
                });
            }
            let swap = cfg.swap_fraction * price.as_credits();
            let alloc = allocate(capacity, &claims, swap, cfg.strategy, cfg.fairness_epsilon)
                .map_err(|source| MarketError::Optimiser {
                    host: host.clone(),
                    resource: r,
                    source,
                })?;
            solves += alloc.solves;
            for (p, x) in positions.iter_mut().zip(&alloc.amounts) {
                p.allocated = *x;
            }
            let existing: BTreeMap<WorkloadId, &LeaseRecord> = active
                .iter()
                .filter(|((_, res), _)| *res == r)
                .map(|((w, _), l)| (*w, *l))
                .collect();
            let longest = positions
                .iter()
                .filter(|p| p.allocated > p.effective)
                .map(|p| p.lease_ms)
                .max()
                .unwrap_or(0);
            let lender_price = |base: Price, rep: i64| cfg.pricing.lender_price(base, rep);
            let input = LendingInput {
                positions: &positions,
                existing: &existing,
                pool_price: price,
                lend_threshold: cfg.reputation.lend_threshold,
                lender_price: &lender_price,
                now,
                limit_expiry: now.plus_ms(longest.max(cfg.default_lease_ms)),
                hysteresis: cfg.lease_hysteresis,
            };
            let resource_plans = plan(&input, &mut wallets);
            for p in &positions {
                let held = resource_plans
                    .iter()
                    .find(|pl| pl.workload == p.workload)
                    .map_or(p.entitlement, |pl| pl.amount);
                allocation.insert((p.workload, r), held);
            }
            let next = cfg.pricing.next(price, demand_total, capacity);
            prices.insert(r, next);
            plans.insert(r, resource_plans);
        }

        // Active leases that no plan renews end now: the need dropped or the position changed.
        for ((w, r), rec) in &active {
            let renewed = plans.get(r).is_some_and(|ps| {
                ps.iter()
                    .any(|p| p.workload == *w && p.renew == Some(rec.terms.id))
            });
            if !renewed {
                closings.push(Closing {
                    lease: rec,
                    end: LeaseEnd::Repaid,
                    why: "position_changed",
                });
            }
        }
        let closed = closings
            .iter()
            .map(|c| ClosedLease {
                id: c.lease.terms.id,
                holder: c.lease.terms.holder,
                resource: c.lease.terms.resource,
                end: c.end,
                why: c.why,
            })
            .collect();
        for c in &closings {
            commands.push(Command::CloseLease {
                id: c.lease.terms.id,
                at: now,
                end: c.end,
            });
            let rules = &cfg.reputation;
            commands
                .extend(rules.on_close(c.lease, c.end, &mut reputations, |k| ledger.reputation(k)));
        }
        let decided = build_decisions(&DecisionInput {
            book,
            bids: &bids,
            plans: &plans,
            active: &active,
            trades: &trades,
            round,
            now,
            next_lease: ledger.next_lease_id(),
            cpu_period_us: cfg.cpu_period_us,
            cpu_cut: cfg.cpu_cut,
            boost: &boost,
        });
        commands.extend(decided.commands);
        for (r, p) in &prices {
            if ledger.price(host, *r) != Some(*p) {
                commands.push(Command::SetPrice {
                    host: host.clone(),
                    resource: *r,
                    price: *p,
                });
            }
        }
        Ok(RoundOutcome {
            round,
            decisions: decided.decisions,
            commands,
            rejected,
            allocation,
            prices,
            trades,
            breaches,
            closed,
            solves,
        })
    }
}
