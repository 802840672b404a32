//! The ledger's commands and the small value types they carry.
//!
//! Commands are the only way to change the ledger. They are serialised with MessagePack into
//! the redb command log (and later the raft log), so their shape is part of the on-disk format:
//! add variants and fields at the end, never renumber or repurpose one.

use serde::{Deserialize, Serialize};
use truce_common::model::{Credits, HostId, LeaseId, Lender, Resource, Timestamp, WorkloadId};

/// A workload is identified by its cgroup inode, which is only unique on one host, so every
/// ledger key that names a workload carries the host too.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkloadKey {
    pub host: HostId,
    pub workload: WorkloadId,
}

impl WorkloadKey {
    pub fn new(host: &HostId, workload: WorkloadId) -> WorkloadKey {
        WorkloadKey {
            host: host.clone(),
            workload,
        }
    }
}

/// Who holds credits. Each host has one pool: it receives what borrowers pay for capacity
/// nobody lent, and fees.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountId {
    Workload(WorkloadKey),
    Pool(HostId),
}

impl AccountId {
    /// The account that a lease's lender is paid into.
    pub fn of_lender(host: &HostId, lender: &Lender) -> AccountId {
        match lender {
            Lender::Pool => AccountId::Pool(host.clone()),
            Lender::Workload(w) => AccountId::Workload(WorkloadKey::new(host, *w)),
        }
    }
}

impl std::fmt::Display for AccountId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountId::Workload(k) => write!(f, "{}/{}", k.host, k.workload),
            AccountId::Pool(h) => write!(f, "{h}/pool"),
        }
    }
}

/// A price in pico-credits (1e-12 credit) per unit per second.
///
/// The ledger holds no floats: a memory price of 1 credit per GiB per second is about
/// 931 pico-credits per byte per second, a CPU price of 1 credit per core per second is 1e9
/// pico-credits per millicore per second, so both fit an i64 with room to spare.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Price(pub i64);

impl Price {
    pub const PICOS_PER_CREDIT: f64 = 1e12;

    /// Credits per unit per second, as `common::model::Lease::price` carries it.
    pub fn as_credits(self) -> f64 {
        self.0 as f64 / Self::PICOS_PER_CREDIT
    }

    /// Rounds to the nearest pico-credit; NaN and negatives become zero.
    pub fn from_credits(c: f64) -> Price {
        if c.is_finite() && c > 0.0 {
            Price((c * Self::PICOS_PER_CREDIT).round().min(i64::MAX as f64) as i64)
        } else {
            Price(0)
        }
    }

    /// What `units` cost at this price for `ms` milliseconds, in micro-credits, rounded down.
    /// i128 keeps the product exact (units up to 2^64, price up to 2^63).
    pub fn cost(self, units: u64, ms: u64) -> i128 {
        // pico-credits * ms -> micro-credits: divide by 1e6 (pico->micro) and 1e3 (ms->s).
        (units as i128) * (self.0 as i128) * (ms as i128) / 1_000_000_000
    }
}

/// One lender's part of a loan: `units` at `price`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanShare {
    pub lender: Lender,
    pub units: u64,
    pub price: Price,
}

/// Everything needed to open a lease. Ids come from the market, which reads
/// `LedgerState::next_lease_id`; the ledger refuses an id it has already seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTerms {
    pub id: LeaseId,
    pub host: HostId,
    pub holder: WorkloadId,
    pub resource: Resource,
    /// The absolute allocation the agent enforces while the lease lives (the unit is the resource's).
    pub amount: u64,
    /// The loan behind the lease. Empty for a limit lease (a cut or a trade), which costs nothing.
    pub shares: Vec<LoanShare>,
    pub start: Timestamp,
    pub expiry: Timestamp,
}

/// How a lease ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseEnd {
    /// Expired or released early: lenders are paid for the time used, the rest is refunded.
    Repaid,
    /// The borrower vanished or crashed: the whole escrow goes to the lenders.
    Defaulted,
}

/// What a reputation adjustment does to the workload's streak of repaid loans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreakUpdate {
    Keep,
    Extend,
    Reset,
}

/// A ledger command. Applied in log order; the same sequence gives the same state everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Configure a workload's income (micro-credits per second) from `at` on. The old rate is
    /// accrued up to `at` first, so changing a rate never loses or invents income.
    SetIncome {
        who: WorkloadKey,
        per_second: Credits,
        at: Timestamp,
    },
    /// Mint the configured income of every workload on `host` up to `now`. The only command
    /// that creates credits.
    Accrue { host: HostId, now: Timestamp },
    /// Move credits from a workload to its host's pool (fees).
    Charge { from: WorkloadKey, amount: Credits },
    /// Move credits between any two accounts.
    Transfer {
        from: AccountId,
        to: AccountId,
        amount: Credits,
    },
    /// Open a lease; the holder pays every share's cost for the whole term into escrow.
    OpenLease { terms: LeaseTerms },
    /// Extend a lease to `expiry`; the holder tops up the escrow for the extra time.
    RenewLease { id: LeaseId, expiry: Timestamp },
    /// Close a lease at `at` and settle its escrow.
    CloseLease {
        id: LeaseId,
        at: Timestamp,
        end: LeaseEnd,
    },
    /// Add `delta` (may be negative) to a workload's reputation, clamped to 0..=REPUTATION_MAX.
    AdjustReputation {
        who: WorkloadKey,
        delta: i64,
        streak: StreakUpdate,
    },
    /// Set the market price of a resource on a host.
    SetPrice {
        host: HostId,
        resource: Resource,
        price: Price,
    },
}

/// What applying a command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    Minted {
        total: Credits,
    },
    LeaseOpened {
        id: LeaseId,
        escrow: Credits,
    },
    LeaseRenewed {
        id: LeaseId,
        top_up: Credits,
    },
    LeaseClosed {
        id: LeaseId,
        paid: Credits,
        refunded: Credits,
    },
}
