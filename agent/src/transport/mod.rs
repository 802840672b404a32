//! The QUIC client to the arbiter: mutual TLS with the host's certificate, the versioned
//! wire protocol (`truce_common::wire`), fail-over across arbiter replicas with jittered
//! exponential backoff, and a queue that never blocks the daemon.
//!
//! ```no_run
//! # async fn f(cfg: truce_agent::transport::ClientConfig) -> Result<(), truce_agent::transport::TransportError> {
//! use truce_agent::transport::{ArbiterClient, Inbound, Outbound};
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let (client, mut inbound) = ArbiterClient::spawn(cfg, cancel.clone())?;
//! // client.send(Outbound::Bid(bid)) from the bidder; decisions arrive on `inbound`:
//! while let Some(msg) = inbound.recv().await {
//!     if let Inbound::Decisions(d) = msg { /* hand to the enforcer */ let _ = d; }
//! }
//! cancel.cancel();
//! client.join().await;
//! # Ok(()) }
//! ```

mod backoff;
mod client;
mod config;
mod dial;
mod io;
mod outbox;
mod tls;

pub use backoff::Backoff;
pub use client::{ArbiterClient, ConnectionState, Inbound, Outbound};
pub use config::{ArbiterEndpoint, ClientConfig};
pub use dial::{Dialer, RawSession, TransportError};
pub use io::{FrameError, read_frame, write_frame};
pub use tls::TlsError;
pub use tokio_util::sync::CancellationToken;
/// For tools that speak the protocol by hand over [`RawSession`] (tests, benchmarks).
pub use quinn;
