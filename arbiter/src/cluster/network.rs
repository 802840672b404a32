//! openraft's network over QUIC: each RPC is one `raft` frame on a bidirectional stream to the
//! target replica's peer endpoint (ALPN `truce-raft/1`), answered by one `raft` reply frame.
//! The openraft request and response types travel as MessagePack inside the frame's body.

use super::types::{ClusterNode, NodeId, TypeConfig};
use crate::peer::PeerEndpoint;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::AnyError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use truce_common::wire::{Message, RaftFrame, RaftKind};

#[derive(Clone)]
pub struct Network {
    pub endpoint: Arc<PeerEndpoint>,
    pub seq: Arc<AtomicU64>,
}

pub struct Connection {
    endpoint: Arc<PeerEndpoint>,
    seq: Arc<AtomicU64>,
    target: ClusterNode,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, _target: NodeId, node: &ClusterNode) -> Connection {
        if let Ok(addr) = node.raft_addr.parse() {
            self.endpoint.set_peer(node.name.clone(), addr);
        }
        Connection { endpoint: self.endpoint.clone(), seq: self.seq.clone(), target: node.clone() }
    }
}

type Rpc<T, E> = Result<T, RPCError<NodeId, ClusterNode, E>>;

impl Connection {
    async fn call<Req: Serialize, Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(&self, kind: RaftKind, req: &Req, timeout: Duration) -> Rpc<Resp, E> {
        let body = rmp_serde::to_vec_named(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let reply = self
            .endpoint
            .request(&self.target.name, &Message::Raft(RaftFrame { seq, kind, body }), timeout)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        match reply {
            Message::Raft(RaftFrame { kind: RaftKind::Reply, body, .. }) => {
                let r: Result<Resp, E> = rmp_serde::from_slice(&body).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(0, e)))
            }
            Message::Raft(RaftFrame { kind: RaftKind::Failed, body, .. }) => {
                Err(RPCError::Network(NetworkError::new(&AnyError::error(String::from_utf8_lossy(&body)))))
            }
            other => Err(RPCError::Network(NetworkError::new(&AnyError::error(format!("unexpected reply {}", other.name()))))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(&mut self, rpc: AppendEntriesRequest<TypeConfig>, option: RPCOption) -> Rpc<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        self.call(RaftKind::AppendEntries, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.call(RaftKind::InstallSnapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Rpc<VoteResponse<NodeId>, RaftError<NodeId>> {
        self.call(RaftKind::Vote, &rpc, option.hard_ttl()).await
    }
}
