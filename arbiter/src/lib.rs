//! truce-arbiter: accepts agents over QUIC with mutual TLS, runs one market round per host,
//! and keeps the credit ledger.

/// The credit ledger: a deterministic state machine over commands, persisted in redb.
pub mod ledger;
/// One market round per host: optimiser, prices, lending pool, reputation, SLO boost.
pub mod market;
/// QUIC server, sessions bound to mTLS identities, certificates.
pub mod server;
/// The configuration file and its validation into server settings.
pub mod config;
/// Cross-site migration by weighted vote.
pub mod federation;
/// Redundant arbiters: the ledger replicated with openraft over QUIC.
pub mod cluster;
/// QUIC between arbiter peers (replicas, sites) with peer certificates.
pub mod peer;
/// `serve` without the command line: replica, resolver, server, /metrics.
pub mod daemon;
