//! What arrives on the peer endpoint: raft RPCs, handed to openraft, and cluster requests,
//! each answered in a task of its own.

use super::Replica;
use crate::peer::{Inbound, PeerEndpoint};
use serde::Serialize;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use truce_common::wire::{Message, RaftFrame, RaftKind};

impl Replica {
    pub(super) async fn serve(self, mut rx: mpsc::Receiver<Inbound>, cancel: CancellationToken) {
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
