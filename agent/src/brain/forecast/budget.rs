//! The forecaster's CPU budget. The costly models (ETS, MSTL, blend) cost tens of ms per refit
//! on hardware and about a second under emulation (qemu TCG), where the forecaster alone took
//! 15–26 % of a vCPU and the victim it was meant to help paid for it. The budget caps the
//! forecaster's own CPU time at a share of one CPU. While it is spent, periods are only
//! recorded (the value joins each series' history, no model runs) and the last forecasts
//! serve; a budget on the costly refits alone was not enough, since under emulation the
//! cheap models' every-period work (scoring, EWMA, seasonal naive) took about 9 % of a vCPU
//! on its own. Nothing is invented: a forecast always names the model that made it and the
//! time it was made, and the refits that waited are counted.
//!
//! A token bucket of CPU time, pure (wall and CPU time are arguments): it fills at `share` of
//! the wall time that passes, up to `burst`, and each period's forecasting is charged its
//! measured thread CPU time afterwards. The balance may go below zero, since a refit's cost is
//! known only once it ran; the forecaster only records until it is positive again. A costly
//! refit is paid for up front: it runs only when the bucket holds what the last ones cost
//! (learned; 250 ms assumed before the first), so a short window sees at most one refit
//! beyond the share instead of one at every positive balance.

use std::time::Duration;

/// How much CPU time the bucket holds at most, in wall time at the share: after a quiet
/// spell a few refits may run back to back, never more. The bucket starts empty, so the
/// share holds from the start too (a first bench run with a full minute's worth let the
/// forecaster spend 21 % of a vCPU over a 15 s phase).
const BURST_WINDOW: Duration = Duration::from_secs(10);

/// What one series' costly refit is assumed to cost before one was measured: pessimistic on
/// hardware (a few ms to 30 ms), so the first refit waits until the bucket holds it (25 s at
/// the default 1 %) rather than overspending at start-up; under emulation it is about a second.
const FIRST_REFIT_ESTIMATE: Duration = Duration::from_millis(250);

/// How much of its work the forecaster may do this period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    /// Only record the values: the budget is spent.
    Record,
    /// Score and forecast with the cheap models; costly refits wait (their last paths serve).
    Cheap,
    /// All of it, with up to `refits` costly model refits (what the bucket holds at their
    /// learned cost, at least one); further due refits wait.
    Full { refits: u64 },
}

#[derive(Clone, Debug)]
pub struct CpuBudget {
    share: f64,
    /// Nanoseconds of CPU time available; negative after an expensive period.
    balance_ns: f64,
    burst_ns: f64,
    /// What one costly refit costs, learned from the periods that ran them.
    refit_ns: f64,
    last_wall: Option<Duration>,
}

impl CpuBudget {
    /// `share` of one CPU (0 to 1; 0 never allows any forecasting).
    pub fn new(share: f64) -> CpuBudget {
        let share = share.clamp(0.0, 1.0);
        let burst_ns = share * BURST_WINDOW.as_nanos() as f64;
        CpuBudget { share, balance_ns: 0.0, burst_ns, refit_ns: FIRST_REFIT_ESTIMATE.as_nanos() as f64, last_wall: None }
    }

    /// Credit the wall time since the previous call (`wall` is any monotonic clock) and say
    /// how much the forecaster may do this period. A costly refit is paid for before it runs
    /// (the bucket must hold its learned cost), so no window sees more than one refit beyond
    /// the share; cheap periods run on any positive balance.
    pub fn effort(&mut self, wall: Duration) -> Effort {
        if let Some(last) = self.last_wall {
            let passed = wall.saturating_sub(last).as_nanos() as f64;
            // The bucket holds at least one refit, or a refit dearer than the burst would
            // never run.
            self.balance_ns = (self.balance_ns + passed * self.share).min(self.burst_ns.max(self.refit_ns));
        }
        self.last_wall = Some(wall);
        if self.share <= 0.0 || self.balance_ns <= 0.0 {
            Effort::Record
        } else if self.balance_ns < self.refit_ns {
            Effort::Cheap
        } else {
            Effort::Full { refits: (self.balance_ns / self.refit_ns.max(1.0)) as u64 }
        }
    }

