//! A partitioned minority stops deciding. Three real replica processes, 20 simulated agents;
//! the leader is cut off from both followers (its raft traffic is dropped inside its
//! transport; agents still reach it). From then on it must issue no decision: it cannot
//! commit the round's ledger commands, and its leader lease lapses, so it redirects its agents.
//! The majority elects a leader that serves them; after healing, every decision any agent got
//! is in every replica's ledger, conserved.

use std::time::{Duration, Instant};
use truce_agent::transport::CancellationToken;
use truce_arbiter::cluster::store::read_committed;
use truce_tests::loopback::Pki;
use truce_tests::replicas::{ReplicaGroup, child_main};
use truce_tests::sim_agents;

const CHILD: &str = "cluster_partition_replica_child";
const AGENTS: u64 = 20;

#[test]
#[ignore = "a replica process of a_leader_cut_off_from_the_majority_stops_deciding"]
fn cluster_partition_replica_child() {
    child_main();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_majority_stops_deciding() -> anyhow::Result<()> {
    let pki = Pki::new("raft-partition")?;
    let extra = "round_period_ms = 500\n[market]\nincome_per_second = 200.0\nfloor_fraction = 0.1\n";
    let mut group = ReplicaGroup::start(pki.path(), 3, CHILD, extra)?;
    let leader = group.leader(&[1, 2, 3], Duration::from_secs(60)).await.ok_or_else(|| anyhow::anyhow!("no leader within 60 s"))?;
    let cancel = CancellationToken::new();
    let mut agents = Vec::new();
    for n in 0..AGENTS {
        agents.push(sim_agents::spawn(&pki, n, &group.agent_addrs(), Duration::from_millis(500), 3_000, cancel.clone())?);
    }
    let warm = Instant::now();
    while agents.iter().filter(|a| !a.log().decisions.is_empty()).count() < AGENTS as usize {
        anyhow::ensure!(warm.elapsed() < Duration::from_secs(60), "not every agent was served within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let minority = group.agent_addr(leader);
    let from_leader = agents.iter().map(|a| a.log().decisions.iter().filter(|s| s.from == minority).count()).sum::<usize>();
    anyhow::ensure!(from_leader > 0, "the leader served before the partition");

    group.control(leader, "cut")?;
    let cut = Instant::now();
    let cut_ms = sim_agents::wall_ms();
    eprintln!("replica {leader} (the leader) cut off from its peers");
    let majority: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let elected = group.leader(&majority, Duration::from_secs(15)).await;
    eprintln!("the majority elected {elected:?} {:?} after the cut", cut.elapsed());
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(cut.elapsed())).await;

    // Rounds the cut-off replica ran after the cut (by its clock, same host) that still
    // handed out decisions. A round that started just before the cut may have committed
    // with RPCs already on their way: 200 ms of grace.
    let late: Vec<(u64, u64)> = agents
        .iter()
        .flat_map(|a| a.log().decisions.iter().filter(|s| s.from == minority && s.round_at > cut_ms + 200).map(|s| (s.round_at - cut_ms, s.decision.lease.id.0)).collect::<Vec<_>>())
        .collect();
    let last_round = agents.iter().filter_map(|a| a.log().decisions.iter().filter(|s| s.from == minority).map(|s| s.round_at).max()).max();
    let first_from_majority =
        agents.iter().filter_map(|a| a.log().decisions.iter().find(|s| s.at > cut && s.from != minority).map(|s| s.at.duration_since(cut))).min();
    let served_by_majority = agents.iter().filter(|a| a.log().decisions.iter().any(|s| s.at > cut && s.from != minority)).count();
    eprintln!(
        "last round with decisions on the cut-off replica: {:?} ms after the cut; first decision from the majority {first_from_majority:?} after the cut; {served_by_majority} of {AGENTS} agents served by the majority",
        last_round.map(|r| r as i64 - cut_ms as i64)
    );
    assert!(late.is_empty(), "the cut-off replica decided in rounds after the cut (ms after, lease): {late:?}");
    assert!(first_from_majority.is_some(), "the majority served no agent within 15 s");
    assert!(served_by_majority as u64 >= AGENTS * 3 / 4, "only {served_by_majority} of {AGENTS} agents moved to the majority's leader");

    group.control(leader, "heal")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    cancel.cancel();
    let seen: Vec<sim_agents::Seen> = agents.iter().flat_map(|a| a.log().decisions.clone()).collect();
    // Together: each waits up to a second or two for its connection to close.
    let joins: Vec<_> = agents.into_iter().map(|a| tokio::spawn(a.join())).collect();
    for j in joins {
        let _ = j.await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in group.alive() {
        group.stop(id, Duration::from_secs(10));
    }
    for id in 1..=3u64 {
        let state = read_committed(&group.db(id)).map_err(|e| anyhow::anyhow!("replica {id}: {e}"))?;
        state.ledger.check_conservation().map_err(|e| anyhow::anyhow!("replica {id} not conserved: {e:?}"))?;
        if id == leader {
            continue;
        }
        let missing: Vec<_> = seen.iter().map(|s| s.decision.lease.id).filter(|l| state.ledger.lease(*l).is_none() && state.ledger.closed_lease(*l).is_none()).collect();
        assert!(missing.is_empty(), "replica {id} lacks {} leases agents were granted, e.g. {:?}", missing.len(), missing.first());
    }
    Ok(())
}
