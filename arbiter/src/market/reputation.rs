//! Reputation seed rules, as ledger commands.
//!
//! Scores live in the ledger (0..=10 000, start 5 000). On a repaid loan the borrower gains
//! `repaid_base * 2^min(streak, streak_cap)` (its streak of repaid loans so far), capped at
//! `max_gain`, and extends its streak; every workload lender gains `lender_gain`. On a default
//! the borrower loses `default_penalty` and its streak; every workload lender loses
//! `lender_penalty` (it lent to someone who vanished: a little of that is on it).

use crate::ledger::{Command, LeaseEnd, LeaseRecord, Reputation, StreakUpdate, WorkloadKey};
use std::collections::BTreeMap;
use truce_common::model::Lender;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReputationRules {
    pub repaid_base: i64,
    pub streak_cap: u32,
    pub max_gain: i64,
    pub lender_gain: i64,
    pub default_penalty: i64,
    pub lender_penalty: i64,
    /// Only workloads at or above this may lend.
    pub lend_threshold: i64,
}

impl Default for ReputationRules {
    fn default() -> Self {
        ReputationRules {
            repaid_base: 20,
            streak_cap: 5,
            max_gain: 640,
            lender_gain: 20,
            default_penalty: 2_500,
            lender_penalty: 100,
            lend_threshold: 4_000,
        }
    }
}

impl ReputationRules {
    pub fn borrower_gain(&self, streak: u32) -> i64 {
        let doubling = streak.min(self.streak_cap).min(62);
        self.repaid_base
            .saturating_mul(1_i64 << doubling)
            .min(self.max_gain)
    }

    /// Commands for a loan that ended. `view` holds reputations as this round has already
    /// changed them, so two loans closing in one round compound correctly; it is updated.
    pub fn on_close(
        &self,
        lease: &LeaseRecord,
        end: LeaseEnd,
        view: &mut BTreeMap<WorkloadKey, Reputation>,
        current: impl Fn(&WorkloadKey) -> Reputation,
    ) -> Vec<Command> {
        if !lease.is_loan() {
            return Vec::new();
        }
        let t = &lease.terms;
        let holder = WorkloadKey::new(&t.host, t.holder);
        let mut out = Vec::new();
        let streak = view
            .get(&holder)
            .copied()
            .unwrap_or_else(|| current(&holder))
            .streak;
        let mut adjust =
            |who: WorkloadKey, delta: i64, streak: StreakUpdate, out: &mut Vec<Command>| {
                let rep = view.entry(who.clone()).or_insert_with(|| current(&who));
                rep.score = (rep.score + delta).clamp(0, crate::ledger::REPUTATION_MAX);
                rep.streak = match streak {
                    StreakUpdate::Keep => rep.streak,
                    StreakUpdate::Extend => rep.streak.saturating_add(1),
                    StreakUpdate::Reset => 0,
                };
                out.push(Command::AdjustReputation { who, delta, streak });
            };
        match end {
            LeaseEnd::Repaid => adjust(
                holder,
                self.borrower_gain(streak),
                StreakUpdate::Extend,
                &mut out,
            ),
            LeaseEnd::Defaulted => {
                adjust(holder, -self.default_penalty, StreakUpdate::Reset, &mut out)
            }
        }
        for share in &t.shares {
            if let Lender::Workload(w) = share.lender {
                let delta = match end {
                    LeaseEnd::Repaid => self.lender_gain,
                    LeaseEnd::Defaulted => -self.lender_penalty,
                };
                adjust(
                    WorkloadKey::new(&t.host, w),
                    delta,
                    StreakUpdate::Keep,
                    &mut out,
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaks_grow_gains_exponentially_up_to_the_cap() {
        let r = ReputationRules::default();
        let gains: Vec<i64> = (0..8).map(|s| r.borrower_gain(s)).collect();
        assert_eq!(gains, vec![20, 40, 80, 160, 320, 640, 640, 640]);
        assert!(
            r.default_penalty > 10 * r.lender_penalty,
            "a default costs the borrower a lot, the lender a little"
        );
    }
}
