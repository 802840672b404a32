//! Where the exchange keeps its ledger: a local redb [`Ledger`] (one arbiter), or the raft
//! state machine of a replica group ([`ReplicatedLedger`]). Both apply the same commands with
//! the same deterministic rules; only durability and who may write differ.

use crate::cluster::store::MachineState;
use crate::cluster::{ReplicaError, ReplicatedLedger};
use crate::ledger::{Command, Ledger, LedgerState, StoreError};
use std::ops::Deref;
use std::sync::RwLockReadGuard;

#[derive(Debug)]
pub enum LedgerPort {
    Local(Ledger),
    Replicated(ReplicatedLedger),
}

impl From<Ledger> for LedgerPort {
    fn from(l: Ledger) -> LedgerPort {
        LedgerPort::Local(l)
    }
}

impl From<ReplicatedLedger> for LedgerPort {
    fn from(l: ReplicatedLedger) -> LedgerPort {
        LedgerPort::Replicated(l)
    }
}

/// A read view of the ledger (for the replicated one, a read lock on the state machine:
/// drop it before writing).
pub enum StateRef<'a> {
    Local(&'a LedgerState),
    Replicated(RwLockReadGuard<'a, MachineState>),
}

impl Deref for StateRef<'_> {
    type Target = LedgerState;
    fn deref(&self) -> &LedgerState {
        match self {
            StateRef::Local(s) => s,
            StateRef::Replicated(g) => &g.ledger,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the local ledger could not store the batch")]
    Local {
        #[source]
        source: StoreError,
    },
    #[error("the replicated ledger did not commit the batch")]
    Replicated {
        #[source]
        source: ReplicaError,
    },
}

impl LedgerPort {
    pub fn state(&self) -> StateRef<'_> {
        match self {
            LedgerPort::Local(l) => StateRef::Local(l.state()),
            LedgerPort::Replicated(r) => StateRef::Replicated(r.state()),
        }
    }

    /// Apply in order, durably; per command `None` when it applied, the refusal otherwise.
    pub fn apply_batch(&mut self, cmds: &[Command]) -> Result<Vec<Option<String>>, WriteError> {
        match self {
            LedgerPort::Local(l) => l
                .apply_batch(cmds)
                .map(|rs| rs.into_iter().map(|r| r.err().map(|e| e.to_string())).collect())
                .map_err(|source| WriteError::Local { source }),
            LedgerPort::Replicated(r) => r.apply_batch(cmds).map_err(|source| WriteError::Replicated { source }),
        }
    }
}
