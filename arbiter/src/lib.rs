//! truce-arbiter: accepts agents over QUIC with mutual TLS, runs one market round per host,
//! and keeps the credit ledger.
