//! A Jepsen-style checker as a property test. proptest generates histories of operations and
//! faults against three real replicas (openraft over QUIC with peer certificates, each on its
//! own redb file) in this process: bursts of concurrent ledger writes sent to any replica,
//! crashes (the replica is torn down and restarted on its file), and partitions (a replica's
//! raft traffic is dropped). After healing everything, the checker reads every replica's
//! log from disk (up to a final write made after healing) and checks:
//! - every acknowledged write is in the log exactly once, on every replica, in the same order;
//! - real-time order: a write acknowledged before another was sent comes first in the log;
//! - a write refused with "not the leader" is not in the log; one that timed out is there at
//!   most once;
//! - the ledger rebuilt from the log is conserved, and equal on every replica.
//!
//! The number of histories is printed (`TRUCE_JEPSEN_CASES` overrides the default 16).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use truce_arbiter::cluster::store::read_log;
use truce_arbiter::cluster::{ClusterNode, LedgerBatch, Replica, ReplicaConfig, ReplicaError};
use truce_arbiter::ledger::{AccountId, Command, LedgerState, WorkloadKey, encode_snapshot};
use truce_arbiter::peer::PeerTls;
use truce_arbiter::server::{CancellationToken, certs};
use truce_common::model::{Credits, HostId, Timestamp, WorkloadId};
use truce_tests::loopback::Pki;

const N: u64 = 3;

#[derive(Clone, Debug)]
enum Step {
    /// `count` concurrent writes, each to replica `to` (the leader or not).
    Burst { to: u64, count: u64 },
    Crash(u64),
    Cut(u64),
    Heal(u64),
    Pause(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (1..=N, 1..6u64).prop_map(|(to, count)| Step::Burst { to, count }),
        1 => (1..=N).prop_map(Step::Crash),
        1 => (1..=N).prop_map(Step::Cut),
        1 => (1..=N).prop_map(Step::Heal),
        1 => (50..400u64).prop_map(Step::Pause),
    ]
}

fn key(i: u64) -> WorkloadKey {
    WorkloadKey::new(&HostId("jepsen".into()), WorkloadId(i))
}

/// Write `op` moves `op` micro-credits: its amount names it in the log.
fn transfer(op: u64) -> Command {
    Command::Transfer { from: AccountId::Workload(key(op % 3)), to: AccountId::Workload(key((op + 1) % 3)), amount: Credits(op as i64) }
}

fn op_of(cmd: &Command) -> Option<u64> {
    match cmd {
        Command::Transfer { amount, .. } => Some(amount.0 as u64),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Acked,
    /// Definitely not appended (not the leader).
    Refused,
    /// Unknown: a timeout or a crash in flight.
    Unknown,
}

#[derive(Clone, Debug)]
struct Op {
    invoked: Instant,
    completed: Instant,
    outcome: Outcome,
}

struct Cluster {
    certs: std::path::PathBuf,
    dir: std::path::PathBuf,
    ports: Vec<u16>,
    nodes: BTreeMap<u64, (Replica, CancellationToken)>,
}

fn members(ports: &[u16]) -> BTreeMap<u64, ClusterNode> {
    (1..=N).map(|id| (id, ClusterNode { name: format!("arbiter-{id}"), raft_addr: format!("127.0.0.1:{}", ports[id as usize - 1]), agent_addr: String::new() })).collect()
}

impl Cluster {
    fn config(&self, id: u64) -> ReplicaConfig {
        ReplicaConfig {
            id,
            name: format!("arbiter-{id}"),
            raft_listen: format!("127.0.0.1:{}", self.ports[id as usize - 1]).parse().expect("addr"),
            agent_addr: String::new(),
            tls: PeerTls::in_dir(&self.certs, &format!("arbiter-{id}")),
            db_path: self.dir.join(format!("replica-{id}.redb")),
            members: members(&self.ports),
            heartbeat_ms: 50,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 500,
            // Keep the whole log: the checker reads it.
            snapshot_every: 1_000_000,
        }
    }

    /// Start replica `id` on its file; a crashed one's file and port free up shortly after
    /// its tasks end, so retry for a while.
    async fn start(&mut self, id: u64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let cancel = CancellationToken::new();
            match Replica::start(self.config(id), cancel.clone()).await {
                Ok(r) => {
                    self.nodes.insert(id, (r, cancel));
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(format!("replica {id} does not restart: {e}")),
            }
        }
    }

    async fn crash(&mut self, id: u64) {
        if let Some((r, cancel)) = self.nodes.remove(&id) {
            cancel.cancel();
            let _ = r.raft.shutdown().await;
        }
    }

    fn leader(&self) -> Option<u64> {
        self.nodes.values().find(|(r, _)| r.is_leader()).map(|(r, _)| r.id)
    }
}

type History = Arc<Mutex<HashMap<u64, Op>>>;

async fn write(replica: Replica, op: u64, history: History) {
    let invoked = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(2), replica.write(vec![transfer(op)])).await;
    let outcome = match result {
        Ok(Ok(reply)) if reply.refused.iter().all(Option::is_none) => Outcome::Acked,
        Ok(Ok(reply)) => panic!("write {op} refused by the ledger: {:?}", reply.refused),
        Ok(Err(ReplicaError::NotLeader { .. })) => Outcome::Refused,
        _ => Outcome::Unknown,
    };
    history.lock().unwrap_or_else(|p| p.into_inner()).insert(op, Op { invoked, completed: Instant::now(), outcome });
}

