//! Arbiter replication messages: raft RPCs between replicas and cluster administration (ALPN
//! `truce-raft/1`), and the redirect a follower sends an agent (ALPN `truce/1`).

use serde::{Deserialize, Serialize};

/// An openraft RPC or its reply. `body` is the MessagePack of the openraft request or
/// response type named by `kind`; the arbiter decodes it (openraft's types are not ours to pin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftFrame {
    pub seq: u64,
    pub kind: RaftKind,
    #[serde(with = "bytes_body")]
    pub body: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaftKind {
    AppendEntries,
    Vote,
    InstallSnapshot,
    /// The reply to request `seq`: the openraft response, or its error.
    Reply,
    /// The request could not be handled; `body` is a UTF-8 reason.
    Failed,
}

/// A follower's answer to `hello`: this replica does not run market rounds; try the leader.
/// The connection closes after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// The leader's agent address (`ip:port`), when this replica knows it.
    pub leader: Option<String>,
    pub reason: String,
}

/// `truce-arbiter cluster add|remove|status`, sent to any replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRequest {
    pub seq: u64,
    pub op: ClusterOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterOp {
    Status,
    /// Add a replica: it first catches up as a learner, then becomes a voter.
    Add { member: ClusterMember },
    Remove { id: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMember {
    pub id: u64,
    /// The replica's certificate name.
    pub name: String,
    /// Where its raft endpoint listens (`ip:port`).
    pub raft_addr: String,
    /// Where agents reach it (`ip:port`).
    pub agent_addr: String,
    #[serde(default)]
    pub voter: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub seq: u64,
    /// The replica that answered.
    pub id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub members: Vec<ClusterMember>,
    /// Why the request failed (then the rest describes the answering replica's view).
    #[serde(default)]
    pub error: Option<String>,
}

/// `Vec<u8>` as a MessagePack bin (not an array of integers).
mod bytes_body {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}
