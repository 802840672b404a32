//! Enforcement: decisions become cgroup v2 writes, each held by a lease that reverts on its
//! own — when it lapses without renewal, on shutdown, and after a crash (journal replay).
//! Originals are journaled before the first write; writes stay under the configured roots;
//! floors keep every workload alive; every write leaves one structured audit line.

mod confine;
mod journal;
mod leases;
mod status;
mod write;

pub use confine::{Confinement, ConfinementError, under_roots};
pub use journal::{Journal, JournalError};
pub use leases::{ActiveLease, LeaseTable, SlotAction};
pub use status::{BidStatus, LeaseStatus, Status, WorkloadStatus, status_path};
pub use write::{Floors, PlannedWrite, SettingError, Slot, original_of, plan, slot_of};

use std::path::PathBuf;
use truce_common::model::{Decision, LeaseId, Timestamp};

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
}

pub struct Enforcer {
    confine: Confinement,
    floors: Floors,
    journal: Journal,
    leases: LeaseTable,
}

impl Enforcer {
    /// Open the journal and undo whatever a previous run left in place (crash recovery).
    pub fn open(mount: PathBuf, roots: Vec<String>, journal: &std::path::Path, floors: Floors) -> Result<(Enforcer, usize), EnforceError> {
        let journal = Journal::open(journal)?;
        let mut e = Enforcer { confine: Confinement::new(mount, roots), floors, journal, leases: LeaseTable::default() };
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

    /// Apply a decision: confine, journal the original, write with floors, hold the lease.
    pub fn apply(&mut self, d: &Decision, now: Timestamp) -> Result<PlannedWrite, EnforceError> {
        let cgroup = d.workload.path.clone();
        if d.lease.expiry <= now {
            return Err(EnforceError::Lapsed { cgroup, lease: d.lease.id });
        }
        let dir = self.confine.resolve(&cgroup).map_err(|source| EnforceError::Confinement { cgroup: cgroup.clone(), source })?;
        let memory_current = std::fs::read_to_string(dir.join("memory.current")).ok().and_then(|s| s.trim().parse().ok());
        let planned = plan(&d.setting, &self.floors, memory_current).map_err(|source| EnforceError::Setting { cgroup: cgroup.clone(), source })?;
        let file = dir.join(&planned.slot.file);
        let io_err = |action, source| EnforceError::Io { cgroup: cgroup.clone(), file: planned.slot.file.clone(), action, source };
        let current = std::fs::read_to_string(&file).map_err(|e| io_err("read", e))?;
        let old = original_of(&planned.slot, &current);
        self.journal.record_original(&cgroup, &planned.slot, &old)?;
        std::fs::write(&file, &planned.value).map_err(|e| io_err("write", e))?;
        tracing::info!(
            target: "truce::audit", cgroup = %cgroup, file = %planned.slot, old = %old, new = %planned.value,
            floored = planned.floored.unwrap_or(""), decision = d.id.0, lease = d.lease.id.0,
            bids = ?d.caused_by.iter().map(|b| b.0).collect::<Vec<_>>(), expiry_ms = d.lease.expiry.0, "cgroup write"
        );
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
                SlotAction::Apply(l) => {
                    let write = self.confine.resolve(&l.cgroup).ok().and_then(|dir| {
                        let p = plan(&l.setting, &self.floors, None).ok()?;
                        std::fs::write(dir.join(&p.slot.file), &p.value).ok().map(|_| p)
                    });
                    match write {
                        Some(p) => tracing::info!(target: "truce::audit", cgroup = %l.cgroup, file = %p.slot, new = %p.value, lease = l.id.0, reason = why, "cgroup write (next lease holds the slot)"),
                        None => tracing::warn!(cgroup = %l.cgroup, file = %l.slot, lease = l.id.0, "could not apply the next lease on this slot"),
                    }
                }
            }
        }
    }

    /// Write the journaled original back. A vanished cgroup has nothing left to restore.
    fn restore(&mut self, cgroup: &str, slot: &Slot, why: &'static str) {
        let Some(original) = self.journal.original(cgroup, slot).map(str::to_string) else { return };
        let result = match self.confine.resolve(cgroup) {
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
