//! The replicated ledger as the market's exchange sees it. Writes go through raft and count
//! only once a majority holds them and this replica applied them; a replica that cannot commit
//! (a follower, a partitioned leader) gets an error within `write_timeout` and the round hands
//! out no decisions.
//!
//! Group commit: every round used to be its own raft write, and rounds queued behind each
//! other's commit, so a leader served about one host per commit latency (two fsyncs and a
//! round trip) and fell behind under load. Now a round *submits* its commands and waits for
//! them without holding the exchange: a committer task writes everything submitted while the
//! previous write was in flight as one raft entry. The next round must still see the effects
//! of rounds not yet committed (lease ids come from the ledger), so reads come from a
//! *speculative* state: the committed state with every submitted batch applied in submission
//! order. Speculation only chooses what to propose; whether a command took effect is what the
//! state machine answers when it applies the entry, and the exchange sends only decisions
//! whose commands it applied. The speculative state is rebuilt from the committed one after a
//! failed write, in a new term, and whenever nothing is pending and the two disagree.

use super::replica::{Replica, ReplicaError};
use super::store::MachineState;
use crate::ledger::{Command, LedgerState};
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, RwLockReadGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// At most this many commands go into one raft entry (rounds are never split), so that the
/// entries openraft sends in one append (`max_payload_entries`, set in `replica`) fit a frame.
pub const MAX_BATCH_COMMANDS: usize = 512;

/// Per command: `None` when it applied, the ledger's refusal otherwise.
type Refusals = Vec<Option<String>>;

#[derive(Clone, Debug)]
pub struct ReplicatedLedger {
    pub replica: Replica,
    pub write_timeout: Duration,
    spec: Arc<Mutex<Speculative>>,
    queue: mpsc::UnboundedSender<Submitted>,
}

#[derive(Debug, Default)]
pub struct Speculative {
    state: LedgerState,
    /// False until built, and after a failed write.
    valid: bool,
    /// The raft term it was built in.
    term: u64,
    /// Submissions not answered yet.
    pending: usize,
}

#[derive(Debug)]
struct Submitted {
    commands: Vec<Command>,
    done: oneshot::Sender<Result<Refusals, ReplicaError>>,
}

/// A read view: the speculative state while writes are pending, else the applied one.
pub enum LedgerView<'a> {
    Committed(RwLockReadGuard<'a, MachineState>),
    Speculative(MutexGuard<'a, Speculative>),
}

impl Deref for LedgerView<'_> {
    type Target = LedgerState;
    fn deref(&self) -> &LedgerState {
        match self {
            LedgerView::Committed(g) => &g.ledger,
            LedgerView::Speculative(g) => &g.state,
        }
    }
}

/// A submitted batch; [`Ticket::wait`] gives the state machine's answer.
#[derive(Debug)]
pub struct Ticket {
    rx: oneshot::Receiver<Result<Refusals, ReplicaError>>,
    /// A safety net only: the committer always answers, within two writes' timeouts.
    limit: Duration,
}

impl Ticket {
    /// Block until the batch committed and applied here (or failed). Blocks the calling
    /// thread: call it from a blocking thread inside the runtime (the server resolves rounds
    /// with `spawn_blocking`), never from an async task.
    pub fn wait(self) -> Result<Refusals, ReplicaError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| ReplicaError::Write { reason: format!("no async runtime to write through: {e}") })?;
        match runtime.block_on(tokio::time::timeout(self.limit, self.rx)) {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ReplicaError::Write { reason: "the ledger's committer stopped".into() }),
            Err(_) => Err(ReplicaError::Write { reason: format!("no answer within {} ms", self.limit.as_millis()) }),
        }
    }
}

