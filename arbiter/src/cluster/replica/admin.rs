//! Cluster administration (`cluster status`, `add`, `remove`) as this replica answers it: only
//! the leader changes the membership, and a new replica becomes a voter only once it caught up.

use super::Replica;
use crate::cluster::types::{ClusterNode, NodeId};
use openraft::ChangeMembers;
use std::collections::BTreeSet;
use std::time::Duration;
use truce_common::wire::{ClusterMember, ClusterOp, ClusterRequest, ClusterStatus};

/// How long `cluster add` waits for the new replica to catch up before it answers that the
/// replica stays a learner (below the command's default timeout, 30 s, so the answer arrives).
const CATCH_UP_WAIT: Duration = Duration::from_secs(20);

impl Replica {
    pub(super) async fn cluster(&self, req: ClusterRequest) -> ClusterStatus {
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
}
