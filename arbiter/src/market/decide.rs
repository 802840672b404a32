//! From plans to decisions and lease commands, each traceable to the bids behind it.

use super::book::HostBook;
use super::intake::reason;
use super::lending::Plan;
use super::setting::{CpuCut, setting_with};
use super::trades::TradeMatch;
use crate::ledger::{Command, LeaseRecord, LeaseTerms};
use std::collections::BTreeMap;
use truce_common::model::{
    Bid, BidId, Decision, DecisionId, LeaseId, Lender, Reason, Resource, Timestamp, WorkloadId,
};

pub(crate) struct DecisionInput<'a> {
    pub book: &'a HostBook,
    pub bids: &'a BTreeMap<WorkloadId, &'a Bid>,
    pub plans: &'a BTreeMap<Resource, Vec<Plan>>,
    pub active: &'a BTreeMap<(WorkloadId, Resource), &'a LeaseRecord>,
    pub trades: &'a [TradeMatch],
    pub round: u64,
    pub now: Timestamp,
    pub next_lease: LeaseId,
    pub cpu_period_us: u64,
    pub cpu_cut: CpuCut,
    pub boost: &'a dyn Fn(WorkloadId) -> f64,
}

pub(crate) struct Decided {
    pub decisions: Vec<Decision>,
    pub commands: Vec<Command>,
}

/// Decision ids are unique per host: the round in the high bits, a sequence in the low 20.
fn decision_id(round: u64, seq: u64) -> DecisionId {
    DecisionId(round << 20 | (seq & 0xF_FFFF))
}

pub(crate) fn build_decisions(input: &DecisionInput<'_>) -> Decided {
    let mut next = input.next_lease.0;
    let mut decisions = Vec::new();
    let mut renews = Vec::new();
    let mut opens = Vec::new();
    for (r, plans) in input.plans {
        let borrowers: Vec<BidId> = plans
            .iter()
            .filter(|p| !p.shares.is_empty())
            .filter_map(|p| input.bids.get(&p.workload).map(|b| b.id))
            .collect();
        for plan in plans {
            let w = plan.workload;
            let Some(spec) = input.book.workloads.get(&w) else {
                continue;
            };
            let entitlement = input.book.bounds(w, *r).entitlement;
            let Some(setting) = setting_with(*r, plan.amount, entitlement, input.book.usage(w, *r), input.cpu_period_us, input.cpu_cut)
            else {
                continue;
            };
            let mut reasons = Vec::new();
            let terms = match (plan.renew, input.active.get(&(w, *r))) {
                (Some(id), Some(rec)) if rec.terms.id == id => {
                    let mut terms = rec.terms.clone();
                    if plan.expiry > terms.expiry {
                        renews.push(Command::RenewLease {
                            id,
                            expiry: plan.expiry,
                        });
                        terms.expiry = plan.expiry;
                    }
                    reasons.push(reason(
                        "renewed",
                        format!("{w} keeps {} of {r} under lease {}", plan.amount, id.0),
                    ));
                    terms
                }
                _ => {
                    let id = LeaseId(next);
                    next += 1;
                    let terms = LeaseTerms {
                        id,
                        host: input.book.host.clone(),
                        holder: w,
                        resource: *r,
                        amount: plan.amount,
                        shares: plan.shares.clone(),
                        start: input.now,
                        expiry: plan.expiry,
                    };
                    opens.push(Command::OpenLease {
                        terms: terms.clone(),
                    });
                    terms
                }
            };
            let trade = input
                .trades
                .iter()
                .find(|t| (t.a == w || t.b == w) && (t.a_gives.0 == *r || t.b_gives.0 == *r));
            let mut caused_by: Vec<BidId> = input.bids.get(&w).map(|b| b.id).into_iter().collect();
            let mut lender = Lender::Pool;
            if !terms.shares.is_empty() {
                let borrowed: u64 = terms.shares.iter().map(|s| s.units).sum();
                reasons.push(reason(
                    "loan",
                    format!("{w} borrows {borrowed} of {r} above its entitlement {entitlement}"),
                ));
                for s in &terms.shares {
                    if let Lender::Workload(l) = s.lender {
                        caused_by.extend(input.bids.get(&l).map(|b| b.id));
                    }
                }
                if let [one] = terms.shares.as_slice() {
                    lender = one.lender.clone();
                }
            } else if let Some(t) = trade {
                let other = if t.a == w {
                    (t.b, t.b_bid)
                } else {
                    (t.a, t.a_bid)
                };
                lender = Lender::Workload(other.0);
                caused_by.push(other.1);
                reasons.push(reason(
                    "trade",
                    format!("{w} traded with {} on {r}", other.0),
                ));
            } else if plan.amount < entitlement {
                caused_by.extend(borrowers.iter().copied());
                let code = if input
                    .bids
                    .get(&w)
                    .is_some_and(|b| b.releases.iter().any(|x| x.resource == *r))
                {
                    "lent"
                } else {
                    "limited"
                };
                reasons.push(reason(
                    code,
                    format!(
                        "{w} holds {} of {r}, below its entitlement {entitlement}",
                        plan.amount
                    ),
                ));
            } else {
                reasons.push(reason(
                    "raised",
                    format!(
                        "{w} holds {} of {r}, above its entitlement {entitlement}",
                        plan.amount
                    ),
                ));
            }
            let boost = (input.boost)(w);
            if boost > 1.0 {
                reasons.push(reason(
                    "slo_boost",
                    format!("{w} breached its SLO; utility x{boost:.2}"),
                ));
            }
            if let Some(b) = input.bids.get(&w) {
                reasons.extend(b.reasons.iter().cloned());
            }
            caused_by.sort();
            caused_by.dedup();
            let mut lease = LeaseRecord {
                terms,
                escrow: Vec::new(),
            }
            .to_model();
            lease.lender = lender;
            decisions.push(Decision {
                id: decision_id(input.round, decisions.len() as u64),
                round: input.round,
                workload: spec.workload.clone(),
                lease,
                setting,
                caused_by,
                reasons: reasons.into_iter().collect::<Vec<Reason>>(),
            });
        }
    }
    let mut commands = renews;
    commands.extend(opens);
    Decided {
        decisions,
        commands,
    }
}
