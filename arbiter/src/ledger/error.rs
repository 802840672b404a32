//! Why the ledger refused a command, or could not read or write its store.

use super::command::AccountId;
use truce_common::model::{Credits, HostId, LeaseId, Timestamp};

/// A command the state machine refuses. The state is unchanged when one of these is returned,
/// and the command is not written to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("account {account} holds {balance:?} micro-credits but {needed:?} are needed")]
    Overdraw {
        account: AccountId,
        balance: Credits,
        needed: Credits,
    },
    #[error("no open lease {id:?}")]
    UnknownLease { id: LeaseId },
    #[error("lease id {id:?} was already used")]
    DuplicateLease { id: LeaseId },
    #[error("amount {amount:?} must be positive")]
    NonPositiveAmount { amount: Credits },
    #[error("income rate {per_second:?} per second must not be negative")]
    NegativeIncome { per_second: Credits },
    #[error("price must be positive, got {price} pico-credits")]
    NonPositivePrice { price: i64 },
    #[error("transfer from {account} to itself")]
    SameAccount { account: AccountId },
    #[error("time on host {host} went back from {last:?} to {now:?}")]
    ClockWentBack {
        host: HostId,
        last: Timestamp,
        now: Timestamp,
    },
    #[error("lease {id:?} has invalid terms: {why}")]
    BadLeaseTerms { id: LeaseId, why: &'static str },
    #[error("lease {id:?} expires at {current:?}; renewing to {expiry:?} would not extend it")]
    RenewDoesNotExtend {
        id: LeaseId,
        current: Timestamp,
        expiry: Timestamp,
    },
    #[error("{what} overflows")]
    Overflow { what: &'static str },
}

/// Failure of the persistent ledger (redb) around the state machine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not open the ledger database {path}")]
    Open {
        path: String,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("ledger storage failed while trying to {op}")]
    Storage {
        op: &'static str,
        #[source]
        source: redb::Error,
    },
    #[error("could not encode ledger command {index}")]
    Encode {
        index: u64,
        #[source]
        source: rmp_serde::encode::Error,
    },
    #[error("could not decode {what} at index {index}")]
    Decode {
        what: &'static str,
        index: u64,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("logged command {index} no longer applies on replay; the log is corrupt")]
    Replay {
        index: u64,
        #[source]
        source: LedgerError,
    },
    #[error("log has a gap: expected command {expected}, found {found}")]
    Gap { expected: u64, found: u64 },
    #[error("the ledger refused the command")]
    Rejected {
        #[source]
        source: LedgerError,
    },
    #[error("a commit failed earlier; reopen the ledger to recover its durable state")]
    Poisoned,
}

pub(crate) fn storage<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Storage {
        op,
        source: e.into(),
    }
}
