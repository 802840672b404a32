//! Bid intake: which bids count this round, and what each workload wants per resource.

use super::book::HostBook;
use super::setting::enforceable;
use std::collections::BTreeMap;
use truce_common::model::{Bid, BidId, Reason, Resource, Timestamp, WorkloadId};

pub(crate) fn reason(code: &str, detail: String) -> Reason {
    Reason {
        code: code.to_string(),
        detail,
    }
}

/// One bid per present workload (the newest), and the reasons others were set aside.
pub(crate) fn accept_bids<'b>(
    book: &HostBook,
    bids: &'b [Bid],
    now: Timestamp,
    max_age_ms: u64,
) -> (BTreeMap<WorkloadId, &'b Bid>, Vec<(BidId, Reason)>) {
    let mut accepted: BTreeMap<WorkloadId, &Bid> = BTreeMap::new();
    let mut rejected = Vec::new();
    for bid in bids {
        let w = bid.workload.id;
        if !book.workloads.contains_key(&w) {
            rejected.push((
                bid.id,
                reason(
                    "unknown_workload",
                    format!("{w} is not a workload of host {}", book.host),
                ),
            ));
            continue;
        }
        if now.ms_since(bid.at) > max_age_ms || bid.at.ms_since(now) > max_age_ms {
            rejected.push((
                bid.id,
                reason(
                    "stale_bid",
                    format!("bid at {} ms is too far from now {} ms", bid.at.0, now.0),
                ),
            ));
            continue;
        }
        for ask in &bid.asks {
            if !enforceable(ask.resource) || !book.capacity.contains_key(&ask.resource) {
                rejected.push((
                    bid.id,
                    reason(
                        "ask_ignored",
                        format!("{} is not traded on this host", ask.resource),
                    ),
                ));
            }
        }
        match accepted.get(&w) {
            Some(prev) if (prev.at, prev.id) >= (bid.at, bid.id) => {
                rejected.push((
                    bid.id,
                    reason(
                        "superseded",
                        format!("{w} sent a newer bid ({:?})", prev.id),
                    ),
                ));
            }
            Some(prev) => {
                rejected.push((
                    prev.id,
                    reason("superseded", format!("{w} sent a newer bid ({:?})", bid.id)),
                ));
                accepted.insert(w, bid);
            }
            None => {
                accepted.insert(w, bid);
            }
        }
    }
    (accepted, rejected)
}

/// What one bid asks for one resource: total amount and the lowest of its max prices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Want {
    pub amount: u64,
    pub max_price: f64,
}

pub(crate) fn want(bid: &Bid, r: Resource) -> Option<Want> {
    let mut out: Option<Want> = None;
    for a in bid.asks.iter().filter(|a| a.resource == r && a.amount > 0) {
        let price = if a.max_price.is_finite() {
            a.max_price.max(0.0)
        } else {
            0.0
        };
        out = Some(match out {
            None => Want {
                amount: a.amount,
                max_price: price,
            },
            Some(w) => Want {
                amount: w.amount.saturating_add(a.amount),
                max_price: w.max_price.min(price),
            },
        });
    }
    out
}

/// What one bid offers to release of one resource: total amount and the highest min price.
pub(crate) fn release(bid: &Bid, r: Resource) -> Option<Want> {
    let mut out: Option<Want> = None;
    for a in bid
        .releases
        .iter()
        .filter(|a| a.resource == r && a.amount > 0)
    {
        let price = if a.min_price.is_finite() {
            a.min_price.max(0.0)
        } else {
            0.0
        };
        out = Some(match out {
            None => Want {
                amount: a.amount,
                max_price: price,
            },
            Some(w) => Want {
                amount: w.amount.saturating_add(a.amount),
                max_price: w.max_price.max(price),
            },
        });
    }
    out
}
