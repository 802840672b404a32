//! Rule-by-rule tests of the round with simulated time and an in-memory ledger.

use super::*;
use crate::ledger::{
    AccountId, Command, LeaseEnd, LedgerState, Price, REPUTATION_START, StreakUpdate, WorkloadKey,
};
use std::collections::BTreeMap;
use truce_common::model::*;

const V: WorkloadId = WorkloadId(1);
const A: WorkloadId = WorkloadId(2);
const L: WorkloadId = WorkloadId(3);
const DISK: DeviceId = DeviceId { major: 8, minor: 0 };
const T0: Timestamp = Timestamp(1_000_000);

fn host() -> HostId {
    HostId("h".into())
}

fn book() -> HostBook {
    let capacity = BTreeMap::from([(Resource::Cpu, 4000), (Resource::Io { dev: DISK }, 1000)]);
    let mut b = HostBook::new(host(), capacity);
    for w in [V, A, L] {
        let bounds = BTreeMap::from([
            (
                Resource::Cpu,
                Bounds {
                    floor: 300,
                    entitlement: 1200,
                    ceiling: 3000,
                },
            ),
            (
                Resource::Io { dev: DISK },
                Bounds {
                    floor: 50,
                    entitlement: 300,
                    ceiling: 800,
                },
            ),
        ]);
        let workload = WorkloadRef {
            id: w,
            path: format!("/w{}", w.0),
        };
        b.workloads.insert(
            w,
            WorkloadSpec {
                workload,
                weight: 100,
                priority: 1,
                bounds,
            },
        );
    }
    b
}

fn ledger() -> LedgerState {
    let mut s = LedgerState::new();
    for w in [V, A, L] {
        let who = WorkloadKey::new(&host(), w);
        s.apply(&Command::SetIncome {
            who,
            per_second: Credits::from_credits(1.0),
            at: Timestamp(0),
        })
        .ok();
    }
    s.apply(&Command::Accrue {
        host: host(),
        now: Timestamp(100_000),
    })
    .ok();
    s
}

fn bid(w: WorkloadId, id: u64, at: Timestamp) -> Bid {
    Bid {
        id: BidId(id),
        workload: WorkloadRef {
            id: w,
            path: format!("/w{}", w.0),
        },
        at,
        asks: vec![],
        releases: vec![],
        trades: vec![],
        willingness_to_pay: Credits::from_credits(50.0),
        priority: 1,
        slo_breach: false,
        lease_ms: 10_000,
        reasons: vec![Reason {
            code: "test".into(),
            detail: format!("bid {id}"),
        }],
    }
}

fn asking(w: WorkloadId, id: u64, at: Timestamp, amount: u64) -> Bid {
    let mut b = bid(w, id, at);
    b.asks.push(Ask {
        resource: Resource::Cpu,
        amount,
        max_price: 0.01,
    });
    b
}

fn releasing(w: WorkloadId, id: u64, at: Timestamp, amount: u64) -> Bid {
    let mut b = bid(w, id, at);
    b.releases.push(Release {
        resource: Resource::Cpu,
        amount,
        min_price: 0.0,
    });
    b
}

/// Resolve and apply every command; each must succeed and conserve credits.
fn round(
    book: &mut HostBook,
    ledger: &mut LedgerState,
    bids: &[Bid],
    now: Timestamp,
) -> RoundOutcome {
    let out = match Market::default().resolve(book, bids, ledger, now) {
        Ok(o) => o,
        Err(e) => panic!("resolve failed: {e:?}"),
    };
    for c in &out.commands {
        if let Err(e) = ledger.apply(c) {
            panic!("command {c:?} refused: {e}");
        }
    }
    assert_eq!(ledger.check_conservation(), Ok(()));
    book.advance(&out);
    out
}

fn decision(out: &RoundOutcome, w: WorkloadId, r: Resource) -> &Decision {
    match out
        .decisions
        .iter()
        .find(|d| d.workload.id == w && d.lease.resource == r)
    {
        Some(d) => d,
        None => panic!("no decision for {w} {r}: {:#?}", out.decisions),
    }
}

fn rep(ledger: &LedgerState, w: WorkloadId) -> i64 {
    ledger.reputation(&WorkloadKey::new(&host(), w)).score
}

#[test]
fn asker_borrows_from_the_pool_and_the_others_are_limited_for_it() {
    let (mut b, mut l) = (book(), ledger());
    let out = round(&mut b, &mut l, &[asking(V, 1, T0, 1000)], T0);
    let v = decision(&out, V, Resource::Cpu);
    assert!(
        matches!(v.setting, Setting::CpuWeight { weight } if weight > 100),
        "{:?}",
        v.setting
    );
    assert_eq!(v.lease.lender, Lender::Pool);
    assert!(v.lease.amount > 1200 && v.lease.price > 0.0);
    assert_eq!(v.lease.expiry, T0.plus_ms(10_000));
    assert!(
        v.reasons.iter().any(|r| r.code == "loan") && v.reasons.iter().any(|r| r.code == "test")
    );
    let a = decision(&out, A, Resource::Cpu);
    assert!(
        matches!(a.setting, Setting::CpuMax { millicores, .. } if (300..1200).contains(&millicores))
    );
    assert_eq!(
        a.caused_by,
        vec![BidId(1)],
        "the cut traces to the asker's bid"
    );
    let total: u64 = [V, A, L]
        .iter()
        .map(|w| out.allocation[&(*w, Resource::Cpu)])
        .sum();
    assert!(total <= 4000, "capacity holds: {total}");
    // Fairness keeps the others well above their floors (t* = 3100/3700 of demand above floor).
    assert!(
        out.allocation[&(A, Resource::Cpu)] >= 300 + 750,
        "{:?}",
        out.allocation
    );
    let escrow = l.total_escrow();
    let balance = |w| {
        l.balance(&AccountId::Workload(WorkloadKey::new(&host(), w)))
            .0
    };
    assert!(escrow > 0);
    assert_eq!(
        balance(V) + escrow,
        balance(A),
        "the borrower paid exactly the escrow"
    );
}

