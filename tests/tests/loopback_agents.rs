//! Many agents over real QUIC + mutual TLS on loopback: connect, report, bid, receive
//! decisions, disconnect cleanly; fail-over; graceful arbiter shutdown.

use std::collections::HashSet;
use std::time::Duration;
use truce_agent::transport::{ArbiterClient, CancellationToken, ConnectionState, Inbound, Outbound};
use truce_common::model::{BidId, LeaseId};
use truce_common::wire::ErrorCode;
use truce_tests::loopback::{Arbiter, Pki, bid, count, eventually, report};

const AGENTS: u64 = 200;
const GUARD: Duration = Duration::from_secs(120);

/// Drive one agent: report two workloads, bid for each, wait for the ack and decisions
/// for both bids. Returns the lease ids granted.
async fn one_agent(client: &ArbiterClient, inbound: &mut tokio::sync::mpsc::Receiver<Inbound>, host: &str, n: u64) -> anyhow::Result<Vec<LeaseId>> {
    let workloads = [n * 10 + 1, n * 10 + 2];
    // Wait for the session first so the test exercises the live path, not just the outbox.
    loop {
        match inbound.recv().await {
            Some(Inbound::State(ConnectionState::Connected { .. })) => break,
            Some(_) => continue,
            None => anyhow::bail!("{host}: client stopped before connecting"),
        }
    }
    client.send(Outbound::Report(report(host, 1, &workloads)));
    let bids: Vec<BidId> = workloads.iter().map(|&w| BidId(w * 100)).collect();
    for (&w, b) in workloads.iter().zip(&bids) {
        client.send(Outbound::Bid(bid(b.0, w, 250)));
    }
    let mut acked = false;
    let mut answered: HashSet<BidId> = HashSet::new();
    let mut leases = Vec::new();
    while !(acked && answered.len() == bids.len()) {
        match inbound.recv().await {
            Some(Inbound::Ack(a)) if a.seq == 1 => acked = true,
            Some(Inbound::Decisions(d)) => {
                for dec in d.decisions {
                    anyhow::ensure!(workloads.contains(&dec.workload.id.0), "{host}: decision for a workload it does not own: {dec:?}");
                    anyhow::ensure!(dec.lease.amount == 250 && dec.lease.expiry > dec.lease.start, "{host}: unexpected lease {:?}", dec.lease);
                    answered.extend(dec.caused_by.iter().copied());
                    leases.push(dec.lease.id);
                }
            }
            Some(Inbound::Refused(e)) => anyhow::bail!("{host}: refused: {e:?}"),
            Some(_) => {}
            None => anyhow::bail!("{host}: client stopped"),
        }
    }
    Ok(leases)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_agents_report_bid_get_decisions_and_disconnect_cleanly() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let pki = Pki::new("loopback-200")?;
    for n in 0..AGENTS {
        pki.issue(&format!("node-{n}"))?;
    }
    let arbiter = Arbiter::start(&pki, |_| {})?;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..AGENTS {
        let host = format!("node-{n}");
        let mut cfg = pki.client(&host, &[arbiter.addr]);
        // 200 handshakes at once on two loaded cores: a short timeout would only cause retries.
        cfg.connect_timeout = Duration::from_secs(60);
        tasks.spawn(async move {
            let cancel = CancellationToken::new();
            let (client, mut inbound) = ArbiterClient::spawn(cfg, cancel.clone())?;
            let leases = tokio::time::timeout(GUARD, one_agent(&client, &mut inbound, &host, n)).await??;
            cancel.cancel();
            client.join().await;
            anyhow::Ok(leases)
        });
    }
    eprintln!("{AGENTS} agents spawned after {:?}", started.elapsed());
    let mut all_leases = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        for lease in done?? {
            assert!(all_leases.insert(lease), "lease id {lease:?} granted twice");
        }
    }
    eprintln!("all agents done after {:?}", started.elapsed());
    assert_eq!(all_leases.len() as u64, AGENTS * 2);
    let stats = arbiter.stats.clone();
    let all_closed = || stats.sessions_active.load(std::sync::atomic::Ordering::Relaxed) == 0;
    assert!(eventually(GUARD, all_closed).await, "sessions still open after every agent left");
    assert_eq!(count(&stats.sessions_opened), AGENTS, "an agent needed more than one session");
    assert_eq!(count(&stats.sessions_closed_cleanly), AGENTS, "some sessions did not end with a clean goodbye");
    assert_eq!(count(&stats.refusals), 0);
    assert_eq!(count(&stats.frames_rejected), 0);
    assert_eq!(count(&stats.bids), AGENTS * 2);
    assert_eq!(count(&stats.reports), AGENTS);
    arbiter.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_fails_over_to_the_next_arbiter() -> anyhow::Result<()> {
    let pki = Pki::new("loopback-failover")?;
    pki.issue("node-f")?;
    // A bound UDP socket that never answers: the first endpoint is silent, not refusing.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let arbiter = Arbiter::start(&pki, |_| {})?;
    let mut cfg = pki.client("node-f", &[silent.local_addr()?, arbiter.addr]);
    cfg.connect_timeout = Duration::from_millis(300);
    let cancel = CancellationToken::new();
    let (client, mut inbound) = ArbiterClient::spawn(cfg, cancel.clone())?;
    let mut saw_down = false;
    let connected_to = tokio::time::timeout(GUARD, async {
        loop {
            match inbound.recv().await {
                Some(Inbound::State(ConnectionState::Disconnected { endpoint, .. })) if endpoint == silent.local_addr()? => saw_down = true,
                Some(Inbound::State(ConnectionState::Connected { endpoint, .. })) => return anyhow::Ok(endpoint),
                Some(_) => {}
                None => anyhow::bail!("client stopped"),
            }
        }
    })
    .await??;
    assert!(saw_down, "the silent endpoint was never reported down");
    assert_eq!(connected_to, arbiter.addr);
    cancel.cancel();
    client.join().await;
    arbiter.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbiter_shutdown_tells_agents_and_they_keep_retrying() -> anyhow::Result<()> {
    let pki = Pki::new("loopback-shutdown")?;
    pki.issue("node-s")?;
    let arbiter = Arbiter::start(&pki, |_| {})?;
    let cancel = CancellationToken::new();
    let (client, mut inbound) = ArbiterClient::spawn(pki.client("node-s", &[arbiter.addr]), cancel.clone())?;
    tokio::time::timeout(GUARD, async {
        while !matches!(inbound.recv().await, Some(Inbound::State(ConnectionState::Connected { .. }))) {}
    })
    .await?;
    arbiter.shutdown().await?;
    // The agent hears why, then goes on trying (it keeps working while disconnected).
    let mut told = false;
    tokio::time::timeout(GUARD, async {
        loop {
            match inbound.recv().await {
                Some(Inbound::Refused(e)) if e.code == ErrorCode::SHUTTING_DOWN => told = true,
                Some(Inbound::State(ConnectionState::Backoff { .. })) => break,
                Some(_) => {}
                None => break,
            }
        }
    })
    .await?;
    assert!(told, "agent was not told the arbiter is shutting down");
    // Queued while disconnected: never blocks, and counts what it drops.
    for i in 0..5000 {
        client.send(Outbound::Bid(bid(i, 1, 1)));
    }
    assert!(client.dropped() > 0);
    cancel.cancel();
    client.join().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_subscriber_sees_hosts_bids_and_decisions() -> anyhow::Result<()> {
    use truce_agent::transport::Dialer;
    use truce_common::model::HostId;
    use truce_common::wire::{InspectEvent, InspectFilter, InspectKind, Message, Subscribe};
    let pki = Pki::new("loopback-inspect")?;
    pki.issue("node-top")?;
    pki.issue("node-busy")?;
    let arbiter = Arbiter::start(&pki, |_| {})?;
    let top_cfg = pki.client("node-top", &[arbiter.addr]);
    let top_dialer = Dialer::new(&top_cfg)?;
    let (mut top, _) = top_dialer.handshake(&top_cfg.endpoints[0]).await?;
    let filter = InspectFilter { hosts: vec![], kinds: vec![InspectKind::Hosts, InspectKind::Bids, InspectKind::Decisions] };
    top.send(&Message::Subscribe(Subscribe { seq: 1, filter })).await?;
    tokio::time::timeout(GUARD, async {
        while !matches!(top.recv().await, Ok(Message::Ack(a)) if a.seq == 1) {}
    })
    .await?;

    let busy_cfg = pki.client("node-busy", &[arbiter.addr]);
    let busy_dialer = Dialer::new(&busy_cfg)?;
    let (mut busy, _) = busy_dialer.handshake(&busy_cfg.endpoints[0]).await?;
    busy.send(&Message::Bid(bid(42, 4200, 300))).await?;

    let busy_host = HostId("node-busy".into());
    let (mut saw_host, mut saw_bid, mut saw_decision) = (false, false, false);
    tokio::time::timeout(GUARD, async {
        while !(saw_host && saw_bid && saw_decision) {
            match top.recv().await? {
                Message::Inspect(InspectEvent::Hosts { hosts, .. }) => saw_host |= hosts.iter().any(|h| h.host == busy_host),
                Message::Inspect(InspectEvent::Bids { host, bids }) => saw_bid |= host == busy_host && bids.iter().any(|b| b.id.0 == 42),
                Message::Inspect(InspectEvent::Decisions { host, decisions, .. }) => {
                    saw_decision |= host == busy_host && decisions.iter().any(|d| d.caused_by.iter().any(|b| b.0 == 42));
                }
                Message::Inspect(other) => anyhow::bail!("filter let through {:?}", other.kind()),
                _ => {}
            }
        }
        anyhow::Ok(())
    })
    .await??;
    arbiter.shutdown().await
}
