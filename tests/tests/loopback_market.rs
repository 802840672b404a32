//! The real market behind the real QUIC server: an agent reports its inventory and bids over
//! mutual TLS, the market (good_lp, redb ledger on disk) decides, and the decisions come back
//! with the ledger's lease ids, which stay the same while a lease is renewed round after round.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use truce_agent::transport::{ArbiterClient, CancellationToken, ConnectionState, Inbound, Outbound};
use truce_arbiter::ledger::Ledger;
use truce_arbiter::market::{Exchange, HostDefaults, Market, MarketResolver};
use truce_common::model::{Ask, Bid, BidId, Credits, Decision, LeaseId, Resource, Setting, Timestamp, WorkloadId};
use truce_common::wire::{Capacity, Inventory, ManagedWorkload};
use truce_tests::loopback::{Arbiter, Pki, report, workload};

const VICTIM: u64 = 1;
const HOG: u64 = 2;

fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

fn cpu_bid(id: u64, w: u64, millicores: u64, max_price: f64, priority: u32) -> Bid {
    Bid {
        id: BidId(id),
        workload: workload(w),
        at: now(),
        asks: vec![Ask { resource: Resource::Cpu, amount: millicores, max_price }],
        releases: vec![],
        trades: vec![],
        willingness_to_pay: Credits::from_credits(500.0),
        priority,
        slo_breach: w == VICTIM,
        lease_ms: 5_000,
        reasons: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_market_limits_the_hog_raises_the_victim_and_renews_under_the_same_lease_ids() -> anyhow::Result<()> {
    let pki = Pki::new("market")?;
    pki.issue("node-a")?;
    let ledger_path = pki.path().join("ledger.redb");
    let defaults = HostDefaults { capacity: BTreeMap::from([(Resource::Cpu, 4000)]), floor_fraction: 0.1, income_per_second: Credits::from_credits(200.0) };
    let resolver = Arc::new(MarketResolver::new(Exchange::new(Ledger::open(&ledger_path)?, Market::default()), defaults));
    let arbiter = Arbiter::start_with(&pki, resolver, |c| c.round_period = Duration::from_millis(100))?;
    let cancel = CancellationToken::new();
    let (client, mut inbound) = ArbiterClient::spawn(pki.client("node-a", &[arbiter.addr]), cancel.clone())?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), inbound.recv()).await? {
            Some(Inbound::State(ConnectionState::Connected { .. })) => break,
            Some(_) => continue,
            None => anyhow::bail!("client stopped before connecting"),
        }
    }
    let mut first = report("node-a", 1, &[VICTIM, HOG]);
    first.inventory = Some(Inventory {
        capacity: vec![Capacity { resource: Resource::Cpu, amount: 2000 }],
        managed: [(VICTIM, 50), (HOG, 1)].into_iter().map(|(w, priority)| ManagedWorkload { workload: workload(w), priority, bounds: vec![], usage: vec![] }).collect(),
    });
    client.send(Outbound::Report(first));

    // Rounds: the victim (priority 50, SLO breached) wants 1500 millicores, the hog all 2000.
    let mut by_workload: HashMap<u64, Vec<Decision>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut round = 0u64;
    while by_workload.get(&VICTIM).map_or(0, Vec::len) < 8 && tokio::time::Instant::now() < deadline {
        round += 1;
        client.send(Outbound::Bid(cpu_bid(round * 10, VICTIM, 1500, 0.01, 50)));
        client.send(Outbound::Bid(cpu_bid(round * 10 + 1, HOG, 2000, 0.002, 1)));
        let wait = tokio::time::sleep(Duration::from_millis(400));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                msg = inbound.recv() => match msg {
                    Some(Inbound::Decisions(d)) => {
                        for dec in d.decisions {
                            by_workload.entry(dec.workload.id.0).or_default().push(dec);
                        }
                    }
                    Some(Inbound::Refused(e)) => anyhow::bail!("refused: {e:?}"),
                    Some(_) => {}
                    None => anyhow::bail!("client stopped"),
                },
            }
        }
    }
    cancel.cancel();
    client.join().await;
    arbiter.shutdown().await?;

    let victim = by_workload.get(&VICTIM).cloned().unwrap_or_default();
    let hog = by_workload.get(&HOG).cloned().unwrap_or_default();
    println!("victim decisions: {:?}", victim.iter().map(|d| (d.lease.id.0, &d.setting)).collect::<Vec<_>>());
    println!("hog decisions: {:?}", hog.iter().map(|d| (d.lease.id.0, &d.setting)).collect::<Vec<_>>());
    assert!(victim.len() >= 8, "the victim got {} decisions in 60 s", victim.len());
    assert!(
        victim.iter().all(|d| matches!(d.setting, Setting::CpuWeight { weight } if weight > 100)),
        "the victim holds more than its equal share, as a cpu.weight above 100"
    );
    let hog_limit = hog.iter().find_map(|d| match d.setting {
        Setting::CpuMax { millicores, .. } => Some(millicores),
        _ => None,
    });
    assert!(hog_limit.is_some_and(|m| m < 1000), "the hog is limited below its equal share of 1000 millicores: {hog_limit:?}");
    // Renewed, not reopened: a lease carried into the next round keeps its ledger id (the
    // server used to renumber every decision, so no two rounds ever shared one). The market
    // may still close and reopen a lease when its terms move (amount or price), so the test
    // asks for renewals, not for one id forever.
    let ids: Vec<LeaseId> = victim.iter().map(|d| d.lease.id).collect();
    let renewals = ids.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(renewals >= 2, "the victim's lease was renewed {renewals} times in {} rounds: {ids:?}", ids.len());
    assert!(victim.iter().all(|d| d.caused_by.iter().any(|b| b.0 % 10 == 0)), "each decision names the victim's bid");

    // The ledger on disk: reopened, conserved, and it holds the lease the agent was told about.
    let ledger = Ledger::open(&ledger_path)?;
    ledger.state().check_conservation().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    // Rounds run until the server stops, so the last lease the agent heard of may have been
    // closed since: it must be in the ledger, open (held by the victim) or closed.
    let last = *ids.last().expect("the victim got decisions");
    match ledger.state().lease(last) {
        Some(open) => assert_eq!(open.terms.holder, WorkloadId(VICTIM), "lease {last:?} is the victim's"),
        None => assert!(ledger.state().closed_lease(last).is_some(), "lease {last:?} the agent was sent is unknown to the ledger"),
    }
    Ok(())
}