fn lock(m: &Mutex<Speculative>) -> MutexGuard<'_, Speculative> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReplicatedLedger {
    /// Starts the committer task: call inside the tokio runtime.
    pub fn new(replica: Replica, write_timeout: Duration) -> ReplicatedLedger {
        let (queue, rx) = mpsc::unbounded_channel();
        let spec = Arc::new(Mutex::new(Speculative::default()));
        tokio::spawn(commit_loop(replica.clone(), spec.clone(), rx, write_timeout));
        ReplicatedLedger { replica, write_timeout, spec, queue }
    }

    /// What the next round should see: the applied state, plus what is pending.
    pub fn state(&self) -> LedgerView<'_> {
        let spec = lock(&self.spec);
        if spec.valid && spec.pending > 0 {
            return LedgerView::Speculative(spec);
        }
        drop(spec);
        LedgerView::Committed(self.replica.machine.ledger())
    }

    /// Hand `commands` to the committer (they go into the next raft entry, in order) and
    /// apply them to the speculative state, so the next round sees them.
    pub fn submit(&self, commands: Vec<Command>) -> Ticket {
        let (done, rx) = oneshot::channel();
        let limit = self.write_timeout * 2 + Duration::from_secs(1);
        let term = self.replica.raft.metrics().borrow().current_term;
        let mut spec = lock(&self.spec);
        let stale = {
            let committed = self.replica.machine.ledger();
            !spec.valid || spec.term != term || (spec.pending == 0 && spec.state.applied() != committed.ledger.applied())
        };
        if stale {
            // Rebuilt from what this replica applied; batches still in flight (only after a
            // failure or a new term) are then not in it, and their rounds keep only what the
            // state machine really applied.
            spec.state = self.replica.machine.ledger().ledger.clone();
            spec.valid = true;
            spec.term = term;
        }
        for c in &commands {
            // A refusal changes nothing; the state machine decides the same when it applies.
            let _ = spec.state.apply(c);
        }
        spec.pending += 1;
        if let Err(mpsc::error::SendError(s)) = self.queue.send(Submitted { commands, done }) {
            spec.pending -= 1;
            spec.valid = false;
            let _ = s.done.send(Err(ReplicaError::Write { reason: "the ledger's committer stopped".into() }));
        }
        Ticket { rx, limit }
    }

    /// Submit and wait (see [`Ticket::wait`] for where to call it from).
    pub fn apply_batch(&self, commands: &[Command]) -> Result<Refusals, ReplicaError> {
        self.submit(commands.to_vec()).wait()
    }
}

/// Write whatever was submitted while the previous write was in flight as one raft entry.
async fn commit_loop(replica: Replica, spec: Arc<Mutex<Speculative>>, mut rx: mpsc::UnboundedReceiver<Submitted>, write_timeout: Duration) {
    let mut carry: Option<Submitted> = None;
    loop {
        let first = match carry.take() {
            Some(s) => s,
            None => match rx.recv().await {
                Some(s) => s,
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut n = batch[0].commands.len();
        while n < MAX_BATCH_COMMANDS {
            match rx.try_recv() {
                Ok(s) if n + s.commands.len() > MAX_BATCH_COMMANDS => {
                    carry = Some(s);
                    break;
                }
                Ok(s) => {
                    n += s.commands.len();
                    batch.push(s);
                }
                Err(_) => break,
            }
        }
        let mut commands = Vec::with_capacity(n);
        let mut waiting = Vec::with_capacity(batch.len());
        for s in batch {
            waiting.push((s.commands.len(), s.done));
            commands.extend(s.commands);
        }
        let written = match tokio::time::timeout(write_timeout, replica.write(commands)).await {
            Ok(Ok(reply)) if reply.refused.len() == n => Ok(reply.refused),
            Ok(Ok(reply)) => Err(format!("the state machine answered for {} of {n} commands", reply.refused.len())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no majority committed it within {} ms", write_timeout.as_millis())),
        };
        {
            let mut s = lock(&spec);
            s.pending = s.pending.saturating_sub(waiting.len());
            if written.is_err() {
                s.valid = false;
            }
        }
        tracing::debug!(rounds = waiting.len(), commands = n, ok = written.is_ok(), "ledger batch written");
        match written {
            Ok(refused) => {
                let mut refused = refused.into_iter();
                for (len, done) in waiting {
                    let _ = done.send(Ok(refused.by_ref().take(len).collect()));
                }
            }
            Err(reason) => {
                for (_, done) in waiting {
                    let _ = done.send(Err(ReplicaError::Write { reason: reason.clone() }));
                }
            }
        }
    }
}
