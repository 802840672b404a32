//! Enforcement: decisions become cgroup v2 writes, each held by a lease that reverts on its
//! own — when it lapses without renewal, on shutdown, and after a crash (journal replay).
//! Originals are journaled before the first write; writes stay under the configured roots;
//! floors keep every workload alive; every write leaves one structured audit line.

mod confine;
mod journal;
mod leases;
mod status;
mod write;

pub use confine::{Confinement, ConfinementError, Scope, holds, under_roots};
pub use journal::{Journal, JournalError};
pub use leases::{ActiveLease, LeaseTable, SlotAction};
pub use status::{BidStatus, LeaseStatus, Status, WorkloadStatus, status_path};
pub use write::{Floors, PlannedWrite, SettingError, Slot, original_of, plan, slot_of};

use std::path::PathBuf;
use truce_common::model::{Decision, LeaseId, Setting, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("refused decision for {cgroup}")]
    Confinement {
        cgroup: String,
        #[source]
        source: ConfinementError,
    },
    #[error("refused decision for {cgroup}")]
    Setting {
        cgroup: String,
        #[source]
        source: SettingError,
    },
    #[error("failed to {action} {file} in cgroup {cgroup}")]
    Io {
        cgroup: String,
        file: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("lease {lease:?} for {cgroup} had already lapsed")]
    Lapsed { cgroup: String, lease: LeaseId },
    #[error("lease {lease:?} for {cgroup} is older than lease {newer:?}, which holds the resource")]
    Superseded { cgroup: String, lease: LeaseId, newer: LeaseId },
}

/// What `write_setting` did: the planned write, the slot's value before it, and whether it
/// wrote (false when the value was already in force).
struct SettingWrite {
    planned: PlannedWrite,
    old: String,
    wrote: bool,
}

pub struct Enforcer {
    confine: Confinement,
    floors: Floors,
    journal: Journal,
    leases: LeaseTable,
}

impl Enforcer {
    /// Open the journal and undo whatever a previous run left in place (crash recovery).
    pub fn open(mount: PathBuf, scope: Scope, journal: &std::path::Path, floors: Floors) -> Result<(Enforcer, usize), EnforceError> {
        let journal = Journal::open(journal)?;
        let mut e = Enforcer { confine: Confinement::new(mount, scope), floors, journal, leases: LeaseTable::default() };
        let pending = e.journal.pending();
        let n = pending.len();
        for (cgroup, slot, _) in pending {
            e.restore(&cgroup, &slot, "crash recovery");
        }
        Ok((e, n))
    }

