//! The leader lease: may this replica decide right now? openraft's metrics still call a
//! partitioned leader "leader" until it hears of a newer term, so the replica confirms its
//! leadership with a quorum round trip every heartbeat (`ensure_linearizable`) and trusts it
//! only for a while after the confirmation *started*: the followers that acknowledged it
//! accepted its heartbeat no earlier than that, and openraft makes a follower refuse every
//! vote for its leader lease (`election_timeout_max`) after accepting a heartbeat. Any
//! majority that could elect another leader includes one of them, so none exists before
//! `started + election_timeout_max`. Pure: time is an argument.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderLease {
    /// How long one confirmation is trusted; below openraft's leader lease.
    pub length: Duration,
    confirmed: Option<(u64, Instant)>,
}

impl LeaderLease {
    pub fn new(length: Duration) -> LeaderLease {
        LeaderLease { length, confirmed: None }
    }

    /// A quorum confirmed this replica as leader of `term`, for a request sent at `started`.
    pub fn confirm(&mut self, term: u64, started: Instant) {
        if self.confirmed.is_none_or(|(t, at)| term > t || (term == t && started > at)) {
            self.confirmed = Some((term, started));
        }
    }

    /// True while the last confirmation is for `term` and younger than the lease.
    pub fn holds(&self, term: u64, now: Instant) -> bool {
        self.confirmed.is_some_and(|(t, at)| t == term && now.saturating_duration_since(at) < self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_holds_for_its_term_until_the_lease_runs_out() {
        let t0 = Instant::now();
        let mut lease = LeaderLease::new(Duration::from_millis(450));
        assert!(!lease.holds(1, t0), "never confirmed");
        lease.confirm(3, t0);
        assert!(lease.holds(3, t0 + Duration::from_millis(449)));
        assert!(!lease.holds(3, t0 + Duration::from_millis(450)), "expired");
        assert!(!lease.holds(4, t0 + Duration::from_millis(10)), "a newer term needs its own confirmation");
        // An older confirmation arriving late does not move the lease back.
        lease.confirm(3, t0 + Duration::from_millis(300));
        lease.confirm(3, t0 + Duration::from_millis(100));
        assert!(lease.holds(3, t0 + Duration::from_millis(700)));
        assert!(!lease.holds(3, t0 + Duration::from_millis(750)));
    }
}
