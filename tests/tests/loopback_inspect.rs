//! The arbiter's inspection stream and metrics over real QUIC + mutual TLS on loopback:
//! observer sessions, the snapshot a new subscriber gets, and a parsed `/metrics` scrape
//! with the real market resolver (prices, credits, reputation) behind it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use truce_agent::transport::{Dialer, RawSession};
use truce_arbiter::ledger::Ledger;
use truce_arbiter::market::{Exchange, HostDefaults, Market, MarketResolver};
use truce_common::model::{Credits, Resource};
use truce_common::wire::{CAP_OBSERVER, ErrorCode, InspectEvent, InspectFilter, InspectKind, Message, Subscribe};
use truce_tests::loopback::{Arbiter, Pki, bid, count, eventually, metric, report, scrape};

const GUARD: Duration = Duration::from_secs(60);

async fn session(pki: &Pki, host: &str, arbiter: &Arbiter, observer: bool) -> anyhow::Result<RawSession> {
    let mut cfg = pki.client(host, &[arbiter.addr]);
    if observer {
        cfg.capabilities = vec![CAP_OBSERVER.into()];
    }
    let dialer = Box::leak(Box::new(Dialer::new(&cfg)?));
    let (raw, _) = dialer.handshake(&cfg.endpoints[0]).await?;
    Ok(raw)
}

async fn subscribe_all(raw: &mut RawSession) -> anyhow::Result<()> {
    let kinds = vec![InspectKind::Hosts, InspectKind::Prices, InspectKind::Leases, InspectKind::Accounts, InspectKind::Workloads];
    raw.send(&Message::Subscribe(Subscribe { seq: 1, filter: InspectFilter { hosts: vec![], kinds } })).await?;
    tokio::time::timeout(GUARD, async {
        loop {
            if let Message::Ack(a) = raw.recv().await? {
                anyhow::ensure!(a.seq == 1);
                return anyhow::Ok(());
            }
        }
    })
    .await?
}

