//! The messages and their type ids.

use super::host_view::{HostHistory, HostView};
use super::cluster::{ClusterRequest, ClusterStatus, RaftFrame, Redirect};
use super::federation::FederationMessage;
use super::inspect::{InspectEvent, Subscribe};
use super::report::Report;
use crate::model::{Bid, Decision, HostId, LeaseId, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every message type and its id. Ids are never renumbered or reused: a retired message
/// moves to [`RETIRED_TYPE_IDS`] and its id stays taken forever.
pub const MESSAGE_TYPES: &[(u16, &str)] = &[
    (1, "hello"),
    (2, "welcome"),
    (3, "unsupported_version"),
    (4, "report"),
    (5, "bid"),
    (6, "decisions"),
    (7, "lease_renew"),
    (8, "lease_release"),
    (9, "ack"),
    (10, "error"),
    (11, "subscribe"),
    (12, "inspect"),
    (13, "host_view"),
    (14, "host_history"),
    (15, "bids"),
    (16, "bids_packed"),
    (17, "decisions_packed"),
    (20, "federation"),
    (21, "raft"),
    (22, "redirect"),
    (23, "cluster_request"),
    (24, "cluster_status"),
];

/// Ids that once meant something and must never be given to a new message.
pub const RETIRED_TYPE_IDS: &[u16] = &[];

/// One frame's content. The variant decides the type id; the payload is the body.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// agent -> arbiter, first frame on a connection.
    Hello(Hello),
    /// arbiter -> agent: the session is open.
    Welcome(Welcome),
    /// arbiter -> agent, then the arbiter closes the connection.
    UnsupportedVersion(UnsupportedVersion),
    /// agent -> arbiter: per-workload signal summaries, estimates and forecasts.
    Report(Report),
    /// agent -> arbiter: one workload's bid for the next round.
    Bid(Bid),
    /// arbiter -> agent: one round's outcome for this host.
    Decisions(Decisions),
    /// agent -> arbiter, version 2 on: several bids in one frame (one per workload that
    /// bids this period). Each bid is treated exactly like a `Bid` frame.
    Bids(Bids),
    /// agent -> arbiter.
    LeaseRenew(LeaseRenew),
    /// agent -> arbiter.
    LeaseRelease(LeaseRelease),
    /// Either way: the request `seq` was accepted.
    Ack(Ack),
    /// Either way: a request was refused, or the connection is about to close.
    Error(ErrorMessage),
    /// agent or `truce top` -> arbiter: start the inspection stream.
    Subscribe(Subscribe),
    /// arbiter -> subscriber: one inspection snapshot.
    Inspect(InspectEvent),
    /// agent -> local subscriber (unix socket): one period of the host view.
    HostView(HostView),
    /// agent -> local subscriber: recent history, sent once after `subscribe`.
    HostHistory(HostHistory),
    /// site <-> site (ALPN `truce-fed/1`): forecasts, proposals, votes, tallies, verdicts.
    Federation(FederationMessage),
    /// replica <-> replica (ALPN `truce-raft/1`): an openraft RPC or its reply.
    Raft(RaftFrame),
    /// follower -> agent, instead of `welcome`: go to the leader.
    Redirect(Redirect),
    /// operator -> replica (ALPN `truce-raft/1`): `truce-arbiter cluster ...`.
    ClusterRequest(ClusterRequest),
    /// replica -> operator.
    ClusterStatus(ClusterStatus),
}

impl Message {
    pub const HELLO: u16 = 1;
    pub const WELCOME: u16 = 2;
    pub const UNSUPPORTED_VERSION: u16 = 3;
    pub const REPORT: u16 = 4;
    pub const BID: u16 = 5;
    pub const DECISIONS: u16 = 6;
    pub const LEASE_RENEW: u16 = 7;
    pub const LEASE_RELEASE: u16 = 8;
    pub const ACK: u16 = 9;
    pub const ERROR: u16 = 10;
    pub const SUBSCRIBE: u16 = 11;
    pub const INSPECT: u16 = 12;
    pub const HOST_VIEW: u16 = 13;
    pub const HOST_HISTORY: u16 = 14;
    pub const BIDS: u16 = 15;
    /// `bids` with every struct as an array of its fields in declaration order (version 3).
    pub const BIDS_PACKED: u16 = 16;
    /// `decisions`, packed the same way (version 3).
    pub const DECISIONS_PACKED: u16 = 17;
    pub const FEDERATION: u16 = 20;
    pub const RAFT: u16 = 21;
    pub const REDIRECT: u16 = 22;
    pub const CLUSTER_REQUEST: u16 = 23;
    pub const CLUSTER_STATUS: u16 = 24;

    pub fn type_id(&self) -> u16 {
        match self {
            Message::Hello(_) => Self::HELLO,
            Message::Welcome(_) => Self::WELCOME,
            Message::UnsupportedVersion(_) => Self::UNSUPPORTED_VERSION,
            Message::Report(_) => Self::REPORT,
            Message::Bid(_) => Self::BID,
            Message::Decisions(_) => Self::DECISIONS,
            Message::LeaseRenew(_) => Self::LEASE_RENEW,
            Message::LeaseRelease(_) => Self::LEASE_RELEASE,
            Message::Ack(_) => Self::ACK,
            Message::Error(_) => Self::ERROR,
            Message::Subscribe(_) => Self::SUBSCRIBE,
            Message::Inspect(_) => Self::INSPECT,
            Message::HostView(_) => Self::HOST_VIEW,
            Message::HostHistory(_) => Self::HOST_HISTORY,
            Message::Bids(_) => Self::BIDS,
            Message::Federation(_) => Self::FEDERATION,
            Message::Raft(_) => Self::RAFT,
            Message::Redirect(_) => Self::REDIRECT,
            Message::ClusterRequest(_) => Self::CLUSTER_REQUEST,
            Message::ClusterStatus(_) => Self::CLUSTER_STATUS,
        }
    }

