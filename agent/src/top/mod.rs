//! `truce top`: the live view of what truce sees and why it acts.
//!
//! Pointed at the arbiter (`--arbiter ADDR --certs DIR`) it shows the cluster: hosts, then
//! workloads by interference with their top antagonist, CPU use / allocation / forecast,
//! price, credits, reputation and leases. Pointed at an agent's unix socket (`--agent PATH`)
//! it shows the host: workloads with sparklines of the last minutes, the who-delayed-whom
//! heat map, and the latest decisions with their reasons.
//!
//! [`model`] and [`render`] are pure (events in, rows and frames out); [`source`] and
//! [`app`] are the I/O edges (QUIC or the unix socket, the terminal, stdout).

pub mod app;
pub mod format;
pub mod model;
pub mod render;
pub mod source;
pub mod state;

pub use app::{TopArgs, run};
