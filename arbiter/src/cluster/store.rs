//! redb storage for openraft: the log (`raft_log`), the vote and the committed id
//! (`raft_meta`), and the state machine's snapshot (`raft_snapshot`). Every write commits with
//! `Durability::Immediate` before openraft hears it is done, so an acknowledged entry survives
//! kill -9. The state machine is the ledger; it is rebuilt on start from the snapshot and the
//! committed log after it.

use super::types::{ClusterNode, LedgerBatch, LedgerReply, NodeId, TypeConfig};
use crate::ledger::LedgerState;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, RwLock};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");

type SErr = StorageError<NodeId>;

fn io(kind: fn(AnyError) -> StorageIOError<NodeId>, e: impl std::fmt::Display) -> SErr {
    StorageError::IO { source: kind(AnyError::error(e)) }
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(v).map_err(|e| e.to_string())
}

fn dec<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(b).map_err(|e| e.to_string())
}

/// Open (or create) the replica's database with its tables.
pub fn open(path: &std::path::Path) -> Result<Arc<Database>, redb::Error> {
    let db = Database::create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(LOG)?;
    txn.open_table(META)?;
    txn.open_table(SNAPSHOT)?;
    txn.commit()?;
    Ok(Arc::new(db))
}

fn meta_get<T: for<'de> Deserialize<'de>>(db: &Database, key: &str) -> Result<Option<T>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let t = txn.open_table(META).map_err(|e| e.to_string())?;
    match t.get(key).map_err(|e| e.to_string())? {
        Some(v) => dec(v.value()).map(Some),
        None => Ok(None),
    }
}

