//! Money a round may spend: budgets that cap asks, and refunds that come back first.

use super::intake::want;
use crate::ledger::{LeaseEnd, LeaseRecord, Price};
use std::collections::BTreeMap;
use truce_common::model::{Bid, Resource, Timestamp, WorkloadId};

/// Budgets for asks: willingness to pay, capped by the wallet, split over the asks in
/// proportion to their cost at the market price for the lease term, so the optimiser never
/// grants more than a borrower can pay for. Returns the most units of each ask it can fund.
pub(crate) fn ask_caps(
    bids: &BTreeMap<WorkloadId, &Bid>,
    resources: &[Resource],
    wallets: &BTreeMap<WorkloadId, i64>,
    price_of: &dyn Fn(Resource) -> Price,
    lease_ms: &dyn Fn(WorkloadId) -> u64,
) -> BTreeMap<(WorkloadId, Resource), u64> {
    let mut ask_cap = BTreeMap::new();
    for (w, bid) in bids {
        let budget = bid
            .willingness_to_pay
            .0
            .min(wallets.get(w).copied().unwrap_or(0))
            .max(0);
        let ms = lease_ms(*w);
        let costs: Vec<(Resource, u64, i128)> = resources
            .iter()
            .filter_map(|r| {
                want(bid, *r).map(|a| (*r, a.amount, price_of(*r).cost(a.amount, ms).max(1)))
            })
            .collect();
        let total: i128 = costs.iter().map(|c| c.2).sum();
        for (r, amount, cost) in costs {
            let share = if total <= budget as i128 {
                cost
            } else {
                budget as i128 * cost / total.max(1)
            };
            let per_unit = price_of(r).cost(1, ms).max(0);
            let units = if per_unit == 0 {
                amount
            } else {
                u64::try_from(share / per_unit)
                    .unwrap_or(u64::MAX)
                    .min(amount)
            };
            ask_cap.insert((*w, r), units);
        }
    }
    ask_cap
}

/// Add what closing `rec` at `now` gives back to the holder and pays workload lenders.
pub(crate) fn credit_settlement(
    wallets: &mut BTreeMap<WorkloadId, i64>,
    rec: &LeaseRecord,
    now: Timestamp,
    end: LeaseEnd,
) {
    let s = rec.settle(now, end);
    *wallets.entry(rec.terms.holder).or_insert(0) += s.refund;
    for (lender, paid) in s.to_lenders {
        if let truce_common::model::Lender::Workload(w) = lender {
            *wallets.entry(w).or_insert(0) += paid;
        }
    }
}
