//! The lending pool for one resource: who lends what to whom, at what price.
//!
//! After the optimiser, a workload above its (post-trade) entitlement borrows the difference;
//! one below it gave something up. Lenders are the workloads that gave something up *and*
//! offered it (a Release) *and* have reputation at or above the lending threshold; each lends at
//! most what it offered, at `max(market price, its min price)` plus its reputation premium.
//! Borrowers, highest value first, take from the cheapest lender they accept (its price is at
//! most their max price), then from the host's pool at the market price, which stands for the
//! host's spare capacity and for any capacity taken without an offer. A borrower never
//! commits more than its wallet (balance after this round's refunds, capped by its
//! willingness to pay): it gets only the units it can pay for, and the rest stays unallocated.
//!
//! A loan whose borrower still needs what it borrows, from lenders that still lend, is renewed
//! at its original prices instead of being closed and reopened; so is a limit that still
//! holds. "Still" has a band (hysteresis): a lease is kept while the new allocation exceeds
//! it by no more than `hysteresis` of its amount (at least one unit), because an allocation
//! that creeps up as income accrues would otherwise close and reopen the lease every round.
//! Only upward moves are absorbed: keeping a lease smaller than its allocation leaves units
//! unallocated, never more than the capacity; a downward move applies at once.

use crate::ledger::{LeaseEnd, LeaseRecord, LoanShare, Price};
use std::collections::BTreeMap;
use truce_common::model::{LeaseId, Lender, Timestamp, WorkloadId};

/// One workload's position for the resource after the optimiser.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Position {
    pub workload: WorkloadId,
    /// The cgroup default (before trades).
    pub entitlement: u64,
    /// After this round's trades.
    pub effective: u64,
    pub allocated: u64,
    pub value: f64,
    /// Highest price it pays per unit, when it asks.
    pub max_price: Option<Price>,
    /// Units it offered to lend and at no less than what price.
    pub release: Option<(u64, Price)>,
    pub reputation: i64,
    pub lease_ms: u64,
}

/// What a workload should hold for the resource from now on.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    pub workload: WorkloadId,
    pub amount: u64,
    pub shares: Vec<LoanShare>,
    /// Renew this lease instead of opening a new one.
    pub renew: Option<LeaseId>,
    pub expiry: Timestamp,
}

pub(crate) struct LendingInput<'a> {
    pub positions: &'a [Position],
    /// Each workload's open, unexpired lease for this resource.
    pub existing: &'a BTreeMap<WorkloadId, &'a LeaseRecord>,
    pub pool_price: Price,
    pub lend_threshold: i64,
    pub lender_price: &'a dyn Fn(Price, i64) -> Price,
    pub now: Timestamp,
    /// Expiry for limit leases (at least as long as any loan they back).
    pub limit_expiry: Timestamp,
    /// Upward moves up to this fraction of a lease's amount keep the lease.
    pub hysteresis: f64,
}

/// Whether a lease of `held` units still serves an allocation of `wanted`: it is no larger, and
/// short by at most `fraction` of itself (at least one unit).
fn still_serves(held: u64, wanted: u64, fraction: f64) -> bool {
    let band = ((held as f64 * fraction.max(0.0)) as u64).max(1);
    held <= wanted && wanted - held <= band
}

/// Units of `price` affordable with `wallet` micro-credits for `ms`.
fn affordable(wallet: i64, price: Price, ms: u64) -> u64 {
    let per_unit = price.cost(1, ms).max(0);
    if wallet <= 0 {
        return 0;
    }
    if per_unit == 0 {
        // Less than a micro-credit per unit: compute exactly from the full product.
        let denom = (price.0.max(1) as i128) * (ms.max(1) as i128);
        return u64::try_from((wallet as i128) * 1_000_000_000 / denom).unwrap_or(u64::MAX);
    }
    u64::try_from(wallet as i128 / per_unit).unwrap_or(u64::MAX)
}

