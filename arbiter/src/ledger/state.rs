//! The ledger's state machine: balances, income, leases, reputation and prices.
//!
//! Determinism: every collection is a BTreeMap (iteration order is the key order, never a hash
//! seed), balances and prices are integers, and no command reads a clock. `apply` either
//! succeeds or returns an error with the state untouched, so replicas that apply the same
//! log agree byte for byte.

use super::command::{AccountId, Command, Outcome, Price, StreakUpdate, WorkloadKey};
use super::error::LedgerError;
use super::lease::LeaseRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use truce_common::model::{Credits, HostId, LeaseId, Resource, Timestamp};

/// Reputation is an integer score in 0..=REPUTATION_MAX (think hundredths of a percent).
pub const REPUTATION_MAX: i64 = 10_000;
/// Where a workload the ledger has not seen starts.
pub const REPUTATION_START: i64 = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reputation {
    pub score: i64,
    /// Loans repaid in a row (as borrower); reset by a default.
    pub streak: u32,
}

impl Default for Reputation {
    fn default() -> Self {
        Reputation {
            score: REPUTATION_START,
            streak: 0,
        }
    }
}

/// A configured income: `per_second` micro-credits, accrued up to `last`. `carry` keeps the
/// sub-micro-credit remainder (in micro-credit-milliseconds) so accruing in small steps mints
/// exactly what one big step would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomeSchedule {
    pub per_second: i64,
    pub last: Timestamp,
    pub carry: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    /// Commands applied so far (the log index of the last one).
    pub(crate) applied: u64,
    /// Credits ever minted by income; conservation says balances + escrow equal this.
    pub(crate) minted: i64,
    pub(crate) accounts: BTreeMap<AccountId, i64>,
    pub(crate) income: BTreeMap<WorkloadKey, IncomeSchedule>,
    pub(crate) leases: BTreeMap<LeaseId, LeaseRecord>,
    /// Open leases per host, so a market round reads only its own.
    pub(crate) by_host: BTreeMap<HostId, BTreeSet<LeaseId>>,
    /// How each closed lease ended (kept for audit and for `explain`).
    pub(crate) closed: BTreeMap<LeaseId, super::command::LeaseEnd>,
    pub(crate) reputation: BTreeMap<WorkloadKey, Reputation>,
    pub(crate) prices: BTreeMap<(HostId, Resource), Price>,
    pub(crate) next_lease: u64,
}

/// Conservation broken: balances plus escrow differ from what income minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credits not conserved: minted {minted} but balances {balances} + escrow {escrow}")]
pub struct ConservationError {
    pub minted: i64,
    pub balances: i64,
    pub escrow: i64,
}

impl LedgerState {
    pub fn new() -> LedgerState {
        LedgerState {
            next_lease: 1,
            ..LedgerState::default()
        }
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }
    pub fn minted(&self) -> Credits {
        Credits(self.minted)
    }
    pub fn balance(&self, account: &AccountId) -> Credits {
        Credits(self.accounts.get(account).copied().unwrap_or(0))
    }
    pub fn accounts(&self) -> impl Iterator<Item = (&AccountId, Credits)> {
        self.accounts.iter().map(|(a, b)| (a, Credits(*b)))
    }
    pub fn reputation(&self, who: &WorkloadKey) -> Reputation {
        self.reputation.get(who).copied().unwrap_or_default()
    }
    pub fn price(&self, host: &HostId, resource: Resource) -> Option<Price> {
        self.prices.get(&(host.clone(), resource)).copied()
    }
    pub fn lease(&self, id: LeaseId) -> Option<&LeaseRecord> {
        self.leases.get(&id)
    }
    pub fn closed_lease(&self, id: LeaseId) -> Option<super::command::LeaseEnd> {
        self.closed.get(&id).copied()
    }
    /// Open leases on one host, in id order.
    pub fn leases_on(&self, host: &HostId) -> impl Iterator<Item = &LeaseRecord> {
        self.by_host
            .get(host)
            .into_iter()
            .flatten()
            .filter_map(|id| self.leases.get(id))
    }
    pub fn open_leases(&self) -> impl Iterator<Item = &LeaseRecord> {
        self.leases.values()
    }
    /// The first lease id the market may hand out.
    pub fn next_lease_id(&self) -> LeaseId {
        LeaseId(self.next_lease)
    }
    pub fn income(&self, who: &WorkloadKey) -> Option<IncomeSchedule> {
        self.income.get(who).copied()
    }

