//! The credit ledger: a deterministic state machine over [`Command`]s, persisted in redb.
//!
//! [`LedgerState::apply`] is the state machine (pure, no I/O, no clock, no floats): openraft
//! can drive it directly as its state machine later, with [`encode_snapshot`] and
//! [`decode_snapshot`] as its snapshot format. [`Ledger`] wraps it with the redb command log
//! and snapshots, and acknowledges a command only after its transaction committed.

pub mod command;
pub mod error;
pub mod lease;
pub mod state;
pub mod store;

pub use command::{
    AccountId, Command, LeaseEnd, LeaseTerms, LoanShare, Outcome, Price, StreakUpdate, WorkloadKey,
};
pub use error::{LedgerError, StoreError};
pub use lease::{LeaseRecord, Settlement};
pub use state::{
    ConservationError, IncomeSchedule, LedgerState, REPUTATION_MAX, REPUTATION_START, Reputation,
};
pub use store::{Ledger, LedgerOptions, decode_snapshot, encode_snapshot};

#[cfg(test)]
mod tests;
