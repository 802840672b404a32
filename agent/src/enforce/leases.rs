//! The agent's table of active leases. Pure: time is an argument.
//!
//! Several leases may touch the same slot (a cgroup file, or one device's line in it). The
//! newest active lease on a slot decides its value; when the last one lapses the slot goes
//! back to the journaled original. Nothing here needs the arbiter to revert. A new lease
//! replaces the older ones of its workload on the same resource ([`LeaseTable::supersede`]),
//! whichever knob they write.

use super::write::Slot;
use std::collections::BTreeMap;
use truce_common::model::{BidId, DecisionId, LeaseId, Reason, Resource, Setting, Timestamp};

#[derive(Clone, Debug, PartialEq)]
pub struct ActiveLease {
    pub id: LeaseId,
    /// cgroup path relative to the mount.
    pub cgroup: String,
    pub setting: Setting,
    pub slot: Slot,
    pub start: Timestamp,
    pub expiry: Timestamp,
    pub decision: DecisionId,
    pub bids: Vec<BidId>,
    /// The decision's reasons, kept for `truce-agent explain`.
    pub reasons: Vec<Reason>,
}

/// What the enforcer must do to a slot after the table changed.
#[derive(Clone, Debug, PartialEq)]
pub enum SlotAction {
    /// Another lease still holds the slot: write its setting.
    Apply(ActiveLease),
    /// No lease holds the slot any more: write the journaled original back.
    Restore { cgroup: String, slot: Slot },
}

#[derive(Debug, Default)]
pub struct LeaseTable {
    active: BTreeMap<LeaseId, ActiveLease>,
}

impl LeaseTable {
    pub fn len(&self) -> usize {
        self.active.len()
    }
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &ActiveLease> {
        self.active.values()
    }

    /// Add or replace a lease. One that has already lapsed is refused (`false`).
    pub fn grant(&mut self, lease: ActiveLease, now: Timestamp) -> bool {
        if lease.expiry <= now {
            return false;
        }
        self.active.insert(lease.id, lease);
        true
    }

    /// Extend a lease; unknown or lapsed leases are not revived.
    pub fn renew(&mut self, id: LeaseId, expiry: Timestamp, now: Timestamp) -> bool {
        match self.active.get_mut(&id) {
            Some(l) if l.expiry > now => {
                l.expiry = l.expiry.max(expiry);
                true
            }
            _ => false,
        }
    }

    /// Remove leases that lapsed at `now` and say what each touched slot needs.
    pub fn expire(&mut self, now: Timestamp) -> (Vec<ActiveLease>, Vec<SlotAction>) {
        let lapsed: Vec<LeaseId> = self.active.values().filter(|l| l.expiry <= now).map(|l| l.id).collect();
        self.remove(&lapsed)
    }

    /// Remove the given leases (released by the arbiter, or all of them at shutdown).
    pub fn remove(&mut self, ids: &[LeaseId]) -> (Vec<ActiveLease>, Vec<SlotAction>) {
        let removed: Vec<ActiveLease> = ids.iter().filter_map(|id| self.active.remove(id)).collect();
        let mut slots: Vec<(String, Slot)> = removed.iter().map(|l| (l.cgroup.clone(), l.slot.clone())).collect();
        slots.sort();
        slots.dedup();
        let actions = slots
            .into_iter()
            .map(|(cgroup, slot)| match self.holder(&cgroup, &slot) {
                Some(l) => SlotAction::Apply(l.clone()),
                None => SlotAction::Restore { cgroup, slot },
            })
            .collect();
        (removed, actions)
    }

    /// A workload holds each resource through its newest lease (the arbiter plans one holding
    /// per workload and resource, and a new lease replaces the last). Remove the older leases
    /// of `cgroup` on `resource`, whichever knob they write: left to lapse, a cut's `cpu.max`
    /// would keep throttling a workload the next round raised through `cpu.weight`, for the
    /// rest of its lease. Returns them and what their slots need, except the slot the newest
    /// lease holds (already written).
    pub fn supersede(&mut self, cgroup: &str, resource: Resource) -> (Vec<ActiveLease>, Vec<SlotAction>) {
        let same = || self.active.values().filter(|l| l.cgroup == cgroup && l.setting.resource() == resource);
        let Some(newest) = same().max_by_key(|l| (l.start, l.id)).map(|l| l.id) else { return (Vec::new(), Vec::new()) };
        let older: Vec<LeaseId> = same().map(|l| l.id).filter(|id| *id != newest).collect();
        let (removed, actions) = self.remove(&older);
        let actions = actions.into_iter().filter(|a| !matches!(a, SlotAction::Apply(l) if l.id == newest)).collect();
        (removed, actions)
    }

    /// The lease that decides a slot: the newest by start, then by id.
    pub fn holder(&self, cgroup: &str, slot: &Slot) -> Option<&ActiveLease> {
        self.active.values().filter(|l| l.cgroup == cgroup && &l.slot == slot).max_by_key(|l| (l.start, l.id))
    }

    pub fn all_ids(&self) -> Vec<LeaseId> {
        self.active.keys().copied().collect()
    }

