//! Synthetic hosts and bids for the round benchmark and for tests: deterministic from a seed,
//! shaped like a busy host (some workloads ask, some lend, some trade, a few breach their SLO).

use super::book::{Bounds, HostBook, WorkloadSpec};
use crate::ledger::{Command, LedgerState, WorkloadKey};
use std::collections::BTreeMap;
use truce_common::model::{
    Ask, Bid, BidId, Credits, DeviceId, HostId, Reason, Release, Resource, Timestamp, TradeOffer,
    WorkloadId, WorkloadRef,
};

/// SplitMix64: tiny, deterministic, no dependency.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

pub const DISK: DeviceId = DeviceId { major: 8, minor: 0 };

/// A host with `n` workloads: 32 cores, 64 GiB, one disk at 1 GB/s; each workload is entitled
/// to an equal share of 90 % of it, may fall to a quarter of that and rise to half the host.
pub fn host_book(host: HostId, n: usize) -> HostBook {
    let capacity: BTreeMap<Resource, u64> = [
        (Resource::Cpu, 32_000),
        (Resource::Memory, 64 << 30),
        (Resource::Io { dev: DISK }, 1_000_000_000),
    ]
    .into();
    let mut book = HostBook::new(host, capacity.clone());
    for i in 0..n {
        let id = WorkloadId(1000 + i as u64);
        let bounds = capacity
            .iter()
            .map(|(r, cap)| {
                let e = cap / 10 * 9 / n.max(1) as u64;
                (
                    *r,
                    Bounds {
                        floor: e / 4,
                        entitlement: e,
                        ceiling: cap / 2,
                    },
                )
            })
            .collect();
        book.workloads.insert(
            id,
            WorkloadSpec {
                workload: WorkloadRef {
                    id,
                    path: format!("/truce/w{i}"),
                },
                weight: 100,
                priority: 1,
                bounds,
            },
        );
    }
    book
}

/// Give every workload of `book` an income and accrue `seconds` of it (in memory).
pub fn fund(state: &mut LedgerState, book: &HostBook, per_second: Credits, seconds: u64) {
    for w in book.workloads.keys() {
        let who = WorkloadKey::new(&book.host, *w);
        let _ = state.apply(&Command::SetIncome {
            who,
            per_second,
            at: Timestamp(0),
        });
    }
    let _ = state.apply(&Command::Accrue {
        host: book.host.clone(),
        now: Timestamp(seconds * 1000),
    });
}

/// One round of bids for `book`: about 40 % ask, 20 % release, 10 % offer a trade, 10 % breach.
pub fn bids(book: &HostBook, rng: &mut SplitMix, now: Timestamp, first_id: u64) -> Vec<Bid> {
    let mut out = Vec::new();
    for (i, (w, spec)) in book.workloads.iter().enumerate() {
        let roll = rng.unit();
        let mut bid = Bid {
            id: BidId(first_id + i as u64),
            workload: spec.workload.clone(),
            at: now,
            asks: Vec::new(),
            releases: Vec::new(),
            trades: Vec::new(),
            willingness_to_pay: Credits::from_credits(1_000.0),
            priority: 1 + rng.below(4) as u32,
            slo_breach: rng.unit() < 0.1,
            lease_ms: 5_000 + rng.below(10_000),
            reasons: vec![Reason {
                code: "synthetic".into(),
                detail: format!("bench bid for {w}"),
            }],
        };
        let e = |r: Resource| book.bounds(*w, r).entitlement;
        if roll < 0.4 {
            for r in [Resource::Cpu, Resource::Io { dev: DISK }] {
                if rng.unit() < 0.7 {
                    let amount = (e(r) as f64 * (0.1 + rng.unit())) as u64;
                    let price =
                        super::pricing::initial_price(r).as_credits() * (0.8 + 2.2 * rng.unit());
                    bid.asks.push(Ask {
                        resource: r,
                        amount,
                        max_price: price,
                    });
                }
            }
        } else if roll < 0.6 {
            for r in [Resource::Cpu, Resource::Memory, Resource::Io { dev: DISK }] {
                let amount = (e(r) as f64 * 0.5 * rng.unit()) as u64;
                bid.releases.push(Release {
                    resource: r,
                    amount,
                    min_price: 0.0,
                });
            }
        } else if roll < 0.7 {
            let (give, want) = if rng.unit() < 0.5 {
                (Resource::Cpu, Resource::Io { dev: DISK })
            } else {
                (Resource::Io { dev: DISK }, Resource::Cpu)
            };
            bid.trades.push(TradeOffer {
                give,
                give_amount: e(give) / 4,
                want,
                want_amount: e(want) / 5,
            });
        }
        out.push(bid);
    }
    out
}