#[test]
fn reputable_lender_lends_and_an_unreputable_one_does_not() {
    let (mut b, mut l) = (book(), ledger());
    let out = round(
        &mut b,
        &mut l,
        &[asking(V, 1, T0, 1000), releasing(L, 2, T0, 600)],
        T0,
    );
    let v = decision(&out, V, Resource::Cpu);
    let rec = l
        .lease(v.lease.id)
        .map(|r| r.terms.shares.clone())
        .unwrap_or_default();
    assert_eq!(
        rec.first().map(|s| s.lender.clone()),
        Some(Lender::Workload(L)),
        "{rec:?}"
    );
    assert!(
        decision(&out, L, Resource::Cpu)
            .reasons
            .iter()
            .any(|r| r.code == "lent")
    );
    assert!(
        v.caused_by.contains(&BidId(2)),
        "the loan traces to the lender's bid"
    );

    let (mut b, mut l) = (book(), ledger());
    l.apply(&Command::AdjustReputation {
        who: WorkloadKey::new(&host(), L),
        delta: -2000,
        streak: StreakUpdate::Keep,
    })
    .ok();
    let out = round(
        &mut b,
        &mut l,
        &[asking(V, 1, T0, 1000), releasing(L, 2, T0, 600)],
        T0,
    );
    let v = decision(&out, V, Resource::Cpu);
    let shares = l
        .lease(v.lease.id)
        .map(|r| r.terms.shares.clone())
        .unwrap_or_default();
    assert!(
        shares.iter().all(|s| s.lender == Lender::Pool),
        "{shares:?}"
    );
}

#[test]
fn same_need_renews_the_lease_and_a_dropped_need_repays_it() {
    let (mut b, mut l) = (book(), ledger());
    let first = round(
        &mut b,
        &mut l,
        &[asking(V, 1, T0, 1000), releasing(L, 2, T0, 600)],
        T0,
    );
    let lease = decision(&first, V, Resource::Cpu).lease.clone();
    let t1 = T0.plus_ms(2_000);
    let second = round(
        &mut b,
        &mut l,
        &[asking(V, 3, t1, 1000), releasing(L, 4, t1, 600)],
        t1,
    );
    let renewed = decision(&second, V, Resource::Cpu);
    assert_eq!(renewed.lease.id, lease.id, "renewed, not reopened");
    assert_eq!(renewed.lease.expiry, t1.plus_ms(10_000));
    assert!(second.commands.contains(&Command::RenewLease {
        id: lease.id,
        expiry: t1.plus_ms(10_000)
    }));

    let t2 = T0.plus_ms(4_000);
    let third = round(&mut b, &mut l, &[bid(V, 5, t2), bid(L, 6, t2)], t2);
    assert!(
        third
            .closed
            .iter()
            .any(|c| c.id == lease.id && c.end == LeaseEnd::Repaid && c.why == "position_changed")
    );
    assert_eq!(l.closed_lease(lease.id), Some(LeaseEnd::Repaid));
    assert!(
        l.leases_on(&host()).next().is_none(),
        "everyone is back at entitlement: {:?}",
        third.allocation
    );
    assert_eq!(rep(&l, V), REPUTATION_START + 20);
    assert_eq!(rep(&l, L), REPUTATION_START + 20);
}

#[test]
fn expired_lease_is_repaid_and_a_new_one_opened() {
    let (mut b, mut l) = (book(), ledger());
    let first = round(&mut b, &mut l, &[asking(V, 1, T0, 1000)], T0);
    let old = decision(&first, V, Resource::Cpu).lease.id;
    let later = T0.plus_ms(15_000);
    let out = round(&mut b, &mut l, &[asking(V, 2, later, 1000)], later);
    assert!(
        out.closed
            .iter()
            .any(|c| c.id == old && c.why == "expired" && c.end == LeaseEnd::Repaid)
    );
    assert_ne!(decision(&out, V, Resource::Cpu).lease.id, old);
}

#[test]
fn vanished_borrower_defaults_costing_it_a_lot_and_the_lender_a_little() {
    let (mut b, mut l) = (book(), ledger());
    round(
        &mut b,
        &mut l,
        &[asking(V, 1, T0, 1000), releasing(L, 2, T0, 600)],
        T0,
    );
    let lender = AccountId::Workload(WorkloadKey::new(&host(), L));
    let before = l.balance(&lender);
    b.workloads.remove(&V);
    let t1 = T0.plus_ms(1_000);
    let out = round(&mut b, &mut l, &[releasing(L, 3, t1, 600)], t1);
    assert!(
        out.closed
            .iter()
            .any(|c| c.holder == V && c.end == LeaseEnd::Defaulted && c.why == "holder_vanished")
    );
    assert_eq!(rep(&l, V), REPUTATION_START - 2_500);
    assert_eq!(rep(&l, L), REPUTATION_START - 100);
    assert!(
        l.balance(&lender).0 > before.0 + 1_000,
        "the lender keeps the whole escrow share"
    );
}

/// Boost, trades, prices, intake and budgets.
#[path = "tests_rules.rs"]
mod rules;

#[path = "tests_usage.rs"]
mod usage;