pub(crate) fn plan(input: &LendingInput<'_>, wallets: &mut BTreeMap<WorkloadId, i64>) -> Vec<Plan> {
    let mut supply: Vec<(Price, WorkloadId, u64)> = input
        .positions
        .iter()
        .filter(|p| p.reputation >= input.lend_threshold && p.allocated < p.effective)
        .filter_map(|p| {
            let (units, min_price) = p.release?;
            let units = units.min(p.effective - p.allocated);
            let base = input.pool_price.max(min_price);
            (units > 0).then(|| ((input.lender_price)(base, p.reputation), p.workload, units))
        })
        .collect();
    supply.sort();

    let mut borrowers: Vec<&Position> = input
        .positions
        .iter()
        .filter(|p| p.allocated > p.effective)
        .collect();
    borrowers.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then(a.workload.cmp(&b.workload))
    });

    let mut plans = Vec::new();
    for b in borrowers {
        let need = b.allocated - b.effective;
        let expiry = input.now.plus_ms(b.lease_ms);
        let wallet = wallets.entry(b.workload).or_insert(0);
        if let Some(rec) = input.existing.get(&b.workload).filter(|r| r.is_loan()) {
            let same = rec.terms.amount.saturating_sub(rec.borrowed()) == b.effective
                && still_serves(rec.terms.amount, b.allocated, input.hysteresis);
            let lenders_still_lend = rec.terms.shares.iter().all(|s| match s.lender {
                Lender::Pool => true,
                Lender::Workload(w) => supply.iter().any(|(_, l, u)| *l == w && *u >= s.units),
            });
            let ext = expiry.ms_since(rec.terms.expiry);
            let top_up: i128 = rec
                .terms
                .shares
                .iter()
                .map(|s| s.price.cost(s.units, ext))
                .sum();
            if same && lenders_still_lend && top_up <= *wallet as i128 {
                for s in &rec.terms.shares {
                    if let Lender::Workload(w) = s.lender
                        && let Some(entry) = supply.iter_mut().find(|(_, l, _)| *l == w)
                    {
                        entry.2 -= s.units;
                    }
                }
                *wallet -= top_up as i64;
                plans.push(Plan {
                    workload: b.workload,
                    amount: rec.terms.amount,
                    shares: rec.terms.shares.clone(),
                    renew: Some(rec.terms.id),
                    expiry: expiry.max(rec.terms.expiry),
                });
                continue;
            }
        }
        // The old loan closes this round (before any new lease opens): its refund is spendable.
        if let Some(rec) = input.existing.get(&b.workload).filter(|r| r.is_loan()) {
            *wallet += rec.settle(input.now, LeaseEnd::Repaid).refund;
        }
        let max_price = b.max_price.unwrap_or(input.pool_price);
        let mut left = need;
        let mut shares = Vec::new();
        for (price, lender, units) in supply.iter_mut() {
            if left == 0 || *price > max_price || *units == 0 || *lender == b.workload {
                continue;
            }
            let take = left
                .min(*units)
                .min(affordable(*wallet, *price, b.lease_ms));
            if take == 0 {
                continue;
            }
            *wallet -= price.cost(take, b.lease_ms) as i64;
            *units -= take;
            left -= take;
            shares.push(LoanShare {
                lender: Lender::Workload(*lender),
                units: take,
                price: *price,
            });
        }
        let from_pool = left.min(affordable(*wallet, input.pool_price, b.lease_ms));
        if from_pool > 0 {
            *wallet -= input.pool_price.cost(from_pool, b.lease_ms) as i64;
            shares.push(LoanShare {
                lender: Lender::Pool,
                units: from_pool,
                price: input.pool_price,
            });
        }
        let borrowed: u64 = shares.iter().map(|s| s.units).sum();
        let amount = b.effective + borrowed;
        if amount != b.entitlement {
            plans.push(Plan {
                workload: b.workload,
                amount,
                shares,
                renew: None,
                expiry,
            });
        }
    }

    // Everyone else whose holding differs from the cgroup default gets a limit lease.
    for p in input
        .positions
        .iter()
        .filter(|p| p.allocated <= p.effective && p.allocated != p.entitlement)
    {
        let kept = input
            .existing
            .get(&p.workload)
            .filter(|r| !r.is_loan() && still_serves(r.terms.amount, p.allocated, input.hysteresis));
        plans.push(Plan {
            workload: p.workload,
            amount: kept.map_or(p.allocated, |r| r.terms.amount),
            shares: Vec::new(),
            renew: kept.map(|r| r.terms.id),
            expiry: input.limit_expiry,
        });
    }
    plans
}
