//! SLO boost: a breach flag multiplies a workload's utility for a bounded time, decaying
//! linearly back to 1.

use truce_common::model::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoostRule {
    /// Multiplier right after a breach (>= 1).
    pub factor: f64,
    /// How long the boost lasts after the last breach flag, in ms.
    pub hold_ms: u64,
}

impl Default for BoostRule {
    fn default() -> Self {
        BoostRule {
            factor: 3.0,
            hold_ms: 30_000,
        }
    }
}

impl BoostRule {
    /// `factor` at the breach, falling linearly to 1 at `breach + hold_ms`, 1 after and
    /// without a breach. A breach flag in every bid keeps it at `factor`, never above.
    pub fn multiplier(&self, last_breach: Option<Timestamp>, now: Timestamp) -> f64 {
        let Some(at) = last_breach else { return 1.0 };
        let factor = self.factor.max(1.0);
        if self.hold_ms == 0 || now < at {
            return if now < at { factor } else { 1.0 };
        }
        let elapsed = now.ms_since(at);
        if elapsed >= self.hold_ms {
            return 1.0;
        }
        1.0 + (factor - 1.0) * (1.0 - elapsed as f64 / self.hold_ms as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boost_is_bounded_and_decays_to_one() {
        let rule = BoostRule {
            factor: 3.0,
            hold_ms: 10_000,
        };
        let t0 = Timestamp(1_000_000);
        assert_eq!(rule.multiplier(None, t0), 1.0);
        assert_eq!(rule.multiplier(Some(t0), t0), 3.0);
        assert!((rule.multiplier(Some(t0), t0.plus_ms(5_000)) - 2.0).abs() < 1e-12);
        assert_eq!(rule.multiplier(Some(t0), t0.plus_ms(10_000)), 1.0);
        assert_eq!(rule.multiplier(Some(t0), t0.plus_ms(99_000)), 1.0);
        let mut last = f64::INFINITY;
        for ms in (0..=10_000).step_by(500) {
            let m = rule.multiplier(Some(t0), t0.plus_ms(ms));
            assert!(
                (1.0..=3.0).contains(&m) && m <= last,
                "monotone decay at {ms} ms: {m}"
            );
            last = m;
        }
    }
}
