//! Redundant arbiters: the ledger replicated with openraft. The ledger's commands are the raft
//! log and [`LedgerState`](crate::ledger::LedgerState) is the state machine; redb holds the log,
//! the vote and the snapshots ([`store`]). Raft RPCs travel over QUIC between replicas with the
//! agents' CA, peer certificates and ALPN `truce-raft/1` ([`network`]). [`replica`] starts one.

pub mod config;
pub mod lease;
pub mod ledger;
pub mod network;
pub mod replica;
pub mod store;
pub mod types;

pub use ledger::ReplicatedLedger;
pub use replica::{Replica, ReplicaConfig, ReplicaError};
pub use types::{ClusterNode, LedgerBatch, LedgerReply, NodeId, TypeConfig};