fn meta_put<T: Serialize>(db: &Database, key: &str, value: &T) -> Result<(), String> {
    let bytes = enc(value)?;
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(Durability::Immediate).map_err(|e| e.to_string())?;
    txn.open_table(META).map_err(|e| e.to_string())?.insert(key, bytes.as_slice()).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())
}

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> LogStore {
        LogStore { db }
    }

    fn read_range(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry<TypeConfig>>, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let t = txn.open_table(LOG).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for item in t.range(range).map_err(|e| e.to_string())? {
            let (_, v) = item.map_err(|e| e.to_string())?;
            out.push(dec(v.value())?);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(&mut self, range: RB) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        self.read_range(range).map_err(|e| io(StorageIOError::read_logs, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let purged: Option<LogId<NodeId>> = meta_get(&self.db, "purged").map_err(|e| io(StorageIOError::read_logs, e))?;
        let last = {
            let txn = self.db.begin_read().map_err(|e| io(StorageIOError::read_logs, e))?;
            let t = txn.open_table(LOG).map_err(|e| io(StorageIOError::read_logs, e))?;
            match t.last().map_err(|e| io(StorageIOError::read_logs, e))? {
                Some((_, v)) => Some(dec::<Entry<TypeConfig>>(v.value()).map_err(|e| io(StorageIOError::read_logs, e))?.log_id),
                None => None,
            }
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        meta_put(&self.db, "vote", vote).map_err(|e| io(StorageIOError::write_vote, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        meta_get(&self.db, "vote").map_err(|e| io(StorageIOError::read_vote, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        meta_put(&self.db, "committed", &committed).map_err(|e| io(StorageIOError::write_logs, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        Ok(meta_get::<Option<LogId<NodeId>>>(&self.db, "committed").map_err(|e| io(StorageIOError::read_logs, e))?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let write = || -> Result<(), String> {
            let mut txn = self.db.begin_write().map_err(|e| e.to_string())?;
            txn.set_durability(Durability::Immediate).map_err(|e| e.to_string())?;
            {
                let mut t = txn.open_table(LOG).map_err(|e| e.to_string())?;
                for e in entries {
                    t.insert(e.log_id.index, enc(&e)?.as_slice()).map_err(|e| e.to_string())?;
                }
            }
            txn.commit().map_err(|e| e.to_string())
        };
        let result = write();
        callback.log_io_completed(result.clone().map_err(std::io::Error::other));
        result.map_err(|e| io(StorageIOError::write_logs, e))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let go = || -> Result<(), String> {
            let mut txn = self.db.begin_write().map_err(|e| e.to_string())?;
            txn.set_durability(Durability::Immediate).map_err(|e| e.to_string())?;
            txn.open_table(LOG).map_err(|e| e.to_string())?.retain_in(log_id.index.., |_, _| false).map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())
        };
        go().map_err(|e| io(StorageIOError::write_logs, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let go = || -> Result<(), String> {
            let bytes = enc(&Some(log_id))?;
            let mut txn = self.db.begin_write().map_err(|e| e.to_string())?;
            txn.set_durability(Durability::Immediate).map_err(|e| e.to_string())?;
            txn.open_table(META).map_err(|e| e.to_string())?.insert("purged", bytes.as_slice()).map_err(|e| e.to_string())?;
            txn.open_table(LOG).map_err(|e| e.to_string())?.retain_in(..=log_id.index, |_, _| false).map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())
        };
        go().map_err(|e| io(StorageIOError::write_logs, e))
    }
}

/// The ledger as openraft's state machine, shared with the market (read it through
/// [`LedgerMachine::ledger`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MachineState {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, ClusterNode>,
    #[serde(with = "serde_bytes_state")]
    pub ledger: LedgerState,
}

/// The ledger travels in snapshots in its own format (`ledger::encode_snapshot`).
mod serde_bytes_state {
    use crate::ledger::{LedgerState, decode_snapshot, encode_snapshot};
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(l: &LedgerState, s: S) -> Result<S::Ok, S::Error> {
        let b = encode_snapshot(l).map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&b)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LedgerState, D::Error> {
        let b: serde_bytes_buf::Buf = Deserialize::deserialize(d)?;
        decode_snapshot(&b.0).map_err(serde::de::Error::custom)
    }
    mod serde_bytes_buf {
        pub struct Buf(pub Vec<u8>);
        impl<'de> serde::Deserialize<'de> for Buf {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Buf, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Buf;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Buf, E> {
                        Ok(Buf(v.to_vec()))
                    }
                    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Buf, E> {
                        Ok(Buf(v))
                    }
                }
                d.deserialize_byte_buf(V)
            }
        }
    }
}

/// A snapshot as stored: its metadata and the encoded [`MachineState`].
type StoredSnapshot = (SnapshotMeta<NodeId, ClusterNode>, Vec<u8>);

#[derive(Clone)]
pub struct LedgerMachine {
    db: Arc<Database>,
    state: Arc<RwLock<MachineState>>,
}

impl LedgerMachine {
    /// Restore from the stored snapshot; openraft replays the committed log after it.
    pub fn open(db: Arc<Database>) -> Result<LedgerMachine, String> {
        let state = match Self::stored(&db)? {
            Some((_, data)) => dec::<MachineState>(&data)?,
            None => MachineState { ledger: LedgerState::new(), ..MachineState::default() },
        };
        Ok(LedgerMachine { db, state: Arc::new(RwLock::new(state)) })
    }

    fn stored(db: &Database) -> Result<Option<StoredSnapshot>, String> {
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        let t = txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
        let meta = match t.get("meta").map_err(|e| e.to_string())? {
            Some(v) => dec(v.value())?,
            None => return Ok(None),
        };
        let data = t.get("data").map_err(|e| e.to_string())?.map(|v| v.value().to_vec()).unwrap_or_default();
        Ok(Some((meta, data)))
    }

    /// The replicated ledger as this replica has applied it.
    pub fn ledger(&self) -> std::sync::RwLockReadGuard<'_, MachineState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MachineState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, meta: &SnapshotMeta<NodeId, ClusterNode>, data: &[u8]) -> Result<(), String> {
        let m = enc(meta)?;
        let mut txn = self.db.begin_write().map_err(|e| e.to_string())?;
        txn.set_durability(Durability::Immediate).map_err(|e| e.to_string())?;
        {
            let mut t = txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
            t.insert("meta", m.as_slice()).map_err(|e| e.to_string())?;
            t.insert("data", data).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let (data, last, membership) = {
            let s = self.ledger();
            (enc(&*s).map_err(|e| io(StorageIOError::read_state_machine, e))?, s.last_applied, s.membership.clone())
        };
        let snapshot_id = last.map(|l| format!("{}-{}", l.leader_id, l.index)).unwrap_or_else(|| "0".into());
        let meta = SnapshotMeta { last_log_id: last, last_membership: membership, snapshot_id };
        self.save(&meta, &data).map_err(|e| io(|a| StorageIOError::write_snapshot(None, a), e))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for LedgerMachine {
    type SnapshotBuilder = LedgerMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, ClusterNode>), SErr> {
        let s = self.ledger();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<LedgerReply>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut s = self.write();
        Ok(entries.into_iter().map(|entry| apply_entry(&mut s, entry)).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta<NodeId, ClusterNode>, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), SErr> {
        let data = snapshot.into_inner();
        let state: MachineState = dec(&data).map_err(|e| io(|a| StorageIOError::read_snapshot(None, a), e))?;
        self.save(meta, &data).map_err(|e| io(|a| StorageIOError::write_snapshot(None, a), e))?;
        *self.write() = state;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let stored = Self::stored(&self.db).map_err(|e| io(|a| StorageIOError::read_snapshot(None, a), e))?;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

/// Apply one committed entry to the machine (live, and when a stopped replica's file is read).
pub(super) fn apply_entry(s: &mut MachineState, entry: Entry<TypeConfig>) -> LedgerReply {
    s.last_applied = Some(entry.log_id);
    match entry.payload {
        EntryPayload::Blank => LedgerReply { refused: vec![], applied: s.ledger.applied() },
        EntryPayload::Membership(m) => {
            s.membership = StoredMembership::new(Some(entry.log_id), m);
            LedgerReply { refused: vec![], applied: s.ledger.applied() }
        }
        EntryPayload::Normal(LedgerBatch { commands }) => {
            // Deterministic on every replica: a refused command changes nothing here or anywhere.
            let refused = commands.iter().map(|c| s.ledger.apply(c).err().map(|e| e.to_string())).collect();
            LedgerReply { refused, applied: s.ledger.applied() }
        }
    }
}

/// The ledger a stopped replica's file holds: its snapshot, then its log up to the last
/// committed id it recorded (what it would rebuild on start). For tests and inspection.
pub fn read_committed(path: &std::path::Path) -> Result<MachineState, String> {
    let db = Arc::new(Database::open(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let machine = LedgerMachine::open(db.clone())?;
    let mut state = machine.ledger().clone();
    let committed: Option<LogId<NodeId>> = meta_get::<Option<LogId<NodeId>>>(&db, "committed")?.flatten();
    let from = state.last_applied.map_or(0, |l| l.index + 1);
    if let Some(c) = committed.filter(|c| c.index >= from) {
        for entry in LogStore::new(db).read_range(from..=c.index)? {
            apply_entry(&mut state, entry);
        }
    }
    Ok(state)
}

/// Every ledger batch a stopped replica's log still holds (after its last purge), in order,
/// with their indexes, committed or not: the recorded committed id may trail what the
/// replica applied, so a history checker decides what counts. For checkers and inspection.
pub fn read_log(path: &std::path::Path) -> Result<Vec<(u64, LedgerBatch)>, String> {
    let db = Arc::new(Database::open(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let entries = LogStore::new(db).read_range(..)?;
    Ok(entries
        .into_iter()
        .filter_map(|e| match e.payload {
            EntryPayload::Normal(b) => Some((e.log_id.index, b)),
            _ => None,
        })
        .collect())
}

/// How often openraft should snapshot (in log entries); kept with the machine for the config.
pub fn snapshot_policy(every: u64) -> openraft::SnapshotPolicy {
    openraft::SnapshotPolicy::LogsSinceLast(every.max(1))
}
