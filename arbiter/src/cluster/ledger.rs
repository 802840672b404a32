//! The replicated ledger as the market's exchange sees it: reads come from this replica's
//! applied state machine, writes go through raft and return only once a majority holds them
//! and this replica applied them. A replica that cannot commit (a follower, a partitioned
//! leader) gets an error within `write_timeout` and the round hands out no decisions.

use super::replica::{Replica, ReplicaError};
use super::store::MachineState;
use crate::ledger::Command;
use std::sync::RwLockReadGuard;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ReplicatedLedger {
    pub replica: Replica,
    pub write_timeout: Duration,
}

impl ReplicatedLedger {
    pub fn new(replica: Replica, write_timeout: Duration) -> ReplicatedLedger {
        ReplicatedLedger { replica, write_timeout }
    }

    pub fn state(&self) -> RwLockReadGuard<'_, MachineState> {
        self.replica.machine.ledger()
    }

    /// Append `commands` as one raft entry and wait for it to apply here. Blocks the calling
    /// thread: call it from a blocking thread inside the runtime (the server resolves rounds
    /// with `spawn_blocking`), never from an async task. Per command: `None` when it applied,
    /// the ledger's refusal otherwise.
    pub fn apply_batch(&self, commands: &[Command]) -> Result<Vec<Option<String>>, ReplicaError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| ReplicaError::Write { reason: format!("no async runtime to write through: {e}") })?;
        let write = tokio::time::timeout(self.write_timeout, self.replica.write(commands.to_vec()));
        match runtime.block_on(write) {
            Ok(Ok(reply)) => Ok(reply.refused),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ReplicaError::Write { reason: format!("no majority committed it within {} ms", self.write_timeout.as_millis()) }),
        }
    }
}
