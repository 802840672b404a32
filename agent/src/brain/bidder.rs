//! Bidder: estimate + forecast + policy → a [`Bid`] with its reasons. The policy is written
//! down in `docs/bidding.md`; the constants here are its defaults.

use super::forecast::demand;
use super::policy::{Allocation, WorkloadPolicy};
use super::slo::SloVerdict;
use truce_common::estimate::{DemandForecast, InterferenceEstimate};
use truce_common::model::{Ask, Bid, BidId, Credits, Reason, Release, Resource, Timestamp, TradeOffer};
use truce_common::signal::WorkloadSample;

#[derive(Clone, Debug)]
pub struct BidderParams {
    /// Valuation per unit per second at urgency 1 (credits): cpu per millicore, memory per
    /// byte, io and net per byte/s.
    pub price_cpu: f64,
    pub price_memory: f64,
    pub price_io: f64,
    pub price_net: f64,
    /// A component's contribution at or above this asks for relief.
    pub contention_threshold: f64,
    /// Overload probability at or above this asks for headroom.
    pub overload_threshold: f64,
    /// Headroom kept above the forecast upper bound before anything is released.
    pub release_margin: f64,
    /// Surplus below this share of the allocation is not worth a release.
    pub min_release_share: f64,
    /// Share of a surplus resource offered in a trade ("give 10 % CPU for I/O").
    pub trade_share: f64,
    pub min_lease_ms: u64,
}

impl Default for BidderParams {
    fn default() -> BidderParams {
        BidderParams {
            // The arbiter market's opening prices (arbiter/src/market/pricing.rs): a bid at
            // urgency 1 meets the opening price, and urgency outbids a price that has risen.
            price_cpu: 1e-3,
            price_memory: 1e-9,
            price_io: 1e-8,
            price_net: 1e-8,
            contention_threshold: 0.1,
            overload_threshold: 0.2,
            release_margin: 0.2,
            min_release_share: 0.05,
            trade_share: 0.1,
            min_lease_ms: 10_000,
        }
    }
}

impl BidderParams {
    fn base_price(&self, r: &Resource) -> f64 {
        match r {
            Resource::Cpu => self.price_cpu,
            Resource::Memory => self.price_memory,
            Resource::Io { .. } => self.price_io,
            Resource::Net => self.price_net,
        }
    }
}

/// Everything the bidder looks at for one workload in one round.
#[derive(Debug)]
pub struct BidInput<'a> {
    pub sample: &'a WorkloadSample,
    pub period_ms: u64,
    pub estimate: &'a InterferenceEstimate,
    /// This workload's forecasts.
    pub forecasts: &'a [DemandForecast],
    pub policy: &'a WorkloadPolicy,
    pub allocation: Option<&'a Allocation>,
    pub slo: &'a SloVerdict,
}

fn reason(code: &str, detail: String) -> Reason {
    Reason { code: code.to_string(), detail }
}

fn contribution(e: &InterferenceEstimate, name: &str) -> Option<(f64, f64)> {
    e.components.iter().find(|c| c.name == name).map(|c| (c.contribution, c.value - c.baseline))
}

