//! One arbiter replica: its redb store, the openraft instance, the QUIC peer endpoint that
//! carries raft RPCs and cluster administration, and the ledger it serves to the market.

mod admin;
mod rpc;

use super::lease::{LeaderLease, Standing};
use super::network::Network;
use super::store::{self, LedgerMachine, LogStore};
use super::types::{ClusterNode, LedgerBatch, LedgerReply, NodeId, TypeConfig};
use crate::ledger::Command;
use crate::peer::{PeerEndpoint, PeerError, PeerTls};
use crate::server::Leadership;
use openraft::Raft;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use truce_common::wire::{ClusterMember, ClusterStatus, RAFT_ALPN};

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub id: NodeId,
    pub name: String,
    pub raft_listen: SocketAddr,
    /// Where agents reach this replica (sent in redirects).
    pub agent_addr: String,
    pub tls: PeerTls,
    /// The redb file (log, vote, snapshots).
    pub db_path: PathBuf,
    /// The initial members (this replica included) when bootstrapping a new group.
    pub members: BTreeMap<NodeId, ClusterNode>,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_every: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("replica storage failed: {reason}")]
    Storage { reason: String },
    #[error("peer endpoint failed")]
    Peer {
        #[source]
        source: PeerError,
    },
    #[error("invalid raft configuration: {reason}")]
    Config { reason: String },
    #[error("raft failed to start: {reason}")]
    Start { reason: String },
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("the write was not committed: {reason}")]
    Write { reason: String },
}

#[derive(Clone)]
pub struct Replica {
    pub id: NodeId,
    pub raft: Raft<TypeConfig>,
    pub machine: LedgerMachine,
    pub endpoint: Arc<PeerEndpoint>,
    lease: Arc<Mutex<LeaderLease>>,
    /// When this replica last accepted entries (or a heartbeat) from a leader.
    leader_heard: Arc<Mutex<Option<Instant>>>,
    /// A follower names its leader to agents only if it heard from it this recently.
    leader_fresh: Duration,
    /// How long after the last sign of a live leader an uncontested election has named the
    /// next: openraft's leader lease and the longest election timeout (both
    /// `election_timeout_max`), plus a heartbeat for the vote's round trip.
    election_settles: Duration,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("id", &self.id).finish()
    }
}

