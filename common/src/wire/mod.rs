//! The versioned agent <-> arbiter wire protocol.
//!
//! A connection carries one bidirectional QUIC stream of frames (ALPN [`ALPN`]):
//!
//! ```text
//! +----------------+----------------+------------------------------------+
//! | length: u32 BE | type id: u16 BE| body: MessagePack, named fields     |
//! +----------------+----------------+------------------------------------+
//!   length counts the type id and the body; it is checked against the
//!   receiver's maximum before a single body byte is read or parsed.
//! ```
//!
//! The agent opens with [`Hello`]; the arbiter answers [`Welcome`] with the highest
//! version both speak, or [`UnsupportedVersion`] and closes. Bodies use
//! `rmp_serde::to_vec_named`, so fields can be added without renumbering anything.
//! Type ids come from [`MESSAGE_TYPES`] and are never renumbered or reused
//! (docs/protocol.md keeps the table and the retired ids).

mod cluster;
mod codec;
mod error;
mod federation;
mod host_view;
mod inspect;
mod message;
mod report;
#[cfg(feature = "quic")]
mod socket;
#[cfg(feature = "quic")]
mod stream;
mod value_len;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod roundtrip;

pub use codec::{FRAME_HEADER_LEN, decode_frame, decode_payload, encode, encode_for, encode_into, frame_len};
pub use cluster::{ClusterMember, ClusterOp, ClusterRequest, ClusterStatus, RaftFrame, RaftKind, Redirect};
pub use error::{DecodeError, EncodeError};
pub use federation::{
    CountedVote, FederationMessage, HostForecast, MigrationProposal, MigrationVerdict, MigrationVote, MigrationWorkload,
    PodRef, ProposalId, SiteStatus, VoteTally,
};
pub use host_view::{CAP_OBSERVER, EnforcedLease, HostHistory, HostView, WorkloadSeries};
pub use inspect::{
    Account, HostSnapshot, InspectEvent, InspectFilter, InspectKind, Price, Subscribe, WorkloadSummary,
};
pub use message::{
    Ack, Bids, Decisions, ErrorCode, ErrorMessage, Hello, LeaseRelease, LeaseRenew, MESSAGE_TYPES, Message,
    RETIRED_TYPE_IDS, SessionId, UnsupportedVersion, Welcome, type_name,
};
pub use report::{Capacity, Inventory, ManagedWorkload, Report, ResourceBounds, SignalSummary, WorkloadReport};
#[cfg(feature = "quic")]
pub use socket::{EndpointSocket, UDP_BUFFER_BYTES, bind_endpoint_socket, endpoint_on};
#[cfg(feature = "quic")]
pub use stream::{FrameError, read_frame, write_frame};

/// The ALPN protocol id both endpoints require; a peer without it fails the TLS handshake.
pub const ALPN: &[u8] = b"truce/1";
/// ALPN of raft traffic and cluster administration between arbiter replicas.
pub const RAFT_ALPN: &[u8] = b"truce-raft/1";
/// ALPN of site-to-site federation traffic.
pub const FEDERATION_ALPN: &[u8] = b"truce-fed/1";

/// Oldest protocol version this build speaks.
pub const VERSION_MIN: u16 = 1;
/// Newest protocol version this build speaks. Version 2 adds `bids` (several bids in one
/// frame); version 3 sends `bids` and `decisions` packed (structs as arrays, ids 16 and 17).
/// Everything else is as in version 1, so version 1 and 2 peers are still served.
pub const VERSION_MAX: u16 = 3;
/// The first version in which an agent may send [`Bids`].
pub const VERSION_BIDS: u16 = 2;
/// The first version in which `bids` and `decisions` travel packed ([`encode_for`]).
pub const VERSION_PACKED: u16 = 3;

/// Default hard limit on one frame (type id + body). A report for a few hundred workloads
/// with estimates and forecasts fits in well under this; anything bigger is an attack or a bug.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;

/// The highest version in both `[min, max]` and ours, or `None` when the ranges do not meet.
pub fn negotiate(min: u16, max: u16) -> Option<u16> {
    let hi = max.min(VERSION_MAX);
    let lo = min.max(VERSION_MIN);
    (min <= max && lo <= hi).then_some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiate_picks_highest_common_version() {
        assert_eq!(negotiate(1, 1), Some(1));
        assert_eq!(negotiate(1, 2), Some(2));
        assert_eq!(negotiate(1, 3), Some(3));
        assert_eq!(negotiate(1, 7), Some(VERSION_MAX));
        assert_eq!(negotiate(0, 1), Some(1));
    }

    #[test]
    fn negotiate_refuses_disjoint_or_inverted_ranges() {
        assert_eq!(negotiate(VERSION_MAX + 1, VERSION_MAX + 5), None);
        assert_eq!(negotiate(0, 0), None);
        assert_eq!(negotiate(1, 0), None);
    }
}
