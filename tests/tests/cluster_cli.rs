//! `truce-arbiter cluster status|add|remove`, the real binary, against three real replica
//! processes on loopback (`truce_tests::replicas`) and a fourth started for `add`:
//! - `status` (text and `--json`) names the members and the leader the group agrees on;
//! - `add`, sent to a follower, reaches the leader; the new replica appears as a voter and
//!   catches up with the leader's log (five simulated agents bid meanwhile, so the log holds
//!   the ledger's rounds);
//! - `remove` drops it: it is gone from every replica's view;
//! - bad input fails with a clear message and exit status 1, never a panic: an unknown id, a
//!   replica that does not answer, a malformed `--replica`, a certificate that is not there,
//!   an `add` of a replica that was never started (left a learner, which `remove` then drops),
//!   an `add` under an id another replica holds.
//!
//! The binary comes from `TRUCE_ARBITER_BIN` (`cargo xtask test` builds it) or
//! `target/debug/truce-arbiter`: after changing the command, rebuild it before running this
//! test alone (`cargo build -p truce-arbiter`).

use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use truce_tests::loopback::Pki;
use truce_agent::transport::CancellationToken;
use truce_tests::replicas::{ReplicaGroup, arbiter_binary, child_main};
use truce_tests::sim_agents;

const CHILD: &str = "cluster_cli_replica_child";
const AGENTS: u64 = 5;

#[test]
#[ignore = "a replica process of the_cluster_command_shows_adds_and_removes_replicas_of_a_live_group"]
fn cluster_cli_replica_child() {
    child_main();
}

/// One run of `truce-arbiter cluster ARGS` (each waits at most its own `--timeout-ms`).
struct Cli {
    bin: std::path::PathBuf,
    certs: std::path::PathBuf,
}

