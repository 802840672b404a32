//! Unit tests of the state machine and the store (real redb files in a temp dir).

use super::*;
use truce_common::model::{Credits, HostId, LeaseId, Lender, Resource, Timestamp, WorkloadId};

fn host() -> HostId {
    HostId("h1".into())
}
fn key(w: u64) -> WorkloadKey {
    WorkloadKey::new(&host(), WorkloadId(w))
}
fn acct(w: u64) -> AccountId {
    AccountId::Workload(key(w))
}

fn funded() -> LedgerState {
    let mut s = LedgerState::new();
    for w in [1, 2, 3] {
        s.apply(&Command::SetIncome {
            who: key(w),
            per_second: Credits(1_000_000),
            at: Timestamp(0),
        })
        .ok();
    }
    s.apply(&Command::Accrue {
        host: host(),
        now: Timestamp(10_000),
    })
    .ok();
    s
}

fn loan(
    id: u64,
    holder: u64,
    lender: u64,
    units: u64,
    price: i64,
    start: u64,
    expiry: u64,
) -> Command {
    Command::OpenLease {
        terms: LeaseTerms {
            id: LeaseId(id),
            host: host(),
            holder: WorkloadId(holder),
            resource: Resource::Cpu,
            amount: 1000 + units,
            shares: vec![LoanShare {
                lender: Lender::Workload(WorkloadId(lender)),
                units,
                price: Price(price),
            }],
            start: Timestamp(start),
            expiry: Timestamp(expiry),
        },
    }
}

#[test]
fn income_mints_exactly_the_schedule_in_any_number_of_steps() {
    let mut one = LedgerState::new();
    let mut many = LedgerState::new();
    for s in [&mut one, &mut many] {
        s.apply(&Command::SetIncome {
            who: key(1),
            per_second: Credits(333),
            at: Timestamp(0),
        })
        .ok();
    }
    one.apply(&Command::Accrue {
        host: host(),
        now: Timestamp(10_007),
    })
    .ok();
    for t in (7..=10_007).step_by(1000) {
        many.apply(&Command::Accrue {
            host: host(),
            now: Timestamp(t),
        })
        .ok();
    }
    assert_eq!(one.balance(&acct(1)), Credits(333 * 10_007 / 1000));
    assert_eq!(one.balance(&acct(1)), many.balance(&acct(1)));
    assert_eq!(one.check_conservation(), Ok(()));
}

#[test]
fn overdraw_is_refused_and_leaves_state_unchanged() {
    let mut s = funded();
    let before = s.clone();
    let err = s.apply(&Command::Transfer {
        from: acct(1),
        to: acct(2),
        amount: Credits(10_000_001),
    });
    assert!(matches!(err, Err(LedgerError::Overdraw { .. })), "{err:?}");
    assert_eq!(s, before);
    let err = s.apply(&Command::CloseLease {
        id: LeaseId(9),
        at: Timestamp(0),
        end: LeaseEnd::Repaid,
    });
    assert_eq!(err, Err(LedgerError::UnknownLease { id: LeaseId(9) }));
    assert_eq!(s, before);
}

#[test]
fn repaid_lease_pays_lender_for_time_used_and_refunds_the_rest() {
    let mut s = funded();
    // 100 millicores at 0.001 credit/millicore/s for 10 s = 1 credit of escrow.
    let open = s.apply(&loan(1, 1, 2, 100, 1_000_000_000, 10_000, 20_000));
    assert_eq!(
        open,
        Ok(Outcome::LeaseOpened {
            id: LeaseId(1),
            escrow: Credits(1_000_000)
        })
    );
    assert_eq!(s.balance(&acct(1)), Credits(9_000_000));
    let close = s.apply(&Command::CloseLease {
        id: LeaseId(1),
        at: Timestamp(12_500),
        end: LeaseEnd::Repaid,
    });
    assert_eq!(
        close,
        Ok(Outcome::LeaseClosed {
            id: LeaseId(1),
            paid: Credits(250_000),
            refunded: Credits(750_000)
        })
    );
    assert_eq!(s.balance(&acct(2)), Credits(10_250_000));
    assert_eq!(s.balance(&acct(1)), Credits(9_750_000));
    assert_eq!(s.check_conservation(), Ok(()));
}

