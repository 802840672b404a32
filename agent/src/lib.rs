//! truce-agent: one per host. Loads the eBPF probes, collects per-workload signals,
//! estimates interference, forecasts demand, bids, and enforces decisions as cgroup v2 leases.
//!
//! The pure core (`brain`) takes time as an argument and does no I/O; `probes`,
//! `collect`, `cgroupfs` and `transport` are the thin I/O edges around it.

/// Pure core: estimator, attribution, forecaster, bidder.
pub mod brain;
/// cgroup v2 discovery, naming and file readers.
pub mod cgroupfs;
/// Turns probe snapshots and cgroup files into per-period samples.
pub mod collect;
/// The daemon configuration file.
pub mod config;
/// cgroup v2 writes held by leases, journaled and confined.
pub mod enforce;
/// One module per subcommand.
pub mod cmd;
/// What the agent sees, for operators: the host view on a unix socket, Prometheus metrics.
pub mod inspect;
/// Loads and owns the eBPF programs.
pub mod probes;
/// Start-up checks: what this host lets the agent observe and enforce (`doctor`).
pub mod readiness;
/// `truce top`: the live terminal view of an agent or of the arbiter.
pub mod top;
/// The QUIC client to the arbiter.
pub mod transport;
/// Workload policies from TOML: priority, SLO, floors and ceilings, budget.
pub mod workload_config;