async fn run_history(pki: &Pki, steps: &[Step]) -> Result<usize, String> {
    let socks: Vec<std::net::UdpSocket> = (0..N).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind")).collect();
    let ports: Vec<u16> = socks.iter().map(|s| s.local_addr().expect("addr").port()).collect();
    drop(socks);
    let dir = pki.path().join(format!("h-{}", ports[0]));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut c = Cluster { certs: pki.path().to_path_buf(), dir, ports, nodes: BTreeMap::new() };
    for id in 1..=N {
        c.start(id).await?;
    }
    c.nodes[&1].0.bootstrap(members(&c.ports)).await.map_err(|e| e.to_string())?;
    // Income for the three accounts, through whoever leads.
    let setup: Vec<Command> = (0..3)
        .map(|i| Command::SetIncome { who: key(i), per_second: Credits(1_000_000_000), at: Timestamp(0) })
        .chain([Command::Accrue { host: HostId("jepsen".into()), now: Timestamp(1_000_000) }])
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = c.leader()
            && c.nodes[&l].0.write(setup.clone()).await.is_ok()
        {
            break;
        }
        if Instant::now() > deadline {
            return Err("no leader accepted the setup within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let history: History = Arc::default();
    let mut inflight = Vec::new();
    let mut next_op = 1u64;
    for s in steps {
        match s {
            Step::Burst { to, count } => {
                // Writes go to the named replica if it runs, else to any: followers refuse.
                let Some((r, _)) = c.nodes.get(to).or_else(|| c.nodes.values().next()) else { continue };
                for _ in 0..*count {
                    inflight.push(tokio::spawn(write(r.clone(), next_op, history.clone())));
                    next_op += 1;
                }
                // Aim some writes at the leader too, so histories make progress.
                if let Some(l) = c.leader() {
                    inflight.push(tokio::spawn(write(c.nodes[&l].0.clone(), next_op, history.clone())));
                    next_op += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Step::Crash(id) => {
                c.crash(*id).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                c.start(*id).await?;
            }
            Step::Cut(id) => {
                if let Some((r, _)) = c.nodes.get(id) {
                    r.endpoint.cut_off(true);
                }
            }
            Step::Heal(id) => {
                if let Some((r, _)) = c.nodes.get(id) {
                    r.endpoint.cut_off(false);
                }
            }
            Step::Pause(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        }
    }
    for t in inflight {
        let _ = t.await;
    }
    // Heal, let everyone catch up on one final write, then stop and read the files.
    for (r, _) in c.nodes.values() {
        r.endpoint.cut_off(false);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let final_op = next_op;
    loop {
        // The write's own log index, not the leader's metrics: those are published after the
        // apply and can still show an earlier entry when the write returns.
        let written = match c.leader() {
            Some(l) => c.nodes[&l].0.raft.client_write(LedgerBatch { commands: vec![transfer(final_op)] }).await.ok(),
            None => None,
        };
        if let Some(resp) = written {
            let target = resp.log_id.index;
            let caught_up = |r: &Replica| r.raft.metrics().borrow().last_applied.is_some_and(|a| a.index >= target);
            while !c.nodes.values().all(|(r, _)| caught_up(r)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            break;
        }
        if Instant::now() > deadline {
            return Err("the healed group accepted no write within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in 1..=N {
        c.crash(id).await;
    }
    // The files are free once every task of the replicas ended.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let history = history.lock().unwrap_or_else(|p| p.into_inner()).clone();
    check(&c, &history, final_op).await?;
    Ok(history.len())
}

async fn read_with_retry<T>(f: impl Fn() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn check(c: &Cluster, history: &HashMap<u64, Op>, final_op: u64) -> Result<(), String> {
    let mut logs = Vec::new();
    let mut ledgers = Vec::new();
    for id in 1..=N {
        let path = c.config(id).db_path;
        let log = read_with_retry(|| read_log(&path)).await?;
        // Everything up to the final write is committed (it was, after all of it, and the
        // log matching rule leaves no other entry before it); nothing follows it.
        let end = log.iter().position(|(_, b)| b.commands.iter().any(|c| op_of(c) == Some(final_op)));
        let Some(end) = end else { return Err(format!("replica {id} did not catch up: its log lacks the final write")) };
        let committed = &log[..=end];
        logs.push(committed.iter().flat_map(|(_, b)| b.commands.iter().filter_map(op_of)).collect::<Vec<u64>>());
        // The ledger those entries make, as every replica's state machine applies them.
        let mut ledger = LedgerState::new();
        for cmd in committed.iter().flat_map(|(_, b)| b.commands.iter()) {
            let _ = ledger.apply(cmd);
        }
        ledger.check_conservation().map_err(|e| format!("replica {id}: not conserved: {e:?}"))?;
        ledgers.push(encode_snapshot(&ledger).map_err(|e| e.to_string())?);
    }
    if logs.iter().any(|l| *l != logs[0]) || ledgers.iter().any(|l| *l != ledgers[0]) {
        return Err(format!("replicas disagree: log lengths {:?}", logs.iter().map(Vec::len).collect::<Vec<_>>()));
    }
    let log = &logs[0];
    let mut position = HashMap::new();
    for (i, op) in log.iter().enumerate() {
        if position.insert(*op, i).is_some() {
            return Err(format!("write {op} is in the log twice"));
        }
    }
    for (op, o) in history {
        match (o.outcome, position.contains_key(op)) {
            (Outcome::Acked, false) => return Err(format!("acknowledged write {op} was lost")),
            (Outcome::Refused, true) => return Err(format!("write {op} was refused as not-leader but is in the log")),
            _ => {}
        }
    }
    // Real-time order among acknowledged writes.
    let acked: Vec<(&u64, &Op)> = history.iter().filter(|(_, o)| o.outcome == Outcome::Acked).collect();
    for (a, oa) in &acked {
        for (b, ob) in &acked {
            if oa.completed < ob.invoked && position[a] > position[b] {
                return Err(format!("write {a} was acknowledged before write {b} was sent, but follows it in the log"));
            }
        }
    }
    Ok(())
}

#[test]
fn acknowledged_ledger_writes_survive_random_crashes_and_partitions_linearizably() {
    let cases: u32 = std::env::var("TRUCE_JEPSEN_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let pki = Pki::new("jepsen").expect("pki");
    for id in 1..=N {
        certs::peer(pki.path(), &format!("arbiter-{id}")).expect("peer certificate");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut runner = TestRunner::new(Config { cases, max_shrink_iters: 8, failure_persistence: None, ..Config::default() });
    let (histories, ops) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0usize));
    let started = Instant::now();
    let result = runner.run(&prop::collection::vec(step(), 4..16), |steps| {
        let n = rt.block_on(run_history(&pki, &steps)).map_err(|e| TestCaseError::fail(format!("{e}\nsteps: {steps:?}")))?;
        histories.set(histories.get() + 1);
        ops.set(ops.get() + n);
        Ok(())
    });
    eprintln!("jepsen: {} histories, {} writes checked in {:?}", histories.get(), ops.get(), started.elapsed());
    if let Err(e) = result {
        panic!("{e}");
    }
}
