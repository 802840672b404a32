//! Federation across sites: each site forecasts its hosts' utilisation; when a host's
//! overload probability passes the threshold it proposes migrating workloads to a peer site;
//! the peers vote, each vote weighted by the voter's recent forecast accuracy (1/MASE) and the
//! criticality of its workloads at stake; an accepted migration runs through an
//! [`executor::MigrationExecutor`] and is watched, then confirmed, rolled back, or replaced by
//! an alternative. docs/federation.md has the formulas.
//!
//! [`site::Site`] is the pure core (time is an argument, effects are returned as actions);
//! [`crate::peer`] carries messages between sites over QUIC (ALPN `truce-fed/1`, same CA, peer
//! certificates); [`runtime`] ties the two to an executor.

pub mod accuracy;
pub mod config;
pub mod daemon;
pub mod executor;
pub mod forecast;
pub mod kube;
pub mod observe;
pub mod plan;
pub mod pod_cgroup;
pub mod runtime;
pub mod section;
pub mod site;
pub mod vote;
pub mod watch;

pub use config::SiteConfig;
pub use forecast::ForecastModel;
pub use site::{Action, HostObservation, MigrationOrder, OrderAction, OrderRole, Site};
pub use vote::VoteRules;
