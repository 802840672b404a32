//! One market round per host: optimiser, trade-offs, lending pool, prices, reputation, SLO
//! boost. The rules and units are documented in docs/market.md.
//!
//! [`Market::resolve`] is pure: it reads a [`HostBook`] and the [`LedgerState`], takes the
//! time as an argument, and returns decisions plus the ledger commands that make them true.
//! [`Exchange`] is the thin edge that applies those commands to the persistent ledger and only
//! then releases the decisions; [`MarketResolver`] plugs it into the QUIC server's
//! `server::RoundResolver` seam.
//!
//! [`LedgerState`]: crate::ledger::LedgerState

pub mod book;
pub mod boost;
mod budget;
mod decide;
pub mod exchange;
mod intake;
mod lending;
pub mod ledger_port;
pub mod optimiser;
pub mod pricing;
pub mod reputation;
pub mod round;
pub mod serve;
pub mod setting;
pub mod synthetic;
pub mod trades;

pub use book::{Bounds, HostBook, WorkloadSpec};
pub use boost::BoostRule;
pub use exchange::{Exchange, ExchangeError};
pub use ledger_port::{LedgerPort, StateRef, WriteError};
pub use optimiser::Strategy;
pub use pricing::PricingRule;
pub use reputation::ReputationRules;
pub use round::{ClosedLease, RoundOutcome};
pub use setting::CpuCut;
pub use serve::{HostDefaults, MarketResolver};

use truce_common::model::{HostId, Resource};

#[derive(Clone, Debug, PartialEq)]
pub struct MarketConfig {
    pub strategy: Strategy,
    /// Slack on the stage-1 fairness level in stage 2 (fraction of demand).
    pub fairness_epsilon: f64,
    /// Swap cost per unit moved, as a fraction of the resource's price.
    pub swap_fraction: f64,
    /// A workload that asks nothing for a resource demands what it used plus this fraction,
    /// up to its entitlement; an ask comes on top of the larger of entitlement and use.
    pub usage_headroom: f64,
    /// A lease is kept (renewed at its amount) while the new allocation exceeds it by less
    /// than this fraction of it: small upward moves do not close and reopen leases.
    pub lease_hysteresis: f64,
    /// Lease length for workloads without a bid (limits on lenders and cut workloads).
    pub default_lease_ms: u64,
    pub min_lease_ms: u64,
    pub max_lease_ms: u64,
    /// Bids further than this from `now` are stale.
    pub max_bid_age_ms: u64,
    /// cpu.max period for CPU limits.
    pub cpu_period_us: u64,
    /// How a CPU holding below the entitlement is enforced (quota or weight).
    pub cpu_cut: setting::CpuCut,
    pub pricing: PricingRule,
    pub reputation: ReputationRules,
    pub boost: BoostRule,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            strategy: Strategy::FairLp,
            fairness_epsilon: 1e-4,
            swap_fraction: 0.05,
            usage_headroom: 0.25,
            lease_hysteresis: 0.05,
            default_lease_ms: 10_000,
            min_lease_ms: 1_000,
            max_lease_ms: 120_000,
            max_bid_age_ms: 10_000,
            cpu_period_us: 100_000,
            cpu_cut: setting::CpuCut::Quota,
            pricing: PricingRule::default(),
            reputation: ReputationRules::default(),
            boost: BoostRule::default(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Market {
    pub config: MarketConfig,
}

impl Market {
    pub fn new(config: MarketConfig) -> Market {
        Market { config }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    #[error("cannot allocate {resource} on host {host}")]
    Optimiser {
        host: HostId,
        resource: Resource,
        #[source]
        source: optimiser::OptimiserError,
    },
}

#[cfg(test)]
mod tests;