    /// Charge the CPU time one period of forecasting took, in which `refits` costly model
    /// refits ran (their cost per refit, cheap work included, updates the estimate).
    pub fn charge(&mut self, cpu: Duration, refits: u64) {
        let cpu_ns = cpu.as_nanos() as f64;
        self.balance_ns -= cpu_ns;
        if refits > 0 {
            self.refit_ns = 0.5 * self.refit_ns + 0.5 * cpu_ns / refits as f64;
        }
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
        assert_eq!(b.effort(ms(0)), Effort::Record, "the bucket starts empty");
        assert_eq!(b.effort(ms(500)), Effort::Cheap, "one period at the share pays for cheap work");
        b.charge(ms(25) + ms(1000), 0); // what it had, and one second more
        assert_eq!(b.effort(ms(1000)), Effort::Record);
        assert_eq!(b.effort(ms(19_000)), Effort::Record, "19 s at 5 % pays back 925 ms, not 1 s");
        assert_ne!(b.effort(ms(20_600)), Effort::Record);
    }

    #[test]
    fn cheap_periods_within_the_share_never_defer() {
        let mut b = CpuBudget::new(0.05);
        assert_eq!(b.effort(ms(0)), Effort::Record);
        for t in 1..1000u64 {
            assert_ne!(b.effort(ms(t * 500)), Effort::Record, "period {t}");
            b.charge(ms(20), 0); // 4 % of a 500 ms period
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
            let (cost, refits) = match b.effort(ms(t * 500)) {
                Effort::Full { .. } => (50, 1),
                Effort::Cheap => (5, 0),
                Effort::Record => (0, 0),
            };
            spent += cost;
            b.charge(ms(cost), refits);
        }
        let share = spent as f64 / (periods * 500) as f64;
        assert!((0.045..0.056).contains(&share), "{share}");
    }

    #[test]
    fn a_costly_refit_waits_until_the_bucket_holds_what_the_last_one_cost() {
        // Under emulation a refit costs a second: at 5 % the next may run 20 s later, not as
        // soon as the balance is positive again.
        let mut b = CpuBudget::new(0.05);
        assert_eq!(b.effort(ms(0)), Effort::Record);
        assert_eq!(b.effort(ms(5_000)), Effort::Full { refits: 1 }, "5 s at 5 % holds the first estimate, 250 ms");
        b.charge(ms(1_000), 1);
        // The estimate is now (250 + 1000) / 2 = 625 ms; the balance -750 ms.
        assert_eq!(b.effort(ms(20_000)), Effort::Record, "15 s paid back the 750 ms: nothing left");
        assert_eq!(b.effort(ms(21_000)), Effort::Cheap, "50 ms: enough for cheap work, not for a refit");
        assert_eq!(b.effort(ms(32_000)), Effort::Cheap, "600 ms: still short of 625 ms");
        assert_eq!(b.effort(ms(33_000)), Effort::Full { refits: 1 });
    }

    #[test]
    fn the_balance_never_grows_past_the_burst() {
        let mut b = CpuBudget::new(0.05);
        assert_eq!(b.effort(ms(0)), Effort::Record);
        assert_eq!(b.effort(ms(3_600_000)), Effort::Full { refits: 2 }, "an hour idle: 500 ms, two refits at 250 ms");
        b.charge(ms(501), 0);
        assert_eq!(b.effort(ms(3_600_000)), Effort::Record, "an idle hour banks at most 10 s at 5 %: 500 ms");
    }

    #[test]
    fn a_zero_share_never_allows_a_costly_refit() {
        let mut b = CpuBudget::new(0.0);
        assert_eq!(b.effort(ms(0)), Effort::Record);
        assert_eq!(b.effort(ms(60_000)), Effort::Record);
    }
}
