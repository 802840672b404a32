//! Shared helpers for truce's integration tests: real processes, real cgroups, real QUIC.

pub mod cgroups;
pub mod config_doc;
pub mod workloads;
pub mod enforce;
pub mod vm_guest;
pub mod loopback;
pub mod agent_trace;
pub mod phase_stats;
pub mod probe_reading;
pub mod proc;
pub mod remote_arbiter;
pub mod scenario;
pub mod unit_file;
pub mod replicas;
pub mod sim_agents;
pub mod sites;
