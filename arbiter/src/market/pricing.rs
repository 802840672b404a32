//! Prices per host and resource: tatonnement in bounded steps, and the lender premium.
//!
//! After each round, with `D` the demand priced in at the current price (every workload's
//! wanted level, floors included) and `C` the capacity, excess demand is `z = (D - C) / C`.
//! The next price is `p * (1 + clamp(gain * z, -max_step, +max_step))`, clamped to
//! `[floor, ceiling]`. So a host with twice the demand it can serve raises the price by at most
//! `max_step` per round, and an idle host lets it drift down by at most `max_step` per round.

use crate::ledger::{Price, REPUTATION_MAX};
use truce_common::model::Resource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PricingRule {
    pub gain: f64,
    /// Largest relative change per round (0.1 = 10 %).
    pub max_step: f64,
    /// Bounds per unit, in pico-credits per unit per second.
    pub floor: Price,
    pub ceiling: Price,
    /// Lenders above `premium_from` reputation earn up to `premium_max` (0.2 = +20 %) over the
    /// lending price, linearly in their reputation up to the maximum.
    pub premium_from: i64,
    pub premium_max: f64,
}

impl Default for PricingRule {
    fn default() -> Self {
        PricingRule {
            gain: 0.5,
            max_step: 0.10,
            floor: Price(1),
            ceiling: Price(1_000_000_000_000_000),
            premium_from: 6_000,
            premium_max: 0.20,
        }
    }
}

/// Where a resource's price starts on a host the ledger has no price for: one credit per
/// unit-of-account per second, the unit-of-account being a core, a GiB, or 100 MB/s.
pub fn initial_price(resource: Resource) -> Price {
    match resource {
        // 1 credit per core per second = 1e-3 credit per millicore per second.
        Resource::Cpu => Price(1_000_000_000),
        // 1 credit per GiB per second.
        Resource::Memory => Price(1_000_000_000_000 / (1 << 30)),
        // 1 credit per 100 MB/s per second.
        Resource::Io { .. } | Resource::Net => Price(10_000),
    }
}

impl PricingRule {
    /// The price for the next round given this round's priced-in demand and the capacity.
    pub fn next(&self, price: Price, demand: u128, capacity: u64) -> Price {
        if capacity == 0 {
            return price;
        }
        let z = (demand as f64 - capacity as f64) / capacity as f64;
        let step = (self.gain * z).clamp(-self.max_step, self.max_step);
        let next = (price.0 as f64 * (1.0 + step)).round();
        let next = if next.is_finite() {
            next.clamp(1.0, i64::MAX as f64) as i64
        } else {
            price.0
        };
        // A tiny price must still move when pressed: step at least one pico-credit.
        let next = if step > 0.0 && next == price.0 {
            next.saturating_add(1)
        } else {
            next
        };
        Price(next.clamp(self.floor.0.max(1), self.ceiling.0.max(self.floor.0.max(1))))
    }

    /// What a lender with `reputation` asks on top of `base`.
    pub fn lender_price(&self, base: Price, reputation: i64) -> Price {
        let span = (REPUTATION_MAX - self.premium_from).max(1) as f64;
        let above = (reputation - self.premium_from).clamp(0, REPUTATION_MAX) as f64;
        let premium = self.premium_max.max(0.0) * (above / span).min(1.0);
        Price(
            (base.0 as f64 * (1.0 + premium))
                .round()
                .clamp(1.0, i64::MAX as f64) as i64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_moves_with_excess_demand_in_bounded_steps() {
        let rule = PricingRule::default();
        let p = Price(1_000_000);
        // 20 % excess demand -> +10 % (gain 0.5).
        assert_eq!(rule.next(p, 1200, 1000), Price(1_100_000));
        // 10x demand is capped at +10 %.
        assert_eq!(rule.next(p, 10_000, 1000), Price(1_100_000));
        // Idle host: -10 % at most.
        assert_eq!(rule.next(p, 0, 1000), Price(900_000));
        // Balanced: unchanged.
        assert_eq!(rule.next(p, 1000, 1000), p);
        // Never below the floor.
        let floor = PricingRule {
            floor: Price(950_000),
            ..rule
        };
        assert_eq!(floor.next(p, 0, 1000), Price(950_000));
    }

    #[test]
    fn reputable_lenders_earn_a_capped_premium() {
        let rule = PricingRule::default();
        let base = Price(1_000_000);
        assert_eq!(rule.lender_price(base, 5_000), base);
        assert_eq!(rule.lender_price(base, 8_000), Price(1_100_000));
        assert_eq!(rule.lender_price(base, REPUTATION_MAX), Price(1_200_000));
    }
}