    /// The type id this message travels under in a session of protocol `version`: from
    /// [`VERSION_PACKED`](super::VERSION_PACKED) on, `bids` and `decisions` go packed.
    pub fn type_id_for(&self, version: u16) -> u16 {
        match self {
            Message::Bids(_) if version >= super::VERSION_PACKED => Self::BIDS_PACKED,
            Message::Decisions(_) if version >= super::VERSION_PACKED => Self::DECISIONS_PACKED,
            _ => self.type_id(),
        }
    }

    /// The name in [`MESSAGE_TYPES`], for logs and errors.
    pub fn name(&self) -> &'static str {
        type_name(self.type_id()).unwrap_or("unknown")
    }
}

/// The name of a type id, if this build knows it.
pub fn type_name(type_id: u16) -> Option<&'static str> {
    MESSAGE_TYPES.iter().find(|(id, _)| *id == type_id).map(|(_, name)| *name)
}

/// The agent's opening: the versions it speaks and who it says it is. The arbiter
/// believes the certificate, not this field; a mismatch is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub min: u16,
    pub max: u16,
    pub host: HostId,
    /// Optional features the agent supports (`inspect`, ...); unknown ones are ignored.
    pub capabilities: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: u16,
    pub session: SessionId,
    /// The host the arbiter bound this session to (from the client certificate).
    pub host: HostId,
    /// How often the arbiter runs this host's market round, in ms.
    pub round_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsupportedVersion {
    pub supported_min: u16,
    pub supported_max: u16,
}

/// One round's decisions for the session's host. Each decision carries its lease
/// (id, start, expiry) and the bids that caused it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decisions {
    pub round: u64,
    pub at: Timestamp,
    pub decisions: Vec<Decision>,
}

/// Bids sent together (version 2 on): one frame, one read and one round wake-up for a whole
/// period's bids instead of one each. The arbiter checks and rate-limits every bid in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bids {
    pub bids: Vec<Bid>,
}

/// Ask to keep a lease for `extend_ms` more; answered by `Ack` or `Error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRenew {
    pub seq: u64,
    pub lease: LeaseId,
    pub extend_ms: u64,
}

/// Give a lease back early; answered by `Ack` or `Error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRelease {
    pub seq: u64,
    pub lease: LeaseId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub seq: u64,
}

/// A stable numeric error code. A number, not an enum, so an old peer can still decode
/// a code a newer peer invented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// A message named a host other than the certificate's.
    pub const HOST_MISMATCH: ErrorCode = ErrorCode(1);
    /// Reserved, no longer sent: workload ids are scoped to the session's host, so no host
    /// can name another's workload (docs/protocol.md, "Workload scope").
    pub const FOREIGN_WORKLOAD: ErrorCode = ErrorCode(2);
    /// The agent exceeded its message rate; the message was dropped.
    pub const RATE_LIMITED: ErrorCode = ErrorCode(3);
    /// Renew or release of a lease this host does not hold.
    pub const UNKNOWN_LEASE: ErrorCode = ErrorCode(4);
    /// The frame could not be decoded; the connection closes.
    pub const MALFORMED_FRAME: ErrorCode = ErrorCode(5);
    /// A valid message at the wrong time (e.g. a bid before `Hello`).
    pub const UNEXPECTED_MESSAGE: ErrorCode = ErrorCode(6);
    /// The arbiter is at its connection limit.
    pub const OVERLOADED: ErrorCode = ErrorCode(7);
    /// The arbiter is shutting down.
    pub const SHUTTING_DOWN: ErrorCode = ErrorCode(8);
    /// Version negotiation failed (also signalled by `UnsupportedVersion`).
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(9);
    /// A newer session for the same host replaced this one.
    pub const SUPERSEDED: ErrorCode = ErrorCode(10);
    /// The peer sent nothing usable in time (e.g. no `Hello`).
    pub const TIMEOUT: ErrorCode = ErrorCode(11);
    /// The peer does not read what it is sent; its queue overflowed.
    pub const SLOW_CONSUMER: ErrorCode = ErrorCode(12);
    /// This arbiter replica is not the raft leader (any more); a `redirect` names the leader.
    pub const NOT_LEADER: ErrorCode = ErrorCode(13);
    /// The message named a workload beyond the host's limit of distinct workloads per
    /// session (`max_workloads_per_host`); it was dropped, the session stays open.
    pub const TOO_MANY_WORKLOADS: ErrorCode = ErrorCode(14);

    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "host_mismatch",
            2 => "foreign_workload",
            3 => "rate_limited",
            4 => "unknown_lease",
            5 => "malformed_frame",
            6 => "unexpected_message",
            7 => "overloaded",
            8 => "shutting_down",
            9 => "unsupported_version",
            10 => "superseded",
            11 => "timeout",
            12 => "slow_consumer",
            13 => "not_leader",
            14 => "too_many_workloads",
            _ => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

/// A refusal. `seq` names the request it answers (for a bid: the bid id), if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    pub seq: Option<u64>,
    pub code: ErrorCode,
    pub message: String,
}
