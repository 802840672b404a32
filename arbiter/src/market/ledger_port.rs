//! Where the exchange keeps its ledger: a local redb [`Ledger`] (one arbiter), or the raft
//! state machine of a replica group ([`ReplicatedLedger`]). Both apply the same commands with
//! the same deterministic rules; only durability and who may write differ.

use crate::cluster::ledger::{LedgerView, Ticket};
use crate::cluster::{ReplicaError, ReplicatedLedger};
use crate::ledger::{Command, Ledger, LedgerState, StoreError};
use std::ops::Deref;

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

/// A read view of the ledger (for the replicated one, a lock on the state it reads: drop it
/// before writing).
pub enum StateRef<'a> {
    Local(&'a LedgerState),
    Replicated(LedgerView<'a>),
}

impl Deref for StateRef<'_> {
    type Target = LedgerState;
    fn deref(&self) -> &LedgerState {
        match self {
            StateRef::Local(s) => s,
            StateRef::Replicated(g) => g,
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

/// A batch handed to the ledger: applied already (local) or on its way through raft.
#[derive(Debug)]
pub enum Commit {
    Done(Result<Vec<Option<String>>, WriteError>),
    Replicated(Ticket),
}

impl Commit {
    /// Per command: `None` when it applied, the refusal otherwise. A replicated commit blocks
    /// until the state machine applied it: call from a blocking thread.
    pub fn wait(self) -> Result<Vec<Option<String>>, WriteError> {
        match self {
            Commit::Done(r) => r,
            Commit::Replicated(t) => t.wait().map_err(|source| WriteError::Replicated { source }),
        }
    }
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
        self.submit(cmds.to_vec()).wait()
    }

    /// Start applying `cmds`: the next read sees them (speculatively, for the replicated
    /// ledger), [`Commit::wait`] says what really applied.
    pub fn submit(&mut self, cmds: Vec<Command>) -> Commit {
        match self {
            LedgerPort::Local(l) => Commit::Done(
                l.apply_batch(&cmds)
                    .map(|rs| rs.into_iter().map(|r| r.err().map(|e| e.to_string())).collect())
                    .map_err(|source| WriteError::Local { source }),
            ),
            LedgerPort::Replicated(r) => Commit::Replicated(r.submit(cmds)),
        }
    }
}
