//! A token bucket per agent: steady `rate` messages per second with bursts up to `burst`.
//! Pure: time is an argument.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_s: u32, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket { rate_per_s: f64::from(rate_per_s.max(1)), burst, tokens: burst, last: now }
    }

    /// Take one token, or say how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.ready(now)?;
        self.charge(1, now);
        Ok(())
    }

    /// Is at least one token there? If not, how long until there is.
    pub fn ready(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 { Ok(()) } else { Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate_per_s)) }
    }

    /// Pay for `n` messages that already arrived together (a `bids` frame). The balance may
    /// go below zero: the debt is repaid at the steady rate before [`TokenBucket::ready`]
    /// says yes again, so batching buys no extra rate. A frame's size bounds the debt.
    pub fn charge(&mut self, n: u32, now: Instant) {
        self.refill(now);
        self.tokens -= f64::from(n);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!((0..3).all(|_| b.take(t0).is_ok()));
        let wait = b.take(t0).expect_err("bucket should be empty");
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_batch_bigger_than_the_burst_is_repaid_at_the_steady_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 10, t0);
        assert!(b.ready(t0).is_ok());
        b.charge(50, t0);
        // 10 tokens - 50 = -40: one token is back after 41 tokens' worth of time (410 ms).
        let wait = b.ready(t0).expect_err("in debt");
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(411), "{wait:?}");
        assert!(b.ready(t0 + Duration::from_millis(300)).is_err());
        assert!(b.ready(t0 + Duration::from_millis(411)).is_ok());
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 2, t0);
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(later).is_ok());
        assert!(b.take(later).is_ok());
        assert!(b.take(later).is_err());
    }
}