    /// Micro-credits `Accrue { now }` would mint for `who` (0 without a schedule or if `now` is earlier).
    pub fn accrual_due(&self, who: &WorkloadKey, now: Timestamp) -> i64 {
        match self.income.get(who) {
            Some(s) if now >= s.last => accrual(s, now).map(|(m, _)| m).unwrap_or(0),
            _ => 0,
        }
    }

    pub fn total_escrow(&self) -> i64 {
        self.leases.values().map(LeaseRecord::escrow_total).sum()
    }

    /// Invariant 2 of DESIGN.md: only income mints, everything else moves.
    pub fn check_conservation(&self) -> Result<(), ConservationError> {
        let balances: i64 = self.accounts.values().sum();
        let escrow = self.total_escrow();
        if balances.checked_add(escrow) == Some(self.minted) {
            Ok(())
        } else {
            Err(ConservationError {
                minted: self.minted,
                balances,
                escrow,
            })
        }
    }

    /// Apply one command. On error nothing changed.
    pub fn apply(&mut self, cmd: &Command) -> Result<Outcome, LedgerError> {
        let outcome = match cmd {
            Command::SetIncome {
                who,
                per_second,
                at,
            } => self.set_income(who, *per_second, *at)?,
            Command::Accrue { host, now } => self.accrue(host, *now)?,
            Command::Charge { from, amount } => {
                let from = AccountId::Workload(from.clone());
                let to = AccountId::Pool(match &from {
                    AccountId::Workload(k) => k.host.clone(),
                    AccountId::Pool(h) => h.clone(),
                });
                self.transfer(&from, &to, *amount)?
            }
            Command::Transfer { from, to, amount } => self.transfer(from, to, *amount)?,
            Command::OpenLease { terms } => self.open_lease(terms)?,
            Command::RenewLease { id, expiry } => self.renew_lease(*id, *expiry)?,
            Command::CloseLease { id, at, end } => self.close_lease(*id, *at, *end)?,
            Command::AdjustReputation { who, delta, streak } => {
                let rep = self.reputation.entry(who.clone()).or_default();
                rep.score = rep.score.saturating_add(*delta).clamp(0, REPUTATION_MAX);
                rep.streak = match streak {
                    StreakUpdate::Keep => rep.streak,
                    StreakUpdate::Extend => rep.streak.saturating_add(1),
                    StreakUpdate::Reset => 0,
                };
                Outcome::Done
            }
            Command::SetPrice {
                host,
                resource,
                price,
            } => {
                if price.0 <= 0 {
                    return Err(LedgerError::NonPositivePrice { price: price.0 });
                }
                self.prices.insert((host.clone(), *resource), *price);
                Outcome::Done
            }
        };
        self.applied += 1;
        Ok(outcome)
    }

    fn set_income(
        &mut self,
        who: &WorkloadKey,
        per_second: Credits,
        at: Timestamp,
    ) -> Result<Outcome, LedgerError> {
        if per_second.0 < 0 {
            return Err(LedgerError::NegativeIncome { per_second });
        }
        let mut minted = 0;
        let mut schedule = IncomeSchedule {
            per_second: per_second.0,
            last: at,
            carry: 0,
        };
        if let Some(old) = self.income.get(who).copied() {
            if at < old.last {
                return Err(LedgerError::ClockWentBack {
                    host: who.host.clone(),
                    last: old.last,
                    now: at,
                });
            }
            let (m, carry) = accrual(&old, at)?;
            minted = m;
            schedule.carry = carry;
        }
        self.mint(who, minted)?;
        self.income.insert(who.clone(), schedule);
        Ok(Outcome::Minted {
            total: Credits(minted),
        })
    }

