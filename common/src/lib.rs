//! Types shared by the kernel side (`truce-agent-ebpf`, `no_std`) and user space.
//!
//! Without features this crate is `no_std` and holds only the kernel/user ABI
//! ([`abi`]) and the map/program names ([`names`]). The `user` feature adds the
//! domain model, per-period signal samples and the versioned wire protocol.
#![cfg_attr(not(any(feature = "user", feature = "metrics")), no_std)]

pub mod abi;
#[cfg(feature = "user")]
pub mod chain;
#[cfg(feature = "user")]
pub mod estimate;
/// The Prometheus `/metrics` endpoint of agent and arbiter.
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod names;

#[cfg(feature = "user")]
pub mod model;
#[cfg(feature = "user")]
pub mod signal;
#[cfg(feature = "user")]
pub mod wire;