#[test]
fn defaulted_lease_gives_the_whole_escrow_to_the_lender() {
    let mut s = funded();
    s.apply(&loan(1, 1, 2, 100, 1_000_000_000, 10_000, 20_000))
        .ok();
    s.apply(&Command::RenewLease {
        id: LeaseId(1),
        expiry: Timestamp(30_000),
    })
    .ok();
    assert_eq!(s.balance(&acct(1)), Credits(8_000_000));
    s.apply(&Command::CloseLease {
        id: LeaseId(1),
        at: Timestamp(11_000),
        end: LeaseEnd::Defaulted,
    })
    .ok();
    assert_eq!(s.balance(&acct(2)), Credits(12_000_000));
    assert_eq!(s.closed_lease(LeaseId(1)), Some(LeaseEnd::Defaulted));
    assert_eq!(s.check_conservation(), Ok(()));
}

#[test]
fn lease_ids_are_never_reused() {
    let mut s = funded();
    assert!(s.apply(&loan(5, 1, 2, 1, 1, 0, 10)).is_ok());
    assert_eq!(s.next_lease_id(), LeaseId(6));
    assert_eq!(
        s.apply(&loan(5, 1, 2, 1, 1, 0, 10)),
        Err(LedgerError::DuplicateLease { id: LeaseId(5) })
    );
    assert_eq!(
        s.apply(&loan(3, 1, 2, 1, 1, 0, 10)),
        Err(LedgerError::DuplicateLease { id: LeaseId(3) })
    );
}

#[test]
fn reputation_clamps_and_tracks_streaks() {
    let mut s = LedgerState::new();
    for _ in 0..3 {
        s.apply(&Command::AdjustReputation {
            who: key(1),
            delta: 3_000,
            streak: StreakUpdate::Extend,
        })
        .ok();
    }
    assert_eq!(
        s.reputation(&key(1)),
        Reputation {
            score: REPUTATION_MAX,
            streak: 3
        }
    );
    s.apply(&Command::AdjustReputation {
        who: key(1),
        delta: -20_000,
        streak: StreakUpdate::Reset,
    })
    .ok();
    assert_eq!(
        s.reputation(&key(1)),
        Reputation {
            score: 0,
            streak: 0
        }
    );
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("truce-ledger-unit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok();
    dir.join("ledger.redb")
}

#[test]
fn reopening_replays_snapshot_and_tail() {
    let path = temp_db("reopen");
    let mut expected = LedgerState::new();
    {
        let mut l = Ledger::open_with(&path, LedgerOptions { snapshot_every: 4 }).expect("open");
        let cmds = [
            Command::SetIncome {
                who: key(1),
                per_second: Credits(1_000_000),
                at: Timestamp(0),
            },
            Command::SetIncome {
                who: key(2),
                per_second: Credits(500_000),
                at: Timestamp(0),
            },
            Command::Accrue {
                host: host(),
                now: Timestamp(5_000),
            },
            loan(1, 1, 2, 10, 1_000_000, 5_000, 9_000),
            Command::Transfer {
                from: acct(2),
                to: acct(3),
                amount: Credits(7),
            },
            Command::SetPrice {
                host: host(),
                resource: Resource::Cpu,
                price: Price(42),
            },
        ];
        for c in &cmds {
            l.apply(c).expect("apply");
            expected.apply(c).expect("in-memory apply");
        }
        // A refused command is not logged.
        assert!(matches!(
            l.apply(&Command::Charge {
                from: key(9),
                amount: Credits(1)
            }),
            Err(StoreError::Rejected { .. })
        ));
        assert_eq!(l.state(), &expected);
        assert_eq!(
            l.log_tail().expect("tail").len(),
            2,
            "snapshot at 4 compacts the log"
        );
    }
    let l = Ledger::open(&path).expect("reopen");
    assert_eq!(l.state(), &expected);
    assert_eq!(l.state().check_conservation(), Ok(()));
    let bytes = encode_snapshot(l.state()).expect("encode");
    assert_eq!(decode_snapshot(&bytes).expect("decode"), expected);
}
