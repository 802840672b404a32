//! The ledger on disk: a redb command log plus periodic snapshots.
//!
//! A command is acknowledged (its `Outcome` returned) only after the redb write transaction
//! that logged it committed with `Durability::Immediate`, so a kill -9 at any instant loses no
//! acknowledged command. Opening restores the latest snapshot and replays the log after it.
//! Refused commands are not logged: they changed nothing, so skipping them replays identically.

use super::command::{Command, Outcome};
use super::error::{LedgerError, StoreError, storage};
use super::state::LedgerState;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use std::path::{Path, PathBuf};

/// Log index -> MessagePack-encoded `Command`.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger_log");
/// Log index of the last command included -> MessagePack-encoded `LedgerState`. Only the latest is kept.
const SNAPSHOT: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger_snapshot");

#[derive(Clone, Copy, Debug)]
pub struct LedgerOptions {
    /// Write a snapshot (and drop the log before it) after this many commands.
    pub snapshot_every: u64,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            snapshot_every: 1024,
        }
    }
}

pub struct Ledger {
    db: Database,
    path: PathBuf,
    state: LedgerState,
    options: LedgerOptions,
    snapshot_index: u64,
    poisoned: bool,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("applied", &self.state.applied())
            .finish()
    }
}

impl Ledger {
    /// Open (or create) the ledger at `path`, restoring the snapshot and replaying the tail.
    pub fn open(path: impl AsRef<Path>) -> Result<Ledger, StoreError> {
        Ledger::open_with(path, LedgerOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: LedgerOptions) -> Result<Ledger, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        // Create the tables once so readers never meet a missing table.
        let txn = db.begin_write().map_err(storage("begin the table setup"))?;
        txn.open_table(LOG)
            .map_err(storage("create the log table"))?;
        txn.open_table(SNAPSHOT)
            .map_err(storage("create the snapshot table"))?;
        txn.commit().map_err(storage("commit the table setup"))?;
        let (state, snapshot_index) = load(&db)?;
        tracing::debug!(path = %path.display(), applied = state.applied(), snapshot = snapshot_index, "ledger opened");
        Ok(Ledger {
            db,
            path,
            state,
            options,
            snapshot_index,
            poisoned: false,
        })
    }

    pub fn state(&self) -> &LedgerState {
        &self.state
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Apply and durably log one command. A refused command is `StoreError::Rejected`.
    pub fn apply(&mut self, cmd: &Command) -> Result<Outcome, StoreError> {
        let mut results = self.apply_batch(std::slice::from_ref(cmd))?;
        match results.pop() {
            Some(Ok(outcome)) => Ok(outcome),
            Some(Err(source)) => Err(StoreError::Rejected { source }),
            None => Err(StoreError::Poisoned),
        }
    }

    /// Apply commands in order in one write transaction (one fsync for a whole market round).
    /// Each command gets its own result; refused ones change nothing and are not logged.
    /// The results are returned only after the commit, so every `Ok` is durable.
    pub fn apply_batch(
        &mut self,
        cmds: &[Command],
    ) -> Result<Vec<Result<Outcome, LedgerError>>, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let before = self.state.applied();
        match self.write_batch(cmds) {
            Ok(results) => Ok(results),
            Err(err) => {
                // Memory may be ahead of disk now; the disk is the truth, so reload from it.
                if self.state.applied() != before {
                    match load(&self.db) {
                        Ok((state, snap)) => {
                            self.state = state;
                            self.snapshot_index = snap;
                        }
                        Err(reload) => {
                            tracing::error!(cause = %reload, "could not reload the ledger after a failed commit");
                            self.poisoned = true;
                        }
                    }
                }
                Err(err)
            }
        }
    }

