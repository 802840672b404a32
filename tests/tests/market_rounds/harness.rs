//! The market under test: one host with a victim, an antagonist and a lender on a disk-backed
//! ledger, their bids, and a harness that checks every round's books.

use std::collections::BTreeMap;
use std::path::PathBuf;
use truce_arbiter::ledger::{AccountId, Ledger, LedgerState, WorkloadKey};
use truce_arbiter::market::{Bounds, Exchange, HostBook, Market, RoundOutcome, WorkloadSpec};
use truce_common::model::{
    Ask, Bid, BidId, Credits, DeviceId, HostId, Reason, Release, Resource, Timestamp, WorkloadId,
    WorkloadRef,
};

pub(super) const VICTIM: WorkloadId = WorkloadId(11);
pub(super) const ANTAGONIST: WorkloadId = WorkloadId(12);
pub(super) const LENDER: WorkloadId = WorkloadId(13);
const DISK: DeviceId = DeviceId {
    major: 259,
    minor: 0,
};

pub(super) fn host() -> HostId {
    HostId("market-host".into())
}

pub(super) fn temp_db(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("truce-market-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("ledger.redb")
}

pub(super) fn spec(w: WorkloadId) -> WorkloadSpec {
    let bounds = BTreeMap::from([
        (
            Resource::Cpu,
            Bounds {
                floor: 200,
                entitlement: 1000,
                ceiling: 2500,
            },
        ),
        (
            Resource::Io { dev: DISK },
            Bounds {
                floor: 10_000_000,
                entitlement: 100_000_000,
                ceiling: 250_000_000,
            },
        ),
    ]);
    WorkloadSpec {
        workload: WorkloadRef {
            id: w,
            path: format!("/truce/w{}", w.0),
        },
        weight: 100,
        priority: 1,
        bounds,
    }
}

fn book(workloads: &[WorkloadId]) -> HostBook {
    let capacity = BTreeMap::from([
        (Resource::Cpu, 3200),
        (Resource::Io { dev: DISK }, 320_000_000),
    ]);
    let mut b = HostBook::new(host(), capacity);
    b.workloads = workloads.iter().map(|w| (*w, spec(*w))).collect();
    b
}

pub(super) fn bid(w: WorkloadId, id: u64, now: Timestamp) -> Bid {
    Bid {
        id: BidId(id),
        workload: WorkloadRef {
            id: w,
            path: format!("/truce/w{}", w.0),
        },
        at: now,
        asks: vec![],
        releases: vec![],
        trades: vec![],
        willingness_to_pay: Credits::from_credits(30.0),
        priority: 1,
        slo_breach: false,
        lease_ms: 5_000,
        reasons: vec![Reason {
            code: "p99_over_slo".into(),
            detail: format!("bid {id} from {w}"),
        }],
    }
}

fn income() -> BTreeMap<WorkloadId, Credits> {
    [VICTIM, ANTAGONIST, LENDER]
        .into_iter()
        .map(|w| (w, Credits::from_credits(1.0)))
        .collect()
}

pub(super) struct Harness {
    pub(super) exchange: Exchange,
    pub(super) path: PathBuf,
    next_bid: u64,
}

impl Harness {
    pub(super) fn new(tag: &str) -> Harness {
        let path = temp_db(tag);
        let ledger = Ledger::open(&path).expect("open ledger");
        let mut exchange = Exchange::new(ledger, Market::default());
        exchange
            .set_host(book(&[VICTIM, ANTAGONIST, LENDER]), &income(), Timestamp(0))
            .expect("register host");
        Harness {
            exchange,
            path,
            next_bid: 1,
        }
    }

    pub(super) fn id(&mut self) -> u64 {
        self.next_bid += 1;
        self.next_bid
    }

    /// One round; asserts conservation and that every decision's lease is open in the ledger.
    pub(super) fn round(&mut self, bids: Vec<Bid>, now: Timestamp) -> RoundOutcome {
        let out = self.exchange.round(&host(), &bids, now).expect("round");
        let ledger = self.exchange.ledger();
        assert_eq!(
            ledger.check_conservation(),
            Ok(()),
            "conservation after round {}",
            out.round
        );
        for d in &out.decisions {
            let rec = ledger
                .lease(d.lease.id)
                .unwrap_or_else(|| panic!("decision lease {:?} is open", d.lease.id));
            assert_eq!(rec.terms.expiry, d.lease.expiry);
            assert!(
                d.lease.expiry > now && !d.caused_by.is_empty()
                    || d.reasons.iter().any(|r| r.code == "limited")
            );
        }
        for r in [Resource::Cpu, Resource::Io { dev: DISK }] {
            let held: u64 = out
                .allocation
                .iter()
                .filter(|((_, res), _)| *res == r)
                .map(|(_, v)| v)
                .sum();
            let cap = self.exchange.book(&host()).map_or(0, |b| b.capacity[&r]);
            assert!(held <= cap, "{r}: {held} > {cap}");
        }
        out
    }

    /// Drop everything in memory and reopen from disk, as after a crash.
    pub(super) fn crash_and_reopen(&mut self, now: Timestamp, workloads: &[WorkloadId]) {
        let before: LedgerState = self.exchange.ledger().clone();
        let round = self.exchange.book(&host()).map_or(0, |b| b.round);
        let placeholder = Exchange::new(
            Ledger::open(temp_db("placeholder")).expect("placeholder"),
            Market::default(),
        );
        drop(std::mem::replace(&mut self.exchange, placeholder));
        let ledger = Ledger::open(&self.path).expect("reopen");
        assert_eq!(
            ledger.state(),
            &before,
            "reopened ledger equals the one before the crash"
        );
        self.exchange = Exchange::new(ledger, Market::default());
        let mut b = book(workloads);
        b.round = round;
        self.exchange
            .set_host(b, &income(), now)
            .expect("re-register");
    }

    pub(super) fn rep(&self, w: WorkloadId) -> i64 {
        self.exchange
            .ledger()
            .reputation(&WorkloadKey::new(&host(), w))
            .score
    }
    pub(super) fn balance(&self, w: WorkloadId) -> i64 {
        self.exchange
            .ledger()
            .balance(&AccountId::Workload(WorkloadKey::new(&host(), w)))
            .0
    }
}

pub(super) fn victim_asks(h: &mut Harness, now: Timestamp, breach: bool) -> Bid {
    let mut b = bid(VICTIM, h.id(), now);
    b.asks.push(Ask {
        resource: Resource::Cpu,
        amount: 1200,
        max_price: 0.02,
    });
    b.slo_breach = breach;
    b
}

pub(super) fn lender_releases(h: &mut Harness, now: Timestamp) -> Bid {
    let mut b = bid(LENDER, h.id(), now);
    b.releases.push(Release {
        resource: Resource::Cpu,
        amount: 500,
        min_price: 0.0,
    });
    b
}
