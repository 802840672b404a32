//! Jittered exponential backoff ("full jitter"): the delay is uniform in
//! `[min, min(max, min × 2^attempt)]`, so agents that lost the arbiter together do not
//! come back together. Pure: the random source is a seeded generator.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff { min, max: max.max(min), attempt: 0, rng: seed }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.min.saturating_mul(1u32 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let span = ceiling.saturating_sub(self.min).as_micros() as u64;
        let jitter = if span == 0 { 0 } else { self.next_u64() % (span + 1) };
        self.min + Duration::from_micros(jitter)
    }

    // splitmix64: plenty for spreading reconnects; not for anything secret.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A per-process seed so that agents started together still spread out.
pub fn seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_bounds_and_reset() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(min, max, 42);
        let mut ceilings = Vec::new();
        for attempt in 0..10u32 {
            let d = b.next_delay();
            let ceiling = (min * 2u32.pow(attempt)).min(max);
            assert!(d >= min && d <= ceiling, "attempt {attempt}: {d:?} outside [{min:?}, {ceiling:?}]");
            ceilings.push(ceiling);
        }
        assert_eq!(ceilings.last(), Some(&max));
        b.reset();
        assert!(b.next_delay() == min, "first delay after reset is the minimum");
    }

    #[test]
    fn jitter_spreads_agents_with_different_seeds() {
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|seed| {
                let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), seed);
                (0..5).map(|_| b.next_delay()).last().unwrap_or_default()
            })
            .collect();
        assert!(delays.len() > 10, "only {} distinct delays from 20 seeds", delays.len());
    }
}
