//! openraft's type configuration for the replicated ledger.

use crate::ledger::Command;
use serde::{Deserialize, Serialize};
use std::io::Cursor;

pub type NodeId = u64;

/// A replica as the membership knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Its peer certificate's name.
    pub name: String,
    pub raft_addr: String,
    pub agent_addr: String,
}

impl std::fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.raft_addr)
    }
}

/// One raft log entry's payload: the commands of one market round (or one admin write),
/// applied in order. A refused command is a no-op, as in the single-node ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerBatch {
    pub commands: Vec<Command>,
}

/// Per command: `None` when it applied, the refusal otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerReply {
    pub refused: Vec<Option<String>>,
    /// The ledger's applied count after the batch.
    pub applied: u64,
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = LedgerBatch,
        R = LedgerReply,
        NodeId = NodeId,
        Node = ClusterNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);