    pub fn leases(&self) -> &LeaseTable {
        &self.leases
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// What this enforcer may manage (its roots, less the agent's own cgroup).
    pub fn scope(&self) -> &Scope {
        self.confine.scope()
    }

    /// Apply a decision: confine, journal the original, write with floors, hold the lease.
    pub fn apply(&mut self, d: &Decision, now: Timestamp) -> Result<PlannedWrite, EnforceError> {
        let cgroup = d.workload.path.clone();
        if d.lease.expiry <= now {
            return Err(EnforceError::Lapsed { cgroup, lease: d.lease.id });
        }
        // A decision that arrives after a newer one on the same resource (out of order) is
        // refused before it writes: applied, it would write its stale value, be superseded at
        // once and leave the newer value to be written back, two writes that refill a quota.
        let resource = d.setting.resource();
        let newer = self.leases.iter().find(|l| l.cgroup == cgroup && l.setting.resource() == resource && (l.start, l.id) > (d.lease.start, d.lease.id));
        if let Some(newer) = newer {
            return Err(EnforceError::Superseded { cgroup, lease: d.lease.id, newer: newer.id });
        }
        let dir = self.confine.resolve(&cgroup).map_err(|source| EnforceError::Confinement { cgroup: cgroup.clone(), source })?;
        let w = self.write_setting(&dir, &cgroup, &d.setting)?;
        if w.wrote {
            tracing::info!(
                target: "truce::audit", cgroup = %cgroup, file = %w.planned.slot, old = %w.old, new = %w.planned.value,
                floored = w.planned.floored.unwrap_or(""), decision = d.id.0, lease = d.lease.id.0,
                bids = ?d.caused_by.iter().map(|b| b.0).collect::<Vec<_>>(), expiry_ms = d.lease.expiry.0, "cgroup write"
            );
        } else {
            tracing::debug!(cgroup = %cgroup, file = %w.planned.slot, value = %w.planned.value, decision = d.id.0, lease = d.lease.id.0, "value already in force: lease held, nothing written");
        }
        let planned = w.planned;
        self.leases.grant(
            ActiveLease {
                id: d.lease.id,
                cgroup,
                setting: d.setting.clone(),
                slot: planned.slot.clone(),
                start: d.lease.start,
                expiry: d.lease.expiry,
                decision: d.id,
                bids: d.caused_by.clone(),
                reasons: d.reasons.clone(),
            },
            now,
        );
        let (_, actions) = self.leases.supersede(&d.workload.path, d.setting.resource());
        self.act(actions, "superseded by a newer lease on the same resource");
        Ok(planned)
    }

    pub fn renew(&mut self, id: LeaseId, expiry: Timestamp, now: Timestamp) -> bool {
        self.leases.renew(id, expiry, now)
    }

    /// Revert what lapsed by `now`. Returns the leases that lapsed.
    pub fn tick(&mut self, now: Timestamp) -> Vec<ActiveLease> {
        let (gone, actions) = self.leases.expire(now);
        self.act(actions, "lease lapsed");
        // Retry reverts that failed earlier: journaled slots no lease holds any more.
        for (cgroup, slot, _) in self.journal.pending() {
            if self.leases.holder(&cgroup, &slot).is_none() {
                self.restore(&cgroup, &slot, "retry");
            }
        }
        gone
    }

    /// Release leases early (the arbiter closed them).
    pub fn release(&mut self, ids: &[LeaseId]) {
        let (_, actions) = self.leases.remove(ids);
        self.act(actions, "lease released");
    }

    /// Restore every slot truce touched (shutdown). Returns how many are still not restored.
    pub fn restore_all(&mut self) -> usize {
        let ids = self.leases.all_ids();
        self.release(&ids);
        for (cgroup, slot, _) in self.journal.pending() {
            self.restore(&cgroup, &slot, "shutdown");
        }
        self.journal.pending().len()
    }

    fn act(&mut self, actions: Vec<SlotAction>, why: &'static str) {
        for a in actions {
            match a {
                SlotAction::Restore { cgroup, slot } => self.restore(&cgroup, &slot, why),
                SlotAction::Apply(l) => self.apply_holder(&l, why),
            }
        }
    }

    /// Write the setting of the lease that holds a slot now that another lease on it ended,
    /// through the same path as a decision: the usage floor, the in-force check, the journal
    /// and an audit line that names the lease's decision and bids.
    fn apply_holder(&mut self, l: &ActiveLease, why: &'static str) {
        let written = self
            .confine
            .resolve(&l.cgroup)
            .map_err(|source| EnforceError::Confinement { cgroup: l.cgroup.clone(), source })
            .and_then(|dir| self.write_setting(&dir, &l.cgroup, &l.setting));
        match written {
            Ok(w) if w.wrote => tracing::info!(
                target: "truce::audit", cgroup = %l.cgroup, file = %w.planned.slot, old = %w.old, new = %w.planned.value,
                floored = w.planned.floored.unwrap_or(""), decision = l.decision.0, lease = l.id.0,
                bids = ?l.bids.iter().map(|b| b.0).collect::<Vec<_>>(), reason = why, "cgroup write (next lease holds the slot)"
            ),
            Ok(_) => tracing::debug!(cgroup = %l.cgroup, file = %l.slot, lease = l.id.0, reason = why, "next lease's value already in force"),
            Err(e) => tracing::warn!(cgroup = %l.cgroup, file = %l.slot, lease = l.id.0, reason = why, cause = %truce_common::chain::Chain(&e), "could not apply the next lease on this slot"),
        }
    }

    /// Plan `setting` for the cgroup at `dir` and write it unless its value is already in force,
    /// journaling the original first. A renewal finds its value in force, and writing it again
    /// is not free: a cpu.max write refills the quota and unthrottles the group, an io.max write
    /// restarts blk-throttle's slice, so each rewrite would let a cut workload burst past its
    /// limit once a period.
    fn write_setting(&mut self, dir: &std::path::Path, cgroup: &str, setting: &Setting) -> Result<SettingWrite, EnforceError> {
        // Only memory.high's floor reads the usage; every other setting skips the read.
        let memory_current = matches!(setting, Setting::MemoryHigh { .. })
            .then(|| std::fs::read_to_string(dir.join("memory.current")).ok().and_then(|s| s.trim().parse().ok()))
            .flatten();
        let planned = plan(setting, &self.floors, memory_current).map_err(|source| EnforceError::Setting { cgroup: cgroup.to_string(), source })?;
        let file = dir.join(&planned.slot.file);
        let io_err = |action, source| EnforceError::Io { cgroup: cgroup.to_string(), file: planned.slot.file.clone(), action, source };
        let current = std::fs::read_to_string(&file).map_err(|e| io_err("read", e))?;
        let old = original_of(&planned.slot, &current);
        self.journal.record_original(cgroup, &planned.slot, &old)?;
        let wrote = !in_force(&planned, &old);
        if wrote {
            std::fs::write(&file, &planned.value).map_err(|e| io_err("write", e))?;
        }
        Ok(SettingWrite { planned, old, wrote })
    }

    /// Write the journaled original back. A vanished cgroup has nothing left to restore.
    fn restore(&mut self, cgroup: &str, slot: &Slot, why: &'static str) {
        let Some(original) = self.journal.original(cgroup, slot).map(str::to_string) else { return };
        let result = match self.confine.resolve_restore(cgroup) {
            Ok(dir) => std::fs::write(dir.join(&slot.file), &original).map(|_| true),
            Err(ConfinementError::Vanished { .. }) => Ok(false),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        match result {
            Ok(wrote) => {
                if wrote {
                    tracing::info!(target: "truce::audit", cgroup = %cgroup, file = %slot, new = %original, reason = why, "cgroup restored");
                } else {
                    tracing::info!(cgroup = %cgroup, file = %slot, reason = why, "cgroup vanished; nothing to restore");
                }
                if let Err(e) = self.journal.record_restored(cgroup, slot) {
                    tracing::error!(cgroup = %cgroup, file = %slot, cause = %e, "restored, but the journal could not record it");
                }
            }
            Err(e) => tracing::error!(cgroup = %cgroup, file = %slot, cause = %e, reason = why, "revert failed; will retry"),
        }
    }
}

/// Whether `current` (the slot's value now, as [`original_of`] reads it) already says what
/// `planned` would write. A keyed file shows every key of a device's line (io.max adds
/// `riops=max wiops=max`), so there the planned keys need only all be among them.
fn in_force(planned: &PlannedWrite, current: &str) -> bool {
    match planned.slot.dev {
        None => planned.value == current,
        Some(_) => {
            let shown: Vec<&str> = current.split_whitespace().collect();
            planned.value.split_whitespace().all(|k| shown.contains(&k))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};
    use truce_common::model::{BidId, DecisionId, DeviceId, Lease, Lender, WorkloadId, WorkloadRef};

    /// A decision for `/work/a` holding `setting` under lease `lease`.
    pub(crate) fn decision(lease: u64, setting: Setting) -> Decision {
        let resource = setting.resource();
        Decision {
            id: DecisionId(lease),
            round: 1,
            workload: WorkloadRef { id: WorkloadId(1), path: "/work/a".into() },
            lease: Lease { id: LeaseId(lease), holder: WorkloadId(1), lender: Lender::Pool, resource, amount: 300, price: 0.0, start: Timestamp(0), expiry: Timestamp(60_000) },
            setting,
            caused_by: vec![BidId(1)],
            reasons: Vec::new(),
        }
    }

    /// A scratch enforcer under the temp dir: roots `/work`, one cgroup `work/a` (a directory
    /// standing in for it; the writes themselves are tested in the VM) with `cpu.max` at its
    /// default. Returns the enforcer, the scratch root (remove it at the end) and the cgroup.
    pub(crate) fn scratch_enforcer(name: &str) -> (Enforcer, std::path::PathBuf, std::path::PathBuf) {
        let tmp = std::env::temp_dir().join(format!("truce-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let cg = tmp.join("work/a");
        std::fs::create_dir_all(&cg).expect("mkdir");
        std::fs::write(cg.join("cpu.max"), "max 100000\n").expect("cpu.max");
        let (e, _) = Enforcer::open(tmp.clone(), Scope::new(vec!["/work".into()], None), &tmp.join("journal.jsonl"), Floors::default()).expect("enforcer");
        (e, tmp, cg)
    }

    /// Backdate `file` and say whether a later call finds it written since.
    fn backdate(file: std::path::PathBuf) -> impl Fn() -> bool {
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        std::fs::File::options().write(true).open(&file).and_then(|f| f.set_modified(old)).expect("backdate");
        move || std::fs::metadata(&file).and_then(|m| m.modified()).expect("mtime") != old
    }

    #[test]
    fn a_decision_older_than_the_lease_in_force_is_refused_before_it_writes() {
        let (mut e, tmp, cg) = scratch_enforcer("enforce-order");
        let quota = |m| Setting::CpuMax { millicores: m, period_us: 100_000 };
        let mut newer = decision(2, quota(400));
        newer.lease.start = Timestamp(10);
        e.apply(&newer, Timestamp(11)).expect("newer");
        let written = backdate(cg.join("cpu.max"));
        let older = decision(1, quota(300));
        let refused = e.apply(&older, Timestamp(12));
        assert!(matches!(refused, Err(EnforceError::Superseded { newer: LeaseId(2), .. })), "{refused:?}");
        assert!(!written(), "the stale decision wrote");
        assert_eq!(std::fs::read_to_string(cg.join("cpu.max")).expect("read"), "40000 100000");
        assert_eq!(e.leases().all_ids(), vec![LeaseId(2)]);
        // The newer lease's own renewal still applies.
        e.apply(&newer, Timestamp(13)).expect("renewal of the holder");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    /// The lease that holds a slot after another ended is written like a decision: above the
    /// usage floor, journaled, and not at all when its value is already in force. (Before, it
    /// was planned without the usage, so memory.high could land below what the cgroup uses.)
    #[test]
    fn the_next_holder_of_a_slot_is_written_above_the_usage_floor_and_only_when_not_in_force() {
        let (mut e, tmp, cg) = scratch_enforcer("enforce-holder");
        std::fs::write(cg.join("memory.current"), format!("{}\n", 500u64 << 20)).expect("memory.current");
        std::fs::write(cg.join("memory.high"), "max\n").expect("memory.high");
        let d = decision(7, Setting::MemoryHigh { bytes: 10 << 20 });
        let holder = ActiveLease {
            id: d.lease.id,
            cgroup: d.workload.path.clone(),
            setting: d.setting.clone(),
            slot: slot_of(&d.setting),
            start: d.lease.start,
            expiry: d.lease.expiry,
            decision: d.id,
            bids: d.caused_by.clone(),
            reasons: Vec::new(),
        };
        e.act(vec![SlotAction::Apply(holder.clone())], "test");
        let floor = (500u64 << 20) + Floors::default().memory_margin_bytes;
        let value: u64 = std::fs::read_to_string(cg.join("memory.high")).expect("read").trim().parse().expect("bytes");
        assert!(value >= floor, "memory.high {value} below usage plus margin {floor}");
        assert_eq!(e.journal().original("/work/a", &holder.slot), Some("max"));
        let written = backdate(cg.join("memory.high"));
        e.act(vec![SlotAction::Apply(holder)], "test");
        assert!(!written(), "a value in force was written again");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn a_renewal_whose_value_is_in_force_writes_nothing() {
        let (mut e, tmp, cg) = scratch_enforcer("enforce");
        let vda = DeviceId { major: 254, minor: 0 };
        std::fs::write(cg.join("io.max"), "").expect("io.max");
        let quota = Setting::CpuMax { millicores: 300, period_us: 100_000 };
        e.apply(&decision(1, quota.clone()), Timestamp(1)).expect("first write");
        assert_eq!(std::fs::read_to_string(cg.join("cpu.max")).expect("read"), "30000 100000");
        let written = backdate(cg.join("cpu.max"));
        e.apply(&decision(1, quota), Timestamp(2)).expect("renewal");
        assert!(!written(), "the same quota was written again");
        e.apply(&decision(1, Setting::CpuMax { millicores: 400, period_us: 100_000 }), Timestamp(3)).expect("new quota");
        assert!(written(), "a new quota was not written");
        assert_eq!(std::fs::read_to_string(cg.join("cpu.max")).expect("read"), "40000 100000");
        // io.max shows every key of the line; the planned ones being among them is enough.
        std::fs::write(cg.join("io.max"), "254:0 rbps=2097152 wbps=2097152 riops=max wiops=max\n").expect("io.max");
        let written = backdate(cg.join("io.max"));
        e.apply(&decision(2, Setting::IoMax { dev: vda, rbps: Some(2 << 20), wbps: Some(2 << 20) }), Timestamp(4)).expect("io renewal");
        assert!(!written(), "the same io.max was written again");
        e.apply(&decision(2, Setting::IoMax { dev: vda, rbps: Some(2 << 20), wbps: Some(4 << 20) }), Timestamp(5)).expect("io change");
        assert_eq!(std::fs::read_to_string(cg.join("io.max")).expect("read"), "254:0 rbps=2097152 wbps=4194304");
        // Reverting still restores the journaled originals.
        assert_eq!(e.restore_all(), 0);
        assert_eq!(std::fs::read_to_string(cg.join("cpu.max")).expect("read"), "max 100000");
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