impl Replica {
    pub async fn start(cfg: ReplicaConfig, cancel: CancellationToken) -> Result<Replica, ReplicaError> {
        let storage = |e: &dyn std::fmt::Display| ReplicaError::Storage { reason: format!("{}: {e}", cfg.db_path.display()) };
        if let Some(dir) = cfg.db_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| storage(&e))?;
        }
        let db = store::open(&cfg.db_path).map_err(|e| storage(&e))?;
        let machine = LedgerMachine::open(db.clone()).map_err(|e| storage(&e))?;
        let peers = cfg.members.values().filter_map(|n| Some((n.name.clone(), n.raft_addr.parse().ok()?))).collect();
        let endpoint = PeerEndpoint::bind(cfg.raft_listen, &cfg.tls, RAFT_ALPN, peers).map_err(|source| ReplicaError::Peer { source })?;
        let raft_cfg = openraft::Config {
            cluster_name: "truce-arbiter".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_timeout_min_ms,
            election_timeout_max: cfg.election_timeout_max_ms,
            snapshot_policy: store::snapshot_policy(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: 64,
            // An entry holds up to `ledger::MAX_BATCH_COMMANDS` commands (a few hundred bytes
            // each): four of them in one append stay well inside a frame (1 MiB).
            max_payload_entries: 4,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| ReplicaError::Config { reason: e.to_string() })?;
        let network = Network { endpoint: endpoint.clone(), seq: Arc::default() };
        let raft = Raft::new(cfg.id, Arc::new(raft_cfg), network, LogStore::new(db), machine.clone())
            .await
            .map_err(|e| ReplicaError::Start { reason: e.to_string() })?;
        // Three quarters of openraft's leader lease (election_timeout_max: a follower refuses
        // to vote for that long after accepting a heartbeat), a margin for clock rates and the
        // confirmation's own trip.
        let lease = LeaderLease::new(Duration::from_millis(cfg.election_timeout_max_ms * 3 / 4));
        let replica = Replica {
            id: cfg.id,
            raft,
            machine,
            endpoint: endpoint.clone(),
            lease: Arc::new(Mutex::new(lease)),
            leader_heard: Arc::default(),
            leader_fresh: Duration::from_millis(cfg.election_timeout_min_ms),
            election_settles: Duration::from_millis(2 * cfg.election_timeout_max_ms + cfg.heartbeat_ms),
        };
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(endpoint.clone().accept(tx, cancel.clone()));
        tokio::spawn(replica.clone().keep_confirming(Duration::from_millis(cfg.heartbeat_ms), cancel.clone()));
        tokio::spawn(replica.clone().follow_membership(cancel.clone()));
        tokio::spawn(replica.clone().serve(rx, cancel));
        Ok(replica)
    }

    /// Bootstrap a new group with `members` as voters (only on an empty store; a restarted
    /// replica already knows its membership and this is a no-op).
    pub async fn bootstrap(&self, members: BTreeMap<NodeId, ClusterNode>) -> Result<(), ReplicaError> {
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(openraft::error::RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ReplicaError::Start { reason: e.to_string() }),
        }
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    /// The raft term this replica is in (each term has at most one leader).
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// Append one batch of ledger commands to the raft log; returns once a majority has it
    /// durably and this replica applied it. Only the leader accepts writes.
    pub async fn write(&self, commands: Vec<Command>) -> Result<LedgerReply, ReplicaError> {
        match self.raft.client_write(LedgerBatch { commands }).await {
            Ok(resp) => Ok(resp.data),
            Err(openraft::error::RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f))) => Err(ReplicaError::NotLeader { leader: f.leader_id }),
            Err(e) => Err(ReplicaError::Write { reason: e.to_string() }),
        }
    }

    /// Is this replica still the leader of a majority right now? A partitioned leader answers
    /// false once it cannot reach a quorum, so it stops issuing decisions.
    pub async fn confirm_leadership(&self) -> bool {
        self.raft.ensure_linearizable().await.is_ok()
    }

    /// While raft calls this replica the leader, confirm it with a quorum every heartbeat;
    /// [`Replica::leadership`] trusts only fresh confirmations. A replica that just became
    /// leader confirms at once rather than at its next tick: until then it redirects agents
    /// without naming anyone, and they back off (up to a heartbeat of every failover).
    async fn keep_confirming(self, every: Duration, cancel: CancellationToken) {
        let mut metrics = self.raft.metrics();
        let mut failed = false;
        loop {
            let leading = |m: &openraft::RaftMetrics<NodeId, ClusterNode>| (m.current_leader == Some(self.id), m.current_term);
            let (leader, term) = leading(&metrics.borrow_and_update());
            let unconfirmed = leader && !self.lease().holds(term, Instant::now());
            if !unconfirmed || failed {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                    // A follower wakes when the metrics change (an election it may have won).
                    changed = metrics.changed(), if !leader => if changed.is_err() { return },
                }
            }
            let (leader, term) = leading(&metrics.borrow_and_update());
            if !leader {
                failed = false;
                continue;
            }
            let length = self.lease().length;
            let started = Instant::now();
            failed = !matches!(tokio::time::timeout(length, self.raft.ensure_linearizable()).await, Ok(Ok(_)));
            if !failed {
                self.lease_mut().confirm(term, started);
            }
        }
    }

    /// Keep the peer endpoint's list of names in step with the membership: a replica added
    /// with `cluster add` must be accepted by every member (it asks followers for votes once
    /// it is a voter), not only by the leader that added it.
    async fn follow_membership(self, cancel: CancellationToken) {
        let mut metrics = self.raft.metrics();
        let mut seen = None;
        loop {
            let nodes: Option<Vec<(String, SocketAddr)>> = {
                let m = metrics.borrow_and_update();
                let at = *m.membership_config.log_id();
                (seen != Some(at)).then(|| {
                    seen = Some(at);
                    m.membership_config.membership().nodes().filter_map(|(_, n)| Some((n.name.clone(), n.raft_addr.parse().ok()?))).collect()
                })
            };
            for (name, addr) in nodes.into_iter().flatten() {
                self.endpoint.set_peer(name, addr);
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = metrics.changed() => if changed.is_err() { return },
            }
        }
    }

    fn lease(&self) -> LeaderLease {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lease_mut(&self) -> std::sync::MutexGuard<'_, LeaderLease> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May this replica run market rounds and answer agents now? See [`Standing::judge`].
    pub fn leadership(&self) -> Leadership {
        let (leader, term, leader_addr) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let addr = m.current_leader.and_then(|l| m.membership_config.membership().get_node(&l).map(|n| n.agent_addr.clone()));
            (m.current_leader, m.current_term, addr)
        };
        Standing {
            id: self.id,
            leader,
            term,
            leader_addr,
            lease: self.lease(),
            heard: *self.leader_heard.lock().unwrap_or_else(|p| p.into_inner()),
            fresh: self.leader_fresh,
            settles: self.election_settles,
        }
        .judge(Instant::now())
    }

    pub fn status(&self, seq: u64, error: Option<String>) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| ClusterMember { id: *id, name: n.name.clone(), raft_addr: n.raft_addr.clone(), agent_addr: n.agent_addr.clone(), voter: voters.contains(id) })
            .collect();
        ClusterStatus {
            seq,
            id: self.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            members,
            error,
        }
    }
}

/// Election and heartbeat timing used by tests and the default config: heartbeats every
/// 250 ms, which openraft also takes as the deadline of every append (150 ms was missed under
/// load: two cores busy with builds, a follower's fsync and 200 agents reconnecting, and each
/// miss held back commits and the serving lease's confirmation). Followers elect another
/// leader after openraft's leader lease (the maximum, 800 ms) plus a random 400-800 ms without
/// one, so 1.2-1.6 s after a leader's last heartbeat: about when agents notice its silence
/// (`arbiter.idle_timeout`, 1.5 s). The serving lease (`lease`, ¾ of the maximum: 600 ms) is
/// confirmed every heartbeat, so two confirmations fit in one. (Before: 500-1000 ms, which put
/// the election's end at 1.5-2 s and the first decision after a kill at 2.3-4.1 s.)
pub const DEFAULT_TIMING: (u64, u64, u64) = (250, 400, 800);

pub fn default_timeout() -> Duration {
    Duration::from_millis(DEFAULT_TIMING.2)
}
