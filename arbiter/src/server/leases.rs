//! One host's live leases, as the server last granted or renewed them. Pure: time is an
//! argument. Expiry is kept in a heap, so a round pays for the leases that lapsed since the
//! last one, not for every lease the host holds (a busy host holds thousands).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use truce_common::model::{Lease, LeaseId, Timestamp};

#[derive(Debug, Default)]
pub(crate) struct LeaseBook {
    leases: HashMap<LeaseId, Lease>,
    /// Every expiry ever set, soonest first; an entry whose lease has since been renewed or
    /// released is stale and skipped when it comes up.
    expiries: BinaryHeap<Reverse<(Timestamp, LeaseId)>>,
    /// A round has run for this host (so a new subscriber is shown its leases, even none).
    pub rounds_run: bool,
}

impl LeaseBook {
    pub fn insert(&mut self, lease: Lease) {
        self.expiries.push(Reverse((lease.expiry, lease.id)));
        self.leases.insert(lease.id, lease);
    }

    /// Forget the leases that lapsed at or before `now`.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some(Reverse((at, id))) = self.expiries.peek().copied() {
            if at > now {
                break;
            }
            self.expiries.pop();
            if self.leases.get(&id).is_some_and(|l| l.expiry == at) {
                self.leases.remove(&id);
            }
        }
    }

    /// Extend a live lease to at least `now + extend_ms`; false when there is no live lease `id`.
    pub fn renew(&mut self, id: LeaseId, now: Timestamp, extend_ms: u64) -> bool {
        let Some(lease) = self.leases.get_mut(&id).filter(|l| l.expiry > now) else { return false };
        let expiry = lease.expiry.max(now.plus_ms(extend_ms));
        if expiry != lease.expiry {
            lease.expiry = expiry;
            self.expiries.push(Reverse((expiry, id)));
        }
        true
    }

    /// Give a lease back; false when this host holds no lease `id`.
    pub fn release(&mut self, id: LeaseId) -> bool {
        self.leases.remove(&id).is_some()
    }

    /// The leases still live at `now`.
    pub fn live(&self, now: Timestamp) -> Vec<Lease> {
        self.leases.values().filter(|l| l.expiry > now).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use truce_common::model::{Lender, Resource, WorkloadId};

    fn lease(id: u64, expiry: u64) -> Lease {
        Lease {
            id: LeaseId(id),
            holder: WorkloadId(1),
            lender: Lender::Pool,
            resource: Resource::Cpu,
            amount: 1,
            price: 0.0,
            start: Timestamp(0),
            expiry: Timestamp(expiry),
        }
    }

    #[test]
    fn leases_lapse_at_their_expiry_and_renewal_moves_it() {
        let mut book = LeaseBook::default();
        book.insert(lease(1, 100));
        book.insert(lease(2, 200));
        assert!(book.renew(LeaseId(1), Timestamp(50), 500));
        book.expire(Timestamp(200));
        // Lease 2 lapsed; lease 1's old expiry (100) is stale and did not remove it.
        assert_eq!(book.live(Timestamp(200)).iter().map(|l| l.id.0).collect::<Vec<_>>(), vec![1]);
        assert!(!book.renew(LeaseId(2), Timestamp(200), 500), "a lapsed lease cannot be renewed");
        book.expire(Timestamp(550));
        assert_eq!(book.len(), 0);
    }

    #[test]
    fn renewing_a_lapsed_lease_before_expire_runs_is_refused() {
        let mut book = LeaseBook::default();
        book.insert(lease(1, 100));
        assert!(!book.renew(LeaseId(1), Timestamp(100), 500));
        assert!(book.live(Timestamp(100)).is_empty());
        assert!(book.release(LeaseId(1)), "release still finds it until it is expired");
        assert!(!book.release(LeaseId(1)));
    }
}
