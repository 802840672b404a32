//! Leases in the ledger: escrow on open and renew, settlement on close.
//!
//! The holder pays a loan's whole term up front into escrow, so a borrower that vanishes
//! cannot leave its lenders unpaid. Closing settles the escrow: lenders get the share for
//! the time used (all of it on a default), the holder gets the rest back.

use super::command::{AccountId, Command, LeaseEnd, LeaseTerms, Outcome, Price};
use super::error::LedgerError;
use super::state::LedgerState;
use serde::{Deserialize, Serialize};
use truce_common::model::{Credits, Lease, LeaseId, Lender, Timestamp};

/// Where a lease's escrow goes when it closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub to_lenders: Vec<(Lender, i64)>,
    pub refund: i64,
}

/// An open lease with the escrow held for each of its loan shares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub terms: LeaseTerms,
    /// Micro-credits held for `terms.shares[i]`.
    pub escrow: Vec<i64>,
}

impl LeaseRecord {
    pub fn escrow_total(&self) -> i64 {
        self.escrow.iter().sum()
    }

    /// A loan has lenders to pay; a limit lease (a cut or a trade) has none.
    pub fn is_loan(&self) -> bool {
        !self.terms.shares.is_empty()
    }

    /// How closing at `at` splits the escrow (the ledger applies exactly this).
    pub fn settle(&self, at: Timestamp, end: LeaseEnd) -> Settlement {
        let t = &self.terms;
        let term = t.expiry.ms_since(t.start).max(1) as i128;
        let used = at.clamp(t.start, t.expiry).ms_since(t.start) as i128;
        let to_lenders: Vec<(Lender, i64)> = t
            .shares
            .iter()
            .zip(&self.escrow)
            .map(|(share, escrow)| {
                let paid = match end {
                    // used <= term, so the quotient is at most the escrow and fits an i64.
                    LeaseEnd::Repaid => (*escrow as i128 * used / term) as i64,
                    LeaseEnd::Defaulted => *escrow,
                };
                (share.lender.clone(), paid)
            })
            .collect();
        let paid: i64 = to_lenders.iter().map(|(_, p)| p).sum();
        Settlement {
            to_lenders,
            refund: self.escrow_total() - paid,
        }
    }

    pub fn borrowed(&self) -> u64 {
        self.terms.shares.iter().map(|s| s.units).sum()
    }

    /// The lease as the wire model carries it. A loan from one lender names it; a loan from
    /// several is shown as the pool's, at the unit-weighted mean price.
    pub fn to_model(&self) -> Lease {
        let t = &self.terms;
        let lender = match t.shares.as_slice() {
            [one] => one.lender.clone(),
            _ => Lender::Pool,
        };
        let units: u128 = t.shares.iter().map(|s| s.units as u128).sum();
        let weighted: u128 = t
            .shares
            .iter()
            .map(|s| s.units as u128 * s.price.0.max(0) as u128)
            .sum();
        let price = Price(
            weighted
                .checked_div(units)
                .map_or(0, |p| p.min(i64::MAX as u128) as i64),
        );
        Lease {
            id: t.id,
            holder: t.holder,
            lender,
            resource: t.resource,
            amount: t.amount,
            price: price.as_credits(),
            start: t.start,
            expiry: t.expiry,
        }
    }
}

fn cost_i64(price: Price, units: u64, ms: u64) -> Result<i64, LedgerError> {
    i64::try_from(price.cost(units, ms)).map_err(|_| LedgerError::Overflow { what: "lease cost" })
}