/// Bid and read until the round's answer comes back (possibly empty: the market grants
/// nothing to a workload that has not earned credits yet).
async fn bid_and_wait(agent: &mut RawSession, id: u64) -> anyhow::Result<()> {
    agent.send(&Message::Bid(bid(id, 4200, 300))).await?;
    tokio::time::timeout(GUARD, async {
        loop {
            match agent.recv().await? {
                Message::Decisions(_) => return anyhow::Ok(()),
                Message::Error(e) => anyhow::bail!("refused: {e:?}"),
                _ => {}
            }
        }
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_with_a_hosts_certificate_neither_replaces_nor_joins_the_hosts() -> anyhow::Result<()> {
    let pki = Pki::new("inspect-observer")?;
    pki.issue("node-a")?;
    let arbiter = Arbiter::start(&pki, |_| {})?;
    let mut agent = session(&pki, "node-a", &arbiter, false).await?;
    agent.send(&Message::Report(report("node-a", 1, &[4200]))).await?;
    // The same certificate as the agent, as `truce top --as node-a` would use.
    let mut watcher = session(&pki, "node-a", &arbiter, true).await?;
    subscribe_all(&mut watcher).await?;
    let hosts = tokio::time::timeout(GUARD, async {
        loop {
            if let Message::Inspect(InspectEvent::Hosts { hosts, .. }) = watcher.recv().await? {
                return anyhow::Ok(hosts);
            }
        }
    })
    .await??;
    assert_eq!(hosts.len(), 1, "the observer is not a host: {hosts:?}");
    assert_eq!(hosts[0].host.0, "node-a");
    // The agent's session is intact: its bids are still decided.
    bid_and_wait(&mut agent, 1).await?;
    assert_eq!(count(&arbiter.stats.sessions_opened), 1);
    assert_eq!(arbiter.stats.observers_active.load(std::sync::atomic::Ordering::Relaxed), 1);
    // An observer may only watch.
    watcher.send(&Message::Bid(bid(9, 4200, 300))).await?;
    let refused = tokio::time::timeout(GUARD, async {
        loop {
            if let Message::Error(e) = watcher.recv().await? {
                return anyhow::Ok(e);
            }
        }
    })
    .await??;
    assert_eq!(refused.code, ErrorCode::UNEXPECTED_MESSAGE, "{refused:?}");
    assert!(refused.message.contains("observer"), "{refused:?}");
    watcher.close_cleanly(Duration::from_millis(500)).await;
    assert!(eventually(GUARD, || arbiter.stats.observers_active.load(std::sync::atomic::Ordering::Relaxed) == 0).await);
    agent.close_cleanly(Duration::from_millis(500)).await;
    arbiter.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscriber_gets_hosts_prices_and_leases_without_waiting_for_a_round() -> anyhow::Result<()> {
    let pki = Pki::new("inspect-snapshot")?;
    pki.issue("node-a")?;
    pki.issue("operator")?;
    let arbiter = Arbiter::start(&pki, |_| {})?;
    let mut agent = session(&pki, "node-a", &arbiter, false).await?;
    agent.send(&Message::Report(report("node-a", 1, &[4200]))).await?;
    bid_and_wait(&mut agent, 1).await?;
    // The agent goes quiet: whatever the subscriber sees now comes from the snapshot.
    let mut watcher = session(&pki, "operator", &arbiter, true).await?;
    subscribe_all(&mut watcher).await?;
    let (mut hosts, mut prices, mut leases) = (false, false, false);
    tokio::time::timeout(GUARD, async {
        while !(hosts && prices && leases) {
            match watcher.recv().await? {
                Message::Inspect(InspectEvent::Hosts { hosts: h, .. }) => hosts |= h.iter().any(|s| s.host.0 == "node-a"),
                Message::Inspect(InspectEvent::Prices { host, prices: p, .. }) => prices |= host.0 == "node-a" && !p.is_empty(),
                Message::Inspect(InspectEvent::Leases { host, leases: l, .. }) => leases |= host.0 == "node-a" && l.iter().any(|x| x.holder.0 == 4200),
                _ => {}
            }
        }
        anyhow::Ok(())
    })
    .await??;
    assert_eq!(count(&arbiter.stats.rounds), 1, "nothing new happened after subscribing");
    watcher.close_cleanly(Duration::from_millis(500)).await;
    agent.close_cleanly(Duration::from_millis(500)).await;
    arbiter.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbiter_metrics_scrape_parses_with_rounds_prices_credits_and_reputation() -> anyhow::Result<()> {
    let pki = Pki::new("inspect-metrics")?;
    pki.issue("node-a")?;
    let ledger = Ledger::open(pki.path().join("ledger.redb"))?;
    let defaults = HostDefaults { capacity: BTreeMap::from([(Resource::Cpu, 4000)]), floor_fraction: 0.25, income_per_second: Credits::from_credits(1.0) };
    let resolver = Arc::new(MarketResolver::new(Exchange::new(ledger, Market::default()), defaults));
    let arbiter = Arbiter::serve(&pki, resolver, |_| {}).await?;
    let metrics_addr = arbiter.metrics.ok_or_else(|| anyhow::anyhow!("no metrics endpoint"))?;

    let before = scrape(metrics_addr).await?;
    assert_eq!(metric(&before, "truce_arbiter_rounds_total", &[]), Some(0.0));
    assert_eq!(metric(&before, "truce_arbiter_round_duration_seconds_count", &[]), Some(0.0));

    let mut agent = session(&pki, "node-a", &arbiter, false).await?;
    agent.send(&Message::Report(report("node-a", 1, &[4200, 4201]))).await?;
    for id in 1..=3 {
        bid_and_wait(&mut agent, id).await?;
    }
    let s = scrape(metrics_addr).await?;
    let rounds = metric(&s, "truce_arbiter_rounds_total", &[]).expect("rounds");
    assert!(rounds >= 3.0, "{rounds}");
    assert_eq!(metric(&s, "truce_arbiter_round_duration_seconds_count", &[]), Some(rounds), "one observation per round");
    assert!(metric(&s, "truce_arbiter_round_duration_seconds_sum", &[]).is_some_and(|v| v > 0.0));
    assert!(s.iter().any(|x| x.name == "truce_arbiter_round_duration_seconds_bucket" && x.labels.get("le").map(String::as_str) == Some("+Inf")));
    assert_eq!(metric(&s, "truce_arbiter_bids_total", &[]), Some(3.0));
    assert_eq!(metric(&s, "truce_arbiter_reports_total", &[]), Some(1.0));
    assert_eq!(metric(&s, "truce_arbiter_sessions", &[]), Some(1.0));
    let price = metric(&s, "truce_arbiter_price", &[("host", "node-a"), ("resource", "cpu")]).expect("cpu price");
    assert!(price > 0.0, "{price}");
    assert!(metric(&s, "truce_arbiter_credits", &[("host", "node-a"), ("workload", "4200")]).is_some(), "credits of a workload that bid");
    assert!(metric(&s, "truce_arbiter_reputation", &[("host", "node-a"), ("workload", "4200")]).is_some());
    assert!(metric(&s, "truce_arbiter_leases", &[("host", "node-a")]).is_some());

    // A host that leaves takes its figures along: no stale series.
    agent.close_cleanly(Duration::from_millis(500)).await;
    assert!(eventually(GUARD, || count(&arbiter.stats.sessions_closed_cleanly) == 1).await);
    let after = scrape(metrics_addr).await?;
    assert_eq!(metric(&after, "truce_arbiter_price", &[("host", "node-a"), ("resource", "cpu")]), None);
    assert_eq!(metric(&after, "truce_arbiter_sessions", &[]), Some(0.0));
    arbiter.shutdown().await
}
