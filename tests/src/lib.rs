//! Shared helpers for truce's integration tests: real processes, real cgroups, real QUIC.