/// What `status --json` says: the leader, the members (id → voter), the last applied index.
type View = (Option<u64>, BTreeMap<u64, bool>, Option<u64>);

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Result<Ran> {
        let out: Output = Command::new(&self.bin)
            .arg("cluster")
            .args(args)
            .arg("--certs")
            .arg(&self.certs)
            .env("RUST_LOG", "warn")
            .env_remove("TRUCE_ARBITER_REPLICA")
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        let ran = Ran { code: out.status.code(), stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() };
        eprintln!("$ truce-arbiter cluster {} -> {:?}\n{}{}", args.join(" "), ran.code, ran.stdout, ran.stderr);
        ensure!(!ran.stderr.contains("panicked"), "truce-arbiter panicked: {}", ran.stderr);
        Ok(ran)
    }

    /// A command that must succeed.
    fn ok(&self, args: &[&str]) -> Result<Ran> {
        let ran = self.run(args)?;
        ensure!(ran.code == Some(0), "`cluster {}` failed ({:?}): {}", args.join(" "), ran.code, ran.stderr);
        Ok(ran)
    }

    /// A command that must fail with exit status 1 and an error line naming `why`.
    fn fails(&self, args: &[&str], why: &str) -> Result<()> {
        let ran = self.run(args)?;
        ensure!(ran.code == Some(1), "`cluster {}` should fail with status 1, got {:?}", args.join(" "), ran.code);
        ensure!(ran.stderr.contains("truce-arbiter: error:") && ran.stderr.contains(why), "`cluster {}`: the error should say {why:?}: {}", args.join(" "), ran.stderr);
        Ok(())
    }

    /// `status --json` from `replica` (NAME@ADDR): leader, members (id → voter).
    fn status(&self, replica: &str) -> Result<View> {
        let ran = self.ok(&["status", "--replica", replica, "--json", "--timeout-ms", "3000"])?;
        let v: serde_json::Value = serde_json::from_str(ran.stdout.trim()).with_context(|| format!("status --json printed {:?}", ran.stdout))?;
        let members = v["members"]
            .as_array()
            .context("members")?
            .iter()
            .map(|m| Ok((m["id"].as_u64().context("member id")?, m["voter"].as_bool().context("voter")?)))
            .collect::<Result<BTreeMap<u64, bool>>>()?;
        Ok((v["leader"].as_u64(), members, v["last_applied"].as_u64()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_command_shows_adds_and_removes_replicas_of_a_live_group() -> Result<()> {
    let bin = arbiter_binary()?;
    let pki = Pki::new("raft-cli")?;
    // Replicas 1-3 form the group; 4 is prepared for `add`, 5 is never started.
    let mut group = ReplicaGroup::start_with_spares(pki.path(), 3, 2, CHILD, "round_period_ms = 1000\n")?;
    let leader = group.leader(&[1, 2, 3], Duration::from_secs(60)).await.context("no leader within 60 s")?;
    let cli = Cli { bin, certs: pki.path().to_path_buf() };
    let named: BTreeMap<u64, String> = (1..=5).map(|id| (id, format!("{}@{}", group.name(id), group.raft_addr(id)))).collect();
    let at = |id: u64| named[&id].clone();
    let follower = (1..=3).find(|id| *id != leader).context("a follower")?;

    // status: every replica names the same leader and the three voters.
    for id in 1..=3 {
        let (l, members, _) = cli.status(&at(id))?;
        ensure!(l == Some(leader), "replica {id} names leader {l:?}, the group {leader}");
        ensure!(members == BTreeMap::from([(1, true), (2, true), (3, true)]), "replica {id} lists {members:?}");
    }
    let text = cli.ok(&["status", "--replica", &at(follower), "--timeout-ms", "3000"])?.stdout;
    ensure!(text.contains(&format!("leader {leader}")) && text.lines().filter(|l| l.contains("arbiter-")).count() == 3, "status text: {text}");

    // Agents bid, so the log the new replica must catch up with holds the ledger's rounds.
    let cancel = CancellationToken::new();
    let endpoints: Vec<_> = (1..=3).map(|id| group.agent_addr(id)).collect();
    let agents = (0..AGENTS).map(|n| sim_agents::spawn(&pki, n, &endpoints, Duration::from_millis(500), 3_000, cancel.clone())).collect::<Result<Vec<_>>>()?;
    let warm = Instant::now();
    let behind = loop {
        let (_, _, applied) = cli.status(&at(leader))?;
        if applied.unwrap_or(0) >= 20 {
            break applied.unwrap_or(0);
        }
        ensure!(warm.elapsed() < Duration::from_secs(60), "the agents' rounds did not reach the log within 60 s (applied {applied:?})");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // add, sent to a follower: it names the leader, the command goes there.
    group.spawn(4)?;
    let (raft4, agent4) = (group.raft_addr(4).to_string(), group.agent_addr(4).to_string());
    let added = cli.ok(&["add", "--replica", &at(follower), "--id", "4", "--name", "arbiter-4", "--raft-addr", &raft4, "--agent-addr", &agent4])?;
    ensure!(added.stderr.contains("replica 4 added"), "add says so: {}", added.stderr);
    // Everyone, the new replica included, lists it as a voter; it catches up with the leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, on_leader, leader_applied) = cli.status(&at(leader))?;
        let (l4, on_4, applied4) = cli.status(&at(4))?;
        let (_, on_follower, _) = cli.status(&at(follower))?;
        let voters = BTreeMap::from([(1, true), (2, true), (3, true), (4, true)]);
        if on_leader == voters && on_4 == voters && on_follower == voters && l4 == Some(leader) && applied4.unwrap_or(0) > behind {
            eprintln!("replica 4 is a voter and applied {applied4:?} (the leader had applied {behind} before the add, {leader_applied:?} now)");
            break;
        }
        if Instant::now() > deadline {
            bail!("replica 4 did not join and catch up within 30 s: leader lists {on_leader:?} applied {leader_applied:?}; replica 4 lists {on_4:?}, leader {l4:?}, applied {applied4:?}; follower lists {on_follower:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Bad input: a clear error and exit status 1.
    cli.fails(&["remove", "--replica", &at(leader), "--id", "9"], "not a member")?;
    let silent = format!("arbiter-1@{}", group.agent_addr(5));
    cli.fails(&["status", "--replica", &silent, "--timeout-ms", "1500"], "did not answer")?;
    cli.fails(&["status", "--replica", "arbiter-1"], "expected NAME@IP:PORT")?;
    cli.fails(&["status", "--replica", &at(1), "--as", "arbiter-77"], "peer certificate")?;
    // A replica that was never started: add cannot finish, the replica stays a learner, and
    // remove takes it out again.
    let (raft5, agent5) = (group.raft_addr(5).to_string(), group.agent_addr(5).to_string());
    cli.fails(&["add", "--replica", &at(leader), "--id", "5", "--name", "arbiter-5", "--raft-addr", &raft5, "--agent-addr", &agent5, "--timeout-ms", "3000"], "must be running and reachable")?;
    let (_, members, _) = cli.status(&at(leader))?;
    ensure!(members.get(&5) == Some(&false), "the unreachable replica is left a learner: {members:?}");
    cli.ok(&["remove", "--replica", &at(follower), "--id", "5"])?;

    // An id already taken by another replica.
    cli.fails(&["add", "--replica", &at(leader), "--id", "4", "--name", "arbiter-5", "--raft-addr", &raft5, "--agent-addr", &agent5], "already belongs to replica arbiter-4")?;

    // remove 4: gone from every view, the group keeps its leader.
    let removed = cli.ok(&["remove", "--replica", &at(follower), "--id", "4"])?;
    ensure!(removed.stderr.contains("replica 4 removed"), "remove says so: {}", removed.stderr);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let views: Vec<_> = (1..=3).map(|id| cli.status(&at(id))).collect::<Result<_>>()?;
        let three = BTreeMap::from([(1, true), (2, true), (3, true)]);
        if views.iter().all(|(l, m, _)| *l == Some(leader) && *m == three) {
            break;
        }
        ensure!(Instant::now() < deadline, "replica 4 still listed after remove: {:?}", views.iter().map(|v| &v.1).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cancel.cancel();
    for a in agents {
        a.join().await;
    }
    for id in group.alive() {
        group.stop(id, Duration::from_secs(10));
    }
    Ok(())
}