/// The bid for one workload, or `None` when it neither needs nor offers anything and is
/// within its SLO (nothing to say this round).
pub fn bid(p: &BidderParams, input: &BidInput<'_>, id: BidId, now: Timestamp) -> Option<Bid> {
    let policy = input.policy;
    let mut reasons: Vec<Reason> = Vec::new();
    let mut needs: Vec<(Resource, f64)> = Vec::new();
    let add_need = |r: Resource, amount: f64, needs: &mut Vec<(Resource, f64)>| {
        if let Some(n) = needs.iter_mut().find(|(x, _)| *x == r) {
            n.1 = n.1.max(amount);
        } else {
            needs.push((r, amount));
        }
    };
    let demand_now = demand(input.sample, input.period_ms);
    let current = |r: &Resource| demand_now.iter().find(|(x, _)| x == r).map(|(_, v)| *v).unwrap_or(0.0);

    // Contention: ask for what the workload would have used without waiting.
    if let Some((c, excess)) = contribution(input.estimate, "rq_delay_share")
        && c >= p.contention_threshold
    {
        let share = excess.clamp(0.0, 0.9);
        let extra = current(&Resource::Cpu) * share / (1.0 - share);
        add_need(Resource::Cpu, extra, &mut needs);
        reasons.push(reason(
            "cpu_contention",
            format!("waited {:.0}% of its runnable time in the run queue; asking {extra:.0} millicores", share * 100.0),
        ));
    }
    if let Some((c, _)) = contribution(input.estimate, "io_latency_inflation")
        && c >= p.contention_threshold
    {
        for d in &input.sample.io {
            let r = Resource::Io { dev: d.dev };
            let extra = current(&r) * (c / 0.5).min(1.0);
            if extra >= 1.0 {
                add_need(r, extra, &mut needs);
                reasons.push(reason("io_contention", format!("I/O latency on {} is inflated; asking {extra:.0} B/s", d.dev)));
            }
        }
    }
    // Forecast overload: ask for the forecast peak above the allocation.
    for f in input.forecasts {
        let (Some(prob), Some(alloc)) = (f.overload_probability, input.allocation.and_then(|a| a.get(&f.resource)))
        else {
            continue;
        };
        if prob >= p.overload_threshold && f.upper > alloc as f64 {
            add_need(f.resource, f.upper - alloc as f64, &mut needs);
            reasons.push(reason(
                "forecast_overload",
                format!(
                    "{} demand may exceed its allocation of {alloc} within {} s (p = {prob:.2}, upper {:.0}, model {})",
                    f.resource,
                    f.horizon_ms / 1000,
                    f.upper,
                    f.model
                ),
            ));
        }
    }
    // A breach with no other lead: ask for 10 % more CPU, the resource every SLO kind feels.
    if input.slo.breached() && needs.is_empty() {
        add_need(Resource::Cpu, current(&Resource::Cpu).max(100.0) * 0.1, &mut needs);
    }
    reasons.extend(input.slo.breaches.iter().cloned());
    reasons.extend(input.slo.unobserved.iter().cloned());

    // Asks, clamped to the ceiling.
    let mut asks = Vec::new();
    for (r, amount) in needs {
        let held = input.allocation.and_then(|a| a.get(&r)).map(|v| v as f64).unwrap_or_else(|| current(&r));
        let room = policy.bounds(&r).ceiling.map(|c| (c as f64 - held).max(0.0)).unwrap_or(f64::MAX);
        let amount = amount.min(room).ceil();
        if amount < 1.0 {
            reasons.push(reason("at_ceiling", format!("{r}: already at its configured ceiling")));
            continue;
        }
        let overload = input.forecasts.iter().find(|f| f.resource == r).and_then(|f| f.overload_probability);
        let urgency = (1.0 + input.estimate.score)
            * if input.slo.breached() { 2.0 } else { 1.0 }
            * (1.0 + overload.unwrap_or(0.0));
        asks.push(Ask { resource: r, amount: amount as u64, max_price: p.base_price(&r) * urgency });
    }

    // Releases: forecast surplus above the upper bound plus margin, never below the floor.
    let mut releases = Vec::new();
    if !input.slo.breached() {
        for f in input.forecasts {
            let Some(alloc) = input.allocation.and_then(|a| a.get(&f.resource)) else { continue };
            if asks.iter().any(|a| a.resource == f.resource) || f.anomaly {
                continue;
            }
            let keep = (f.upper * (1.0 + p.release_margin)).max(policy.bounds(&f.resource).floor.unwrap_or(0) as f64);
            let surplus = (alloc as f64 - keep).floor();
            if surplus >= p.min_release_share * alloc as f64 && surplus >= 1.0 {
                releases.push(Release { resource: f.resource, amount: surplus as u64, min_price: p.base_price(&f.resource) * 0.5 });
                reasons.push(reason(
                    "forecast_surplus",
                    format!(
                        "{}: forecast peak {:.0} (+{:.0}% margin) leaves {surplus:.0} of {alloc} unused for the lending pool",
                        f.resource,
                        f.upper,
                        p.release_margin * 100.0
                    ),
                ));
            }
        }
    }

    // Trades: pair each ask with another resource in surplus.
    let mut trades = Vec::new();
    for ask in &asks {
        let give = releases.iter().filter(|r| r.resource != ask.resource).max_by_key(|r| r.amount);
        if let Some(give) = give {
            let alloc = input.allocation.and_then(|a| a.get(&give.resource)).unwrap_or(give.amount);
            let give_amount = ((alloc as f64 * p.trade_share) as u64).clamp(1, give.amount);
            trades.push(TradeOffer { give: give.resource, give_amount, want: ask.resource, want_amount: ask.amount });
            reasons.push(reason(
                "trade",
                format!("offers {give_amount} of {} for {} of {}", give.resource, ask.amount, ask.resource),
            ));
        }
    }

    if asks.is_empty() && releases.is_empty() && trades.is_empty() && !input.slo.breached() {
        return None;
    }

    // Lease: the configured length, shortened while demand is anomalous or the SLO breached.
    let volatile = input.forecasts.iter().any(|f| f.anomaly) || input.slo.breached();
    let lease_ms = if volatile { (policy.lease_ms / 2).max(p.min_lease_ms) } else { policy.lease_ms.max(p.min_lease_ms) };
    if volatile {
        reasons.push(reason("short_lease", format!("anomalous demand or SLO breach: asking a {} s lease", lease_ms / 1000)));
    }

    // Willingness to pay: the asks at their max prices for the lease, capped by the budget.
    let secs = lease_ms as f64 / 1000.0;
    let cost: f64 = asks.iter().map(|a| a.amount as f64 * a.max_price * secs).sum();
    let cap = policy.budget_credits_per_hour * lease_ms as f64 / 3_600_000.0;
    if cost > cap && cost > 0.0 {
        let scale = cap / cost;
        for a in &mut asks {
            a.max_price *= scale;
        }
        reasons.push(reason(
            "budget_limited",
            format!("asks would cost {cost:.3} credits; the budget allows {cap:.3} for this lease, prices scaled down"),
        ));
    }
    let willingness_to_pay = Credits::from_credits(cost.min(cap));

    Some(Bid {
        id,
        workload: input.sample.workload.clone(),
        at: now,
        asks,
        releases,
        trades,
        willingness_to_pay,
        priority: policy.priority.max(1),
        slo_breach: input.slo.breached(),
        lease_ms,
        reasons,
    })
}

#[cfg(test)]
#[path = "bidder_tests.rs"]
mod tests;