    fn write_batch(
        &mut self,
        cmds: &[Command],
    ) -> Result<Vec<Result<Outcome, LedgerError>>, StoreError> {
        let mut txn = self.db.begin_write().map_err(storage("begin a write"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(storage("set immediate durability"))?;
        let mut results = Vec::with_capacity(cmds.len());
        {
            let mut log = txn.open_table(LOG).map_err(storage("open the log table"))?;
            for cmd in cmds {
                let index = self.state.applied() + 1;
                let bytes = rmp_serde::to_vec_named(cmd)
                    .map_err(|source| StoreError::Encode { index, source })?;
                let result = self.state.apply(cmd);
                if result.is_ok() {
                    log.insert(index, bytes.as_slice())
                        .map_err(storage("append to the log"))?;
                }
                results.push(result);
            }
        }
        let snapshot_due =
            self.state.applied() >= self.snapshot_index + self.options.snapshot_every;
        if snapshot_due {
            write_snapshot(&txn, &self.state)?;
        }
        txn.commit().map_err(storage("commit a write"))?;
        if snapshot_due {
            self.snapshot_index = self.state.applied();
        }
        Ok(results)
    }

    /// Write a snapshot now and drop the log it covers.
    pub fn snapshot(&mut self) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let txn = self.db.begin_write().map_err(storage("begin a snapshot"))?;
        write_snapshot(&txn, &self.state)?;
        txn.commit().map_err(storage("commit a snapshot"))?;
        self.snapshot_index = self.state.applied();
        Ok(())
    }

    /// Commands still in the log (after the latest snapshot), with their indexes.
    pub fn log_tail(&self) -> Result<Vec<(u64, Command)>, StoreError> {
        let txn = self.db.begin_read().map_err(storage("begin a read"))?;
        let log = txn.open_table(LOG).map_err(storage("open the log table"))?;
        let mut out = Vec::new();
        for entry in log.iter().map_err(storage("iterate the log"))? {
            let (k, v) = entry.map_err(storage("read the log"))?;
            let index = k.value();
            let cmd = rmp_serde::from_slice(v.value()).map_err(|source| StoreError::Decode {
                what: "command",
                index,
                source,
            })?;
            out.push((index, cmd));
        }
        Ok(out)
    }
}

/// The state machine as bytes, for snapshots here and for openraft's snapshot transfer later.
pub fn encode_snapshot(state: &LedgerState) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(state).map_err(|source| StoreError::Encode {
        index: state.applied(),
        source,
    })
}

pub fn decode_snapshot(bytes: &[u8]) -> Result<LedgerState, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|source| StoreError::Decode {
        what: "snapshot",
        index: 0,
        source,
    })
}

fn write_snapshot(txn: &WriteTransaction, state: &LedgerState) -> Result<(), StoreError> {
    let bytes = encode_snapshot(state)?;
    let index = state.applied();
    let mut snaps = txn
        .open_table(SNAPSHOT)
        .map_err(storage("open the snapshot table"))?;
    snaps
        .retain(|_, _| false)
        .map_err(storage("drop the old snapshot"))?;
    snaps
        .insert(index, bytes.as_slice())
        .map_err(storage("write a snapshot"))?;
    let mut log = txn.open_table(LOG).map_err(storage("open the log table"))?;
    log.retain_in(..=index, |_, _| false)
        .map_err(storage("compact the log"))?;
    Ok(())
}

/// Latest snapshot plus the log after it.
fn load(db: &Database) -> Result<(LedgerState, u64), StoreError> {
    let txn = db.begin_read().map_err(storage("begin a read"))?;
    let snaps = txn
        .open_table(SNAPSHOT)
        .map_err(storage("open the snapshot table"))?;
    let (mut state, snap_index) = match snaps.last().map_err(storage("read the snapshot"))? {
        Some((k, v)) => {
            let index = k.value();
            let state: LedgerState =
                rmp_serde::from_slice(v.value()).map_err(|source| StoreError::Decode {
                    what: "snapshot",
                    index,
                    source,
                })?;
            (state, index)
        }
        None => (LedgerState::new(), 0),
    };
    let log = txn.open_table(LOG).map_err(storage("open the log table"))?;
    for entry in log
        .range(snap_index + 1..)
        .map_err(storage("iterate the log"))?
    {
        let (k, v) = entry.map_err(storage("read the log"))?;
        let index = k.value();
        let expected = state.applied() + 1;
        if index != expected {
            return Err(StoreError::Gap {
                expected,
                found: index,
            });
        }
        let cmd: Command =
            rmp_serde::from_slice(v.value()).map_err(|source| StoreError::Decode {
                what: "command",
                index,
                source,
            })?;
        state
            .apply(&cmd)
            .map_err(|source| StoreError::Replay { index, source })?;
    }
    Ok((state, snap_index))
}