impl LedgerState {
    pub(crate) fn open_lease(&mut self, t: &LeaseTerms) -> Result<Outcome, LedgerError> {
        let bad = |why| Err(LedgerError::BadLeaseTerms { id: t.id, why });
        if t.id.0 < self.next_lease
            || self.leases.contains_key(&t.id)
            || self.closed.contains_key(&t.id)
        {
            return Err(LedgerError::DuplicateLease { id: t.id });
        }
        if t.expiry <= t.start {
            return bad("expiry is not after start");
        }
        let mut borrowed: u64 = 0;
        for s in &t.shares {
            if s.units == 0 {
                return bad("a loan share has no units");
            }
            if s.price.0 <= 0 {
                return bad("a loan share has no price");
            }
            if s.lender == Lender::Workload(t.holder) {
                return bad("the holder lends to itself");
            }
            borrowed = borrowed.checked_add(s.units).ok_or(LedgerError::Overflow {
                what: "borrowed units",
            })?;
        }
        if borrowed > t.amount {
            return bad("borrowed units exceed the leased amount");
        }
        let term = t.expiry.ms_since(t.start);
        let escrow = t
            .shares
            .iter()
            .map(|s| cost_i64(s.price, s.units, term))
            .collect::<Result<Vec<_>, _>>()?;
        let total = escrow.iter().try_fold(0i64, |a, e| a.checked_add(*e));
        let total = total.ok_or(LedgerError::Overflow { what: "escrow" })?;
        let holder = AccountId::Workload(super::command::WorkloadKey::new(&t.host, t.holder));
        if total > 0 {
            self.debit(&holder, total)?;
        }
        self.next_lease = t.id.0.saturating_add(1);
        self.by_host.entry(t.host.clone()).or_default().insert(t.id);
        self.leases.insert(
            t.id,
            LeaseRecord {
                terms: t.clone(),
                escrow,
            },
        );
        Ok(Outcome::LeaseOpened {
            id: t.id,
            escrow: Credits(total),
        })
    }

    pub(crate) fn renew_lease(
        &mut self,
        id: LeaseId,
        expiry: Timestamp,
    ) -> Result<Outcome, LedgerError> {
        let rec = self
            .leases
            .get(&id)
            .ok_or(LedgerError::UnknownLease { id })?;
        if expiry <= rec.terms.expiry {
            return Err(LedgerError::RenewDoesNotExtend {
                id,
                current: rec.terms.expiry,
                expiry,
            });
        }
        let extra_ms = expiry.ms_since(rec.terms.expiry);
        let top_ups = rec
            .terms
            .shares
            .iter()
            .map(|s| cost_i64(s.price, s.units, extra_ms))
            .collect::<Result<Vec<_>, _>>()?;
        let total = top_ups.iter().try_fold(0i64, |a, e| a.checked_add(*e));
        let total = total.ok_or(LedgerError::Overflow {
            what: "escrow top-up",
        })?;
        let holder = AccountId::Workload(super::command::WorkloadKey::new(
            &rec.terms.host,
            rec.terms.holder,
        ));
        if total > 0 {
            self.debit(&holder, total)?;
        }
        if let Some(rec) = self.leases.get_mut(&id) {
            rec.terms.expiry = expiry;
            for (e, t) in rec.escrow.iter_mut().zip(&top_ups) {
                *e += t;
            }
        }
        Ok(Outcome::LeaseRenewed {
            id,
            top_up: Credits(total),
        })
    }

    pub(crate) fn close_lease(
        &mut self,
        id: LeaseId,
        at: Timestamp,
        end: LeaseEnd,
    ) -> Result<Outcome, LedgerError> {
        let rec = self
            .leases
            .remove(&id)
            .ok_or(LedgerError::UnknownLease { id })?;
        let t = &rec.terms;
        let settlement = rec.settle(at, end);
        let mut paid: i64 = 0;
        for (lender, to_lender) in &settlement.to_lenders {
            if *to_lender > 0 {
                self.credit(&AccountId::of_lender(&t.host, lender), *to_lender);
            }
            paid += to_lender;
        }
        let refunded = settlement.refund;
        if refunded > 0 {
            self.credit(
                &AccountId::Workload(super::command::WorkloadKey::new(&t.host, t.holder)),
                refunded,
            );
        }
        if let Some(set) = self.by_host.get_mut(&t.host) {
            set.remove(&id);
            if set.is_empty() {
                self.by_host.remove(&t.host);
            }
        }
        self.closed.insert(id, end);
        Ok(Outcome::LeaseClosed {
            id,
            paid: Credits(paid),
            refunded: Credits(refunded),
        })
    }
}

/// Convenience for tests and the market: the command that closes `rec` at `at`.
pub fn close(rec: &LeaseRecord, at: Timestamp, end: LeaseEnd) -> Command {
    Command::CloseLease {
        id: rec.terms.id,
        at,
        end,
    }
}
