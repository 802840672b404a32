//! One arbiter replica: its redb store, the openraft instance, the QUIC peer endpoint that
//! carries raft RPCs and cluster administration, and the ledger it serves to the market.

use super::lease::{LeaderLease, Standing};
use super::network::Network;
use super::store::{self, LedgerMachine, LogStore};
use super::types::{ClusterNode, LedgerBatch, LedgerReply, NodeId, TypeConfig};
use crate::ledger::Command;
use crate::peer::{Inbound, PeerEndpoint, PeerError, PeerTls};
use crate::server::Leadership;
use openraft::{ChangeMembers, Raft};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use truce_common::wire::{ClusterMember, ClusterOp, ClusterRequest, ClusterStatus, Message, RAFT_ALPN, RaftFrame, RaftKind};

/// How long `cluster add` waits for the new replica to catch up before it answers that the
/// replica stays a learner (below the command's default timeout, 30 s, so the answer arrives).
const CATCH_UP_WAIT: Duration = Duration::from_secs(20);

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

    async fn cluster(&self, req: ClusterRequest) -> ClusterStatus {
        let result: Result<(), String> = match req.op {
            ClusterOp::Status => Ok(()),
            _ if !self.is_leader() => Err(match self.leader() {
                Some(l) => format!("replica {} is not the leader; replica {l} is", self.id),
                None => format!("replica {} knows no leader right now; try again after the election", self.id),
            }),
            ClusterOp::Add { member } => self.add(member).await,
            ClusterOp::Remove { id } => self.remove(id).await,
        };
        self.status(req.seq, result.err())
    }

    /// Add `member` as a learner, wait until it caught up, then make it a voter. Re-adding a
    /// member under the same name and addresses finishes what an interrupted add started; the
    /// same id for another replica is refused.
    async fn add(&self, member: ClusterMember) -> Result<(), String> {
        let id = member.id;
        let node = ClusterNode { name: member.name.clone(), raft_addr: member.raft_addr.clone(), agent_addr: member.agent_addr.clone() };
        let (known, voter) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            (membership.get_node(&id).cloned(), membership.voter_ids().any(|v| v == id))
        };
        match known {
            Some(k) if k != node => return Err(format!("id {id} already belongs to replica {k}; remove it first or pick another id")),
            Some(_) if voter => return Ok(()),
            _ => {}
        }
        if let Ok(addr) = member.raft_addr.parse() {
            self.endpoint.set_peer(member.name.clone(), addr);
        }
        // openraft's own blocking add gives up waiting after half a second and reports
        // success; promoting a replica that never caught up (or is not even running) would
        // count a dead voter in every quorum. Wait for it here, bounded.
        let added = self.raft.add_learner(id, node.clone(), false).await.map_err(|e| format!("adding {id} as a learner: {e}"))?;
        let target = added.log_id.index;
        let matched = |m: &openraft::RaftMetrics<NodeId, ClusterNode>| m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map(|l| l.index);
        let caught_up = self.raft.wait(Some(CATCH_UP_WAIT)).metrics(|m| matched(m).is_some_and(|i| i >= target), "the new learner caught up").await;
        if caught_up.is_err() {
            let at = matched(&self.raft.metrics().borrow());
            return Err(format!(
                "replica {id} did not catch up within {} s (it holds log index {} of {target}); it stays a learner: check that it runs and is reachable at {}, then run add again to make it a voter, or remove it",
                CATCH_UP_WAIT.as_secs(),
                at.map_or("none".into(), |i| i.to_string()),
                node.raft_addr
            ));
        }
        self.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await.map(|_| ()).map_err(|e| format!("promoting {id}: {e}"))
    }

    /// Remove a voter or a learner; an id that is not a member is an error, not a no-op.
    async fn remove(&self, id: NodeId) -> Result<(), String> {
        let (known, voter, ids) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            (membership.get_node(&id).is_some(), membership.voter_ids().any(|v| v == id), membership.nodes().map(|(i, _)| *i).collect::<Vec<_>>())
        };
        if !known {
            return Err(format!("replica {id} is not a member (members: {ids:?})"));
        }
        let ids = BTreeSet::from([id]);
        // Not retained as a learner: the replica leaves the group.
        let change = if voter { ChangeMembers::RemoveVoters(ids) } else { ChangeMembers::RemoveNodes(ids) };
        self.raft.change_membership(change, false).await.map(|_| ()).map_err(|e| format!("removing {id}: {e}"))
    }

    async fn serve(self, mut rx: mpsc::Receiver<Inbound>, cancel: CancellationToken) {
        loop {
            let item = tokio::select! {
                _ = cancel.cancelled() => break,
                i = rx.recv() => match i { Some(i) => i, None => break },
            };
            let Inbound::Request { from, msg, reply } = item else { continue };
            let me = self.clone();
            tokio::spawn(async move {
                let answer = match msg {
                    Message::Raft(frame) => me.rpc(frame).await,
                    Message::ClusterRequest(req) => Message::ClusterStatus(me.cluster(req).await),
                    other => {
                        tracing::warn!(peer = %from, got = other.name(), "unexpected message on the raft endpoint");
                        return;
                    }
                };
                PeerEndpoint::reply(reply, &answer).await;
            });
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(cause = %e, "raft shutdown");
        }
        self.endpoint.close();
    }

    async fn rpc(&self, frame: RaftFrame) -> Message {
        let seq = frame.seq;
        let result = match frame.kind {
            RaftKind::AppendEntries => match rmp_serde::from_slice(&frame.body) {
                Ok(req) => {
                    let answer = self.raft.append_entries(req).await;
                    // Accepted from the current leader (a higher vote means the sender is not it).
                    if answer.as_ref().is_ok_and(|a| !matches!(a, openraft::raft::AppendEntriesResponse::HigherVote(_))) {
                        *self.leader_heard.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                    }
                    encode(&answer)
                }
                Err(e) => Err(e.to_string()),
            },
            RaftKind::Vote => match rmp_serde::from_slice(&frame.body) {
                Ok(req) => encode(&self.raft.vote(req).await),
                Err(e) => Err(e.to_string()),
            },
            RaftKind::InstallSnapshot => match rmp_serde::from_slice(&frame.body) {
                Ok(req) => encode(&self.raft.install_snapshot(req).await),
                Err(e) => Err(e.to_string()),
            },
            RaftKind::Reply | RaftKind::Failed => Err("a reply is not a request".into()),
        };
        match result {
            Ok(body) => Message::Raft(RaftFrame { seq, kind: RaftKind::Reply, body }),
            Err(reason) => Message::Raft(RaftFrame { seq, kind: RaftKind::Failed, body: reason.into_bytes() }),
        }
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(v).map_err(|e| e.to_string())
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
