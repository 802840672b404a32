//! Trade-offs between workloads on one host: "I give up `give` if I get `want`".
//!
//! Two offers match when each gives what the other wants, in at least the amount the other
//! wants: A(give g: ga, want w: wa) and B(give w: gb, want g: wb) with ga >= wb and gb >= wa.
//! The exchange moves exactly what each wants (wb of g to B, wa of w to A), so nobody gives
//! more than needed. It is a swap of entitlements for this round: no credits move. Each
//! workload joins at most one trade per round; offers are scanned in workload-id order, so the
//! matching is deterministic. A trade that would push anyone past a floor or ceiling is skipped.

use super::book::HostBook;
use std::collections::BTreeMap;
use truce_common::model::{Bid, BidId, Resource, WorkloadId};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TradeMatch {
    pub a: WorkloadId,
    pub a_bid: BidId,
    pub b: WorkloadId,
    pub b_bid: BidId,
    /// A gives `a_gives.1` of `a_gives.0` to B.
    pub a_gives: (Resource, u64),
    /// B gives `b_gives.1` of `b_gives.0` to A.
    pub b_gives: (Resource, u64),
}

/// Match trade offers and apply them to `entitlement` (per workload and resource).
pub fn match_trades(
    book: &HostBook,
    bids: &BTreeMap<WorkloadId, &Bid>,
    entitlement: &mut BTreeMap<(WorkloadId, Resource), u64>,
) -> Vec<TradeMatch> {
    let mut matched: Vec<TradeMatch> = Vec::new();
    let busy = |m: &[TradeMatch], w: WorkloadId| m.iter().any(|t| t.a == w || t.b == w);
    for (a, a_bid) in bids {
        for offer in &a_bid.trades {
            if busy(&matched, *a) {
                break;
            }
            let (g, w) = (offer.give, offer.want);
            if g == w || !book.capacity.contains_key(&g) || !book.capacity.contains_key(&w) {
                continue;
            }
            for (b, b_bid) in bids.range(..) {
                if b == a || busy(&matched, *b) {
                    continue;
                }
                let Some(counter) = b_bid.trades.iter().find(|o| {
                    o.give == w
                        && o.want == g
                        && offer.give_amount >= o.want_amount
                        && o.give_amount >= offer.want_amount
                }) else {
                    continue;
                };
                let (to_b, to_a) = (counter.want_amount, offer.want_amount);
                let e = |x: WorkloadId, r: Resource, ent: &BTreeMap<_, u64>| {
                    ent.get(&(x, r))
                        .copied()
                        .unwrap_or_else(|| book.bounds(x, r).entitlement)
                };
                let (ag, aw, bg, bw) = (
                    e(*a, g, entitlement),
                    e(*a, w, entitlement),
                    e(*b, g, entitlement),
                    e(*b, w, entitlement),
                );
                let fits = ag
                    .checked_sub(to_b)
                    .is_some_and(|v| v >= book.bounds(*a, g).floor)
                    && bw
                        .checked_sub(to_a)
                        .is_some_and(|v| v >= book.bounds(*b, w).floor)
                    && bg
                        .checked_add(to_b)
                        .is_some_and(|v| v <= book.bounds(*b, g).ceiling)
                    && aw
                        .checked_add(to_a)
                        .is_some_and(|v| v <= book.bounds(*a, w).ceiling);
                if !fits {
                    continue;
                }
                entitlement.insert((*a, g), ag - to_b);
                entitlement.insert((*b, g), bg + to_b);
                entitlement.insert((*b, w), bw - to_a);
                entitlement.insert((*a, w), aw + to_a);
                matched.push(TradeMatch {
                    a: *a,
                    a_bid: a_bid.id,
                    b: *b,
                    b_bid: b_bid.id,
                    a_gives: (g, to_b),
                    b_gives: (w, to_a),
                });
                break;
            }
        }
    }
    matched
}
