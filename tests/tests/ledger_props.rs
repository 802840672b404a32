//! Property test: random ledger command sequences, applied to a real redb ledger on disk that
//! is dropped and reopened at random points ("crash and reopen"), agree with an in-memory
//! replay, and conserve credits after every step.

use proptest::prelude::*;
use truce_arbiter::ledger::{
    AccountId, Command, LeaseEnd, LeaseTerms, Ledger, LedgerOptions, LedgerState, LoanShare, Price,
    StoreError, StreakUpdate, WorkloadKey,
};
use truce_common::model::{Credits, HostId, LeaseId, Lender, Resource, Timestamp, WorkloadId};

fn host(h: u8) -> HostId {
    HostId(format!("h{h}"))
}
fn key(h: u8, w: u8) -> WorkloadKey {
    WorkloadKey::new(&host(h), WorkloadId(w as u64))
}

fn account() -> impl Strategy<Value = AccountId> {
    prop_oneof![
        4 => (0..2u8, 0..3u8).prop_map(|(h, w)| AccountId::Workload(key(h, w))),
        1 => (0..2u8).prop_map(|h| AccountId::Pool(host(h))),
    ]
}

fn resource() -> impl Strategy<Value = Resource> {
    prop_oneof![Just(Resource::Cpu), Just(Resource::Memory)]
}

fn share() -> impl Strategy<Value = LoanShare> {
    (prop::option::of(0..3u8), 0..500u64, 0..2_000_000_000i64).prop_map(|(lender, units, price)| {
        LoanShare {
            lender: lender.map_or(Lender::Pool, |w| Lender::Workload(WorkloadId(w as u64))),
            units,
            price: Price(price),
        }
    })
}

/// Small id and time ranges so duplicates, unknown leases, clock steps back and overdraws
/// all happen often.
fn command() -> impl Strategy<Value = Command> {
    let time = || (0..200u64).prop_map(|t| Timestamp(t * 500));
    prop_oneof![
        2 => (0..2u8, 0..3u8, -10..3_000_000i64, time())
            .prop_map(|(h, w, r, at)| Command::SetIncome { who: key(h, w), per_second: Credits(r), at }),
        3 => (0..2u8, time()).prop_map(|(h, now)| Command::Accrue { host: host(h), now }),
        1 => (0..2u8, 0..3u8, -5..5_000_000i64).prop_map(|(h, w, a)| Command::Charge { from: key(h, w), amount: Credits(a) }),
        3 => (account(), account(), -5..20_000_000i64).prop_map(|(from, to, a)| Command::Transfer { from, to, amount: Credits(a) }),
        3 => (0..12u64, 0..2u8, 0..3u8, resource(), prop::collection::vec(share(), 0..3), time(), 0..20_000u64)
            .prop_map(|(id, h, w, resource, shares, start, len)| Command::OpenLease {
                terms: LeaseTerms {
                    id: LeaseId(id),
                    host: host(h),
                    holder: WorkloadId(w as u64),
                    resource,
                    amount: 1_000,
                    shares,
                    start,
                    expiry: start.plus_ms(len),
                },
            }),
        2 => (0..12u64, time()).prop_map(|(id, t)| Command::RenewLease { id: LeaseId(id), expiry: t.plus_ms(30_000) }),
        2 => (0..12u64, time(), any::<bool>()).prop_map(|(id, at, d)| Command::CloseLease {
            id: LeaseId(id),
            at,
            end: if d { LeaseEnd::Defaulted } else { LeaseEnd::Repaid },
        }),
        1 => (0..2u8, 0..3u8, -3_000..3_000i64, 0..3u8).prop_map(|(h, w, delta, s)| Command::AdjustReputation {
            who: key(h, w),
            delta,
            streak: [StreakUpdate::Keep, StreakUpdate::Extend, StreakUpdate::Reset][s as usize],
        }),
        1 => (0..2u8, resource(), -5..5_000i64).prop_map(|(h, resource, p)| Command::SetPrice { host: host(h), resource, price: Price(p) }),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    /// Apply these commands in one write transaction.
    Batch(Vec<Command>),
    /// Drop the ledger without ceremony and reopen it from disk.
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => prop::collection::vec(command(), 1..6).prop_map(Step::Batch),
        1 => Just(Step::Reopen),
    ]
}

fn temp_path(tag: u64) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("truce-ledger-props-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("ledger.redb")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn disk_ledger_with_crashes_matches_memory_and_conserves(steps in prop::collection::vec(step(), 1..30), snap in 1..8u64) {
        static CASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = temp_path(CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let options = LedgerOptions { snapshot_every: snap };
        let mut disk = Ledger::open_with(&path, options).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let mut memory = LedgerState::new();
        let mut accepted = 0u64;
        for step in steps {
            match step {
                Step::Batch(cmds) => {
                    let results = disk.apply_batch(&cmds).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
                    for (cmd, on_disk) in cmds.iter().zip(results) {
                        let in_memory = memory.apply(cmd);
                        prop_assert_eq!(&on_disk, &in_memory, "same verdict for {:?}", cmd);
                        accepted += u64::from(in_memory.is_ok());
                    }
                }
                Step::Reopen => {
                    drop(disk);
                    disk = Ledger::open_with(&path, options).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
                }
            }
            prop_assert_eq!(disk.state(), &memory);
            prop_assert_eq!(disk.state().applied(), accepted);
            prop_assert_eq!(disk.state().check_conservation(), Ok(()));
            // Only income mints: the minted total equals what the schedules accrued, and
            // every balance is non-negative.
            prop_assert!(disk.state().accounts().all(|(_, b)| b.0 >= 0));
        }
        drop(disk);
        let reopened = Ledger::open_with(&path, options).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        prop_assert_eq!(reopened.state(), &memory);
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
    }
}

#[test]
fn rejected_command_is_not_acknowledged_and_not_logged() {
    let path = temp_path(u64::MAX);
    let mut l = Ledger::open(&path).expect("open");
    let r = l.apply(&Command::Transfer {
        from: AccountId::Workload(key(0, 0)),
        to: AccountId::Pool(host(0)),
        amount: Credits(1),
    });
    assert!(matches!(r, Err(StoreError::Rejected { .. })), "{r:?}");
    assert!(l.log_tail().expect("tail").is_empty());
    drop(l);
    assert_eq!(
        Ledger::open(&path).expect("reopen").state(),
        &LedgerState::new()
    );
}