    fn accrue(&mut self, host: &HostId, now: Timestamp) -> Result<Outcome, LedgerError> {
        // Compute everything first so an error (clock, overflow) leaves the state untouched.
        let mut plan = Vec::new();
        for (who, s) in self.income.range(host_range(host)) {
            if now < s.last {
                return Err(LedgerError::ClockWentBack {
                    host: host.clone(),
                    last: s.last,
                    now,
                });
            }
            let (minted, carry) = accrual(s, now)?;
            plan.push((who.clone(), minted, carry));
        }
        let mut total: i64 = 0;
        for (_, m, _) in &plan {
            total = total.checked_add(*m).ok_or(LedgerError::Overflow {
                what: "minted income",
            })?;
        }
        self.minted
            .checked_add(total)
            .ok_or(LedgerError::Overflow {
                what: "total minted",
            })?;
        for (who, minted, carry) in plan {
            self.mint(&who, minted)?;
            if let Some(s) = self.income.get_mut(&who) {
                s.last = now;
                s.carry = carry;
            }
        }
        Ok(Outcome::Minted {
            total: Credits(total),
        })
    }

    fn mint(&mut self, who: &WorkloadKey, amount: i64) -> Result<(), LedgerError> {
        let minted = self
            .minted
            .checked_add(amount)
            .ok_or(LedgerError::Overflow {
                what: "total minted",
            })?;
        let acct = AccountId::Workload(who.clone());
        let bal = self.accounts.get(&acct).copied().unwrap_or(0);
        let bal = bal
            .checked_add(amount)
            .ok_or(LedgerError::Overflow { what: "balance" })?;
        self.minted = minted;
        if bal != 0 || self.accounts.contains_key(&acct) {
            self.accounts.insert(acct, bal);
        }
        Ok(())
    }

    pub(crate) fn transfer(
        &mut self,
        from: &AccountId,
        to: &AccountId,
        amount: Credits,
    ) -> Result<Outcome, LedgerError> {
        if amount.0 <= 0 {
            return Err(LedgerError::NonPositiveAmount { amount });
        }
        if from == to {
            return Err(LedgerError::SameAccount {
                account: from.clone(),
            });
        }
        self.debit(from, amount.0)?;
        self.credit(to, amount.0);
        Ok(Outcome::Done)
    }

    /// Take `amount` from an account or fail without touching it.
    pub(crate) fn debit(&mut self, from: &AccountId, amount: i64) -> Result<(), LedgerError> {
        let bal = self.accounts.get(from).copied().unwrap_or(0);
        if bal < amount {
            return Err(LedgerError::Overdraw {
                account: from.clone(),
                balance: Credits(bal),
                needed: Credits(amount),
            });
        }
        self.accounts.insert(from.clone(), bal - amount);
        Ok(())
    }

    /// Credits already exist (they were debited or held in escrow), so the sum fits: it is at
    /// most `minted`, which is an i64.
    pub(crate) fn credit(&mut self, to: &AccountId, amount: i64) {
        *self.accounts.entry(to.clone()).or_insert(0) += amount;
    }
}

/// Income owed from `s.last` to `now`, with the remainder carried.
fn accrual(s: &IncomeSchedule, now: Timestamp) -> Result<(i64, i64), LedgerError> {
    let ms = now.ms_since(s.last) as i128;
    let owed = (s.per_second as i128) * ms + s.carry as i128;
    let minted = i64::try_from(owed / 1000).map_err(|_| LedgerError::Overflow {
        what: "accrued income",
    })?;
    Ok((minted, (owed % 1000) as i64))
}

/// All income keys of one host (WorkloadKey orders by host first).
fn host_range(host: &HostId) -> std::ops::RangeInclusive<WorkloadKey> {
    use truce_common::model::WorkloadId;
    WorkloadKey::new(host, WorkloadId(0))..=WorkloadKey::new(host, WorkloadId(u64::MAX))
}
