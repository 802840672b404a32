//! The leader lease: may this replica decide right now? openraft's metrics still call a
//! partitioned leader "leader" until it hears of a newer term, so the replica confirms its
//! leadership with a quorum round trip every heartbeat (`ensure_linearizable`) and trusts it
//! only for a while after the confirmation *started*: the followers that acknowledged it
//! accepted its heartbeat no earlier than that, and openraft makes a follower refuse every
//! vote for its leader lease (`election_timeout_max`) after accepting a heartbeat. Any
//! majority that could elect another leader includes one of them, so none exists before
//! `started + election_timeout_max`. [`Standing::judge`] turns that and what the replica heard
//! into an answer for agents. Pure: time is an argument.

use super::types::NodeId;
use crate::server::Leadership;
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

    /// When a quorum last confirmed this replica's leadership, in any term.
    pub fn confirmed_at(&self) -> Option<Instant> {
        self.confirmed.map(|(_, at)| at)
    }

    /// True while the last confirmation is for `term` and younger than the lease.
    pub fn holds(&self, term: u64, now: Instant) -> bool {
        self.confirmed.is_some_and(|(t, at)| t == term && now.saturating_duration_since(at) < self.length)
    }
}

/// What a replica knows about who leads, at one instant.
#[derive(Debug, Clone)]
pub struct Standing {
    pub id: NodeId,
    /// Whom raft's metrics call leader, and in which term.
    pub leader: Option<NodeId>,
    pub term: u64,
    /// That leader's agent address, from the membership.
    pub leader_addr: Option<String>,
    pub lease: LeaderLease,
    /// When this replica last accepted a heartbeat or entries from a leader.
    pub heard: Option<Instant>,
    /// A follower names its leader only if it heard from it this recently.
    pub fresh: Duration,
    /// How long after the last sign of a live leader an uncontested election has named the
    /// next (openraft's leader lease plus the longest election timeout, and a vote's trip).
    pub settles: Duration,
}

impl Standing {
    /// Serving only as a leader whose leadership a quorum confirmed within the lease; a
    /// follower names a leader it heard from lately; otherwise an election is under way until
    /// `settles` after the last sign of a live leader (a heartbeat accepted, or a quorum's
    /// confirmation of this replica), and after that nobody is known. A replica cut off from
    /// the majority has had no such sign since the cut, so it stops asking agents to wait
    /// one election after it.
    pub fn judge(&self, now: Instant) -> Leadership {
        let (id, term) = (self.id, self.term);
        let electing = |reason: String| match self.heard.max(self.lease.confirmed_at()) {
            Some(seen) if now < seen + self.settles => Leadership::Electing { reason, settles_by: seen + self.settles },
            _ => Leadership::Elsewhere { leader: None, reason },
        };
        match self.leader {
            Some(l) if l == id && self.lease.holds(term, now) => Leadership::Serving,
            Some(l) if l == id => electing(format!("replica {id} leads term {term} but no majority confirmed it within {} ms", self.lease.length.as_millis())),
            // A leader not heard from for an election timeout is likely dead or cut off:
            // naming it would send agents to wait on it.
            Some(l) => match self.heard {
                Some(at) if now.saturating_duration_since(at) < self.fresh => {
                    Leadership::Elsewhere { leader: self.leader_addr.clone(), reason: format!("replica {id} is a follower; replica {l} leads term {term}") }
                }
                _ => electing(format!("replica {id} has not heard from replica {l} (term {term}) for {} ms", self.fresh.as_millis())),
            },
            None => electing(format!("replica {id} knows no leader in term {term}")),
        }
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

    fn standing(leader: Option<NodeId>, heard: Option<Instant>) -> Standing {
        Standing {
            id: 2,
            leader,
            term: 7,
            leader_addr: Some("10.0.0.1:7447".into()),
            lease: LeaderLease::new(Duration::from_millis(600)),
            heard,
            fresh: Duration::from_millis(400),
            settles: Duration::from_millis(1850),
        }
    }

    #[test]
    fn a_follower_names_a_leader_it_heard_lately_and_waits_out_an_election_after_one_it_did_not() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let live = standing(Some(1), Some(t0));
        assert!(matches!(live.judge(t0 + ms(100)), Leadership::Elsewhere { leader: Some(ref a), .. } if a == "10.0.0.1:7447"));
        // Silent for longer than `fresh`: an election is due by heard + settles.
        assert_eq!(live.judge(t0 + ms(500)), Leadership::Electing { reason: "replica 2 has not heard from replica 1 (term 7) for 400 ms".into(), settles_by: t0 + ms(1850) });
        // The metrics lost the leader (a candidate): still the same election.
        assert!(matches!(standing(None, Some(t0)).judge(t0 + ms(1000)), Leadership::Electing { settles_by, .. } if settles_by == t0 + ms(1850)));
        // Past the election's time (a replica cut off from the majority): nobody is known,
        // and agents are not asked to wait again.
        assert!(matches!(live.judge(t0 + ms(1850)), Leadership::Elsewhere { leader: None, .. }));
        // Never heard of any leader (a group just starting): nothing to wait for.
        assert!(matches!(standing(None, None).judge(t0), Leadership::Elsewhere { leader: None, .. }));
    }

    #[test]
    fn a_leader_serves_only_under_a_confirmed_lease_and_a_fresh_one_waits_for_its_confirmation() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = standing(Some(2), Some(t0));
        // Just elected, heard from the old leader at t0, not yet confirmed: electing.
        assert!(matches!(s.judge(t0 + ms(1200)), Leadership::Electing { .. }));
        s.lease.confirm(7, t0 + ms(1300));
        assert_eq!(s.judge(t0 + ms(1400)), Leadership::Serving);
        // The lease ran out without a new confirmation (cut off): electing until one
        // election after the confirmation, then nobody.
        assert!(matches!(s.judge(t0 + ms(1900)), Leadership::Electing { settles_by, .. } if settles_by == t0 + ms(1300 + 1850)));
        assert!(matches!(s.judge(t0 + ms(3150)), Leadership::Elsewhere { leader: None, .. }));
        // A confirmation of an older term does not make it serve in this one.
        let mut old = standing(Some(2), None);
        old.lease.confirm(6, t0);
        assert!(matches!(old.judge(t0 + ms(10)), Leadership::Electing { .. }));
    }
}
