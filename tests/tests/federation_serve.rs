//! Federation through `truce-arbiter serve`: three arbiter processes, each a site (a
//! `[federation]` section in its configuration file, loaded and validated as `serve` does and
//! run by `daemon::serve`), each with one host whose agent (the real agent transport, mutual
//! TLS) reports its workloads' CPU use and bids. Site a's host heads for overload; b and c
//! have room. The sites forecast from those reports, a proposes, b and c vote over QUIC
//! (ALPN `truce-fed/1`, peer certificates), a's command hook and the destination's run, and
//! `truce top`'s data source, subscribed to site a's inspection stream, sees the proposal,
//! the weighted votes, the tally and the orders' outcome.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use truce_agent::top::source::{SourceEvent, spawn_arbiter};
use truce_agent::transport::{ArbiterEndpoint, CancellationToken};
use truce_arbiter::server::certs;
use truce_common::model::HostId;
use truce_common::wire::{FederationMessage, InspectEvent, VoteTally};
use truce_tests::loopback::Pki;
use truce_tests::replicas::free_udp_ports;
use truce_tests::sites::{Pace, SiteProcess, SiteSection, spawn_host};

const CHILD: &str = "federation_serve_site_child";
const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];
const PERIOD_MS: u64 = 400;

#[test]
#[ignore = "a site process of three_serve_processes_vote_and_truce_top_sees_the_tally"]
fn federation_serve_site_child() {
    truce_tests::sites::site_child_main();
}

fn config(pki: &Pki, i: usize, agent_ports: &[u16], fed_ports: &[u16], hook_log: &Path) -> String {
    let addr = |j: usize| SocketAddr::from(([127, 0, 0, 1], fed_ports[j]));
    let log = PathBuf::from(format!("{}.{}", hook_log.display(), SITES[i]));
    let section = SiteSection {
        name: SITES[i],
        listen: addr(i),
        peers: SITES.iter().enumerate().filter(|(j, _)| *j != i).map(|(j, p)| (*p, vec![addr(j)])).collect(),
        hook_log: &log,
        period_ms: PERIOD_MS,
        vote_timeout_ms: 10_000,
    };
    section.single_arbiter(pki, agent_ports[i])
}

/// Site `i`'s host utilisation in period `p`: a rises toward overload, b and c stay low.
fn utilisation(i: usize, p: u64) -> f64 {
    match i {
        0 => (0.45 + 0.012 * p as f64).min(1.0),
        1 => 0.30,
        _ => 0.15,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_serve_processes_vote_and_truce_top_sees_the_tally() -> anyhow::Result<()> {
    let pki = Pki::new("fed-serve")?;
    let ports = free_udp_ports(6)?;
    let (agent_ports, fed_ports) = ports.split_at(3);
    let hook_log = pki.path().join("orders.jsonl");
    let unix_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let sites_started = unix_ms();
    let mut sites = Vec::new();
    for (i, name) in SITES.iter().enumerate() {
        certs::peer(pki.path(), name)?;
        let path = pki.path().join(format!("{name}.toml"));
        std::fs::write(&path, config(&pki, i, agent_ports, fed_ports, &hook_log))?;
        sites.push(SiteProcess::spawn(CHILD, &path)?);
    }
    let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], agent_ports[i]));
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let mut hosts = Vec::new();
    let pace = Pace { started, period: Duration::from_millis(PERIOD_MS) };
    for (i, site) in SITES.iter().enumerate() {
        let ids = [100 * i as u64 + 1, 100 * i as u64 + 2, 100 * i as u64 + 3];
        hosts.push(spawn_host(&pki, &format!("{site}-node-1"), ids, &[addr(i)], pace, move |p| utilisation(i, p), cancel.clone())?);
    }
    // truce top's source on site a: the inspection stream, federation kind included.
    pki.issue("observer")?;
    let endpoints = vec![ArbiterEndpoint { addr: addr(0), server_name: "localhost".into() }];
    let mut top = spawn_arbiter(endpoints, HostId("observer".into()), pki.path().to_path_buf(), cancel.clone())?;

    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut tally: Option<VoteTally> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tally.is_none() {
        let ev = match tokio::time::timeout_at(deadline, top.events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => anyhow::bail!("truce top's source ended"),
            Err(_) => anyhow::bail!("no tally on site a's inspection stream within 120 s; seen {seen:?}"),
        };
        let SourceEvent::Inspect(ev) = ev else { continue };
        let InspectEvent::Federation { site, message, .. } = *ev else { continue };
        assert_eq!(site, "site-a");
        let kind = match message.as_ref() {
            FederationMessage::Status(_) => "status",
            FederationMessage::Proposal(_) => "proposal",
            FederationMessage::Vote(_) => "vote",
            FederationMessage::Tally(_) => "tally",
            FederationMessage::Verdict { .. } => "verdict",
        };
        *seen.entry(kind).or_default() += 1;
        if let FederationMessage::Tally(t) = *message {
            tally = Some(t);
        }
    }
    let t = tally.ok_or_else(|| anyhow::anyhow!("no tally"))?;
    eprintln!("after {:?}: seen {seen:?}; tally: share {:.3} of {:.3} passed {}", started.elapsed(), t.share, t.pass_share, t.passed);
    for v in &t.votes {
        eprintln!("  {} approve {} weight {:.3} = {:.3} (1/MASE, MASE {:?}) x {:.3} (criticality): {}", v.vote.voter, v.vote.approve, v.weight, v.accuracy_weight, v.mase, v.criticality_weight, v.vote.reason);
    }
    assert_eq!(t.proposal.id.site, "site-a");
    assert!(t.proposal.id.seq >= sites_started, "a site numbers its proposals from its start in unix ms, so a restart never reuses one: {}", t.proposal.id);
    assert_eq!(t.proposal.host, HostId("site-a-node-1".into()), "the host whose agent reported rising use");
    assert!(!t.proposal.workloads.is_empty() && t.proposal.workloads.iter().all(|w| w.workload.id.0 / 100 == 0), "a's own workloads move: {:?}", t.proposal.workloads);
    assert!(t.missing.is_empty() && t.votes.len() == 2, "b and c voted over QUIC: {t:#?}");
    assert!(seen.contains_key("proposal") && seen.get("vote").is_some_and(|n| *n >= 2), "the proposal and both votes were on the stream: {seen:?}");
    assert!(seen.get("status").is_some_and(|n| *n >= 2), "site statuses (forecasts) were on the stream: {seen:?}");
    for v in &t.votes {
        assert!((v.weight - v.accuracy_weight * v.criticality_weight).abs() < 1e-9, "weight = 1/MASE x criticality: {v:?}");
    }
    if t.passed {
        let read = |site: &str| std::fs::read_to_string(format!("{}.{site}", hook_log.display())).unwrap_or_default();
        let ok = truce_tests::loopback::eventually(Duration::from_secs(20), || read("site-a").contains("migrate source {") && read("site-b").contains("migrate destination {")).await;
        assert!(ok, "the accepted migration ran through the configured hooks: a {:?} b {:?}", read("site-a"), read("site-b"));
    }
    cancel.cancel();
    for h in hosts {
        let _ = h.await;
    }
    let _ = top.task.await;
    drop(sites);
    Ok(())
}
