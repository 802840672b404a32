//! The forecaster's CPU budget. The costly models (ETS, MSTL, blend) cost tens of ms per refit
//! on hardware and about a second under emulation (qemu TCG), where the forecaster alone took
//! 15–26 % of a vCPU and the victim it was meant to help paid for it. The budget caps the
//! forecaster's own CPU time at a share of one CPU: refits of the costly models wait while it
//! is spent, the paths fitted last serve until they run out, then the cheap models (EWMA,
//! seasonal naive) serve alone. Nothing is invented: a forecast always names the model that
//! made it, and the deferred refits are counted.
//!
//! A token bucket of CPU time, pure (wall and CPU time are arguments): it fills at `share` of
//! the wall time that passes, up to `burst`, and each period's forecasting is charged its
//! measured thread CPU time afterwards. The balance may go below zero, since a refit's cost is
//! known only once it ran; refits wait until it is positive again.

use std::time::Duration;

/// How much CPU time the bucket holds at most, in wall time at the share: after a quiet
/// spell a few refits may run back to back, never more. The bucket starts empty, so the
/// share holds from the start too (a first bench run with a full minute's worth let the
/// forecaster spend 21 % of a vCPU over a 15 s phase).
const BURST_WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct CpuBudget {
    share: f64,
    /// Nanoseconds of CPU time available; negative after an expensive period.
    balance_ns: f64,
    burst_ns: f64,
    last_wall: Option<Duration>,
}

impl CpuBudget {
    /// `share` of one CPU (0 to 1; 0 never allows a costly refit).
    pub fn new(share: f64) -> CpuBudget {
        let share = share.clamp(0.0, 1.0);
        let burst_ns = share * BURST_WINDOW.as_nanos() as f64;
        CpuBudget { share, balance_ns: 0.0, burst_ns, last_wall: None }
    }

    /// Credit the wall time since the previous call (`wall` is any monotonic clock) and say
    /// whether costly refits may run now.
    pub fn allows(&mut self, wall: Duration) -> bool {
        if let Some(last) = self.last_wall {
            let passed = wall.saturating_sub(last).as_nanos() as f64;
            self.balance_ns = (self.balance_ns + passed * self.share).min(self.burst_ns);
        }
        self.last_wall = Some(wall);
        self.share > 0.0 && self.balance_ns > 0.0
    }

    /// Charge the CPU time one period of forecasting took.
    pub fn charge(&mut self, cpu: Duration) {
        self.balance_ns -= cpu.as_nanos() as f64;
    }

    pub fn share(&self) -> f64 {
        self.share
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn a_refit_that_overspends_waits_until_the_share_has_paid_for_it() {
        // 5 % of a CPU: a 1 s refit is paid back after 20 s of wall time.
        let mut b = CpuBudget::new(0.05);
        assert!(!b.allows(ms(0)), "the bucket starts empty");
        assert!(b.allows(ms(500)), "one period at the share pays for a start");
        b.charge(ms(25) + ms(1000)); // what it had, and one second more
        assert!(!b.allows(ms(1000)));
        assert!(!b.allows(ms(19_000)), "19 s at 5 % pays back 925 ms, not 1 s");
        assert!(b.allows(ms(20_600)));
    }

    #[test]
    fn cheap_periods_within_the_share_never_defer() {
        let mut b = CpuBudget::new(0.05);
        assert!(!b.allows(ms(0)));
        for t in 1..1000u64 {
            assert!(b.allows(ms(t * 500)), "period {t}");
            b.charge(ms(20)); // 4 % of a 500 ms period
        }
    }

    #[test]
    fn spending_above_the_share_settles_at_the_share() {
        // Every period wants 10 % of the CPU; refits run only in periods the budget allows, and
        // cheap periods cost 1 %: over time, CPU spent tends to the 5 % share.
        let mut b = CpuBudget::new(0.05);
        let mut spent = 0u64;
        let periods = 4000u64;
        for t in 0..periods {
            let cost = if b.allows(ms(t * 500)) { 50 } else { 5 };
            spent += cost;
            b.charge(ms(cost));
        }
        let share = spent as f64 / (periods * 500) as f64;
        assert!((0.045..0.056).contains(&share), "{share}");
    }

    #[test]
    fn the_balance_never_grows_past_the_burst() {
        let mut b = CpuBudget::new(0.05);
        assert!(!b.allows(ms(0)));
        assert!(b.allows(ms(3_600_000)), "an hour idle");
        b.charge(ms(501));
        assert!(!b.allows(ms(3_600_000)), "an idle hour banks at most 10 s at 5 %: 500 ms");
    }

    #[test]
    fn a_zero_share_never_allows_a_costly_refit() {
        let mut b = CpuBudget::new(0.0);
        assert!(!b.allows(ms(0)));
        assert!(!b.allows(ms(60_000)));
    }
}