    /// Leases that would lapse by `now`: the earliest expiry, for the next timer.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.active.values().map(|l| l.expiry).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::write::slot_of;

    fn lease(id: u64, cg: &str, weight: u32, start: u64, expiry: u64) -> ActiveLease {
        let setting = Setting::CpuWeight { weight };
        ActiveLease {
            id: LeaseId(id),
            cgroup: cg.into(),
            slot: slot_of(&setting),
            setting,
            start: Timestamp(start),
            expiry: Timestamp(expiry),
            decision: DecisionId(id),
            bids: vec![],
            reasons: vec![],
        }
    }

    #[test]
    fn lapsed_lease_restores_when_nothing_else_holds_the_slot() {
        let mut t = LeaseTable::default();
        assert!(t.grant(lease(1, "/a", 300, 0, 100), Timestamp(0)));
        assert_eq!(t.expire(Timestamp(99)).1, vec![]);
        let (gone, actions) = t.expire(Timestamp(100));
        assert_eq!(gone.len(), 1);
        assert_eq!(actions, vec![SlotAction::Restore { cgroup: "/a".into(), slot: slot_of(&Setting::CpuWeight { weight: 1 }) }]);
        assert!(t.is_empty());
    }

    #[test]
    fn older_lease_takes_over_when_newer_lapses() {
        let mut t = LeaseTable::default();
        t.grant(lease(1, "/a", 200, 0, 500), Timestamp(0));
        t.grant(lease(2, "/a", 400, 10, 100), Timestamp(10));
        assert_eq!(t.holder("/a", &lease(0, "/a", 1, 0, 1).slot).map(|l| l.id), Some(LeaseId(2)));
        let (_, actions) = t.expire(Timestamp(100));
        assert!(matches!(&actions[..], [SlotAction::Apply(l)] if l.id == LeaseId(1)));
    }

    fn with_setting(mut l: ActiveLease, setting: Setting) -> ActiveLease {
        l.slot = slot_of(&setting);
        l.setting = setting;
        l
    }

    #[test]
    fn a_raise_supersedes_the_cut_before_it_on_the_other_cpu_knob() {
        let mut t = LeaseTable::default();
        let cut = with_setting(lease(1, "/a", 1, 0, 10_000), Setting::CpuMax { millicores: 160, period_us: 100_000 });
        t.grant(cut.clone(), Timestamp(0));
        // Another workload's CPU and this one's memory are not this lease's business.
        t.grant(lease(2, "/b", 50, 0, 10_000), Timestamp(0));
        t.grant(with_setting(lease(3, "/a", 1, 0, 10_000), Setting::MemoryHigh { bytes: 1 << 30 }), Timestamp(0));
        t.grant(lease(4, "/a", 247, 500, 10_500), Timestamp(500));
        let (gone, actions) = t.supersede("/a", Resource::Cpu);
        assert_eq!(gone, vec![cut.clone()]);
        assert_eq!(actions, vec![SlotAction::Restore { cgroup: "/a".into(), slot: cut.slot }]);
        let mut left: Vec<u64> = t.iter().map(|l| l.id.0).collect();
        left.sort();
        assert_eq!(left, vec![2, 3, 4]);
    }

    #[test]
    fn an_older_lease_on_the_same_knob_goes_without_rewriting_the_newest() {
        let mut t = LeaseTable::default();
        t.grant(lease(1, "/a", 200, 0, 500), Timestamp(0));
        t.grant(lease(2, "/a", 400, 10, 100), Timestamp(10));
        let (gone, actions) = t.supersede("/a", Resource::Cpu);
        assert_eq!(gone.iter().map(|l| l.id).collect::<Vec<_>>(), vec![LeaseId(1)]);
        assert_eq!(actions, vec![], "the newest lease already holds the slot");
        // When the newest lapses, the slot goes back to the original, not to the replaced lease.
        let (_, actions) = t.expire(Timestamp(100));
        assert!(matches!(&actions[..], [SlotAction::Restore { .. }]), "{actions:?}");
    }

    #[test]
    fn a_stale_lease_granted_late_is_the_one_superseded() {
        let mut t = LeaseTable::default();
        t.grant(lease(2, "/a", 247, 500, 10_500), Timestamp(500));
        let stale = with_setting(lease(1, "/a", 1, 0, 10_000), Setting::CpuMax { millicores: 160, period_us: 100_000 });
        t.grant(stale.clone(), Timestamp(600));
        let (gone, actions) = t.supersede("/a", Resource::Cpu);
        assert_eq!(gone, vec![stale.clone()]);
        assert_eq!(actions, vec![SlotAction::Restore { cgroup: "/a".into(), slot: stale.slot }]);
    }

    #[test]
    fn renew_extends_but_never_revives() {
        let mut t = LeaseTable::default();
        t.grant(lease(1, "/a", 200, 0, 100), Timestamp(0));
        assert!(t.renew(LeaseId(1), Timestamp(200), Timestamp(50)));
        assert!(t.expire(Timestamp(150)).0.is_empty());
        assert!(!t.renew(LeaseId(1), Timestamp(900), Timestamp(200)));
        assert!(!t.grant(lease(3, "/a", 1, 0, 10), Timestamp(10)), "already lapsed");
    }
}
