//! Three federation sites on loopback over real QUIC with mutual TLS (peer certificates from
//! one CA, ALPN `truce-fed/1`), each with a command-hook executor that really runs `sh`.
//! Site a's host heads for overload; b has room; c forecasts with the mean of its history,
//! which is deliberately poor for c's own rising host (and for a's). Its measured MASE rises,
//! its vote weight falls, and b's approval outweighs c's rejection, where equal weights
//! would have tied and failed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use truce_arbiter::federation::executor::CommandHook;
use truce_arbiter::federation::runtime::{Period, SiteHandle, spawn};
use truce_arbiter::federation::vote::{VoteRules, tally};
use truce_arbiter::federation::{ForecastModel, HostObservation, Site, SiteConfig};
use truce_arbiter::peer::{PeerEndpoint, PeerTls};
use truce_arbiter::server::{CancellationToken, certs};
use truce_common::model::{HostId, Timestamp, WorkloadId, WorkloadRef};
use truce_common::wire::{FEDERATION_ALPN, FederationMessage, MigrationWorkload, PodRef, VoteTally};
use truce_tests::loopback::Pki;

const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];

fn jitter(i: u64, salt: u64) -> f64 {
    let x = (i.wrapping_mul(6364136223846793005).wrapping_add(salt.wrapping_mul(1442695040888963407))) >> 33;
    (x % 2001) as f64 / 1000.0 - 1.0
}

fn utilisation(site: usize, i: u64) -> f64 {
    let noise = 0.01 * jitter(i, site as u64);
    match site {
        0 => 0.45 + 0.012 * i as f64 + noise,
        1 => 0.30 + noise,
        _ => 0.10 + 0.006 * i as f64 + noise,
    }
}

fn workloads(site: &str) -> Vec<MigrationWorkload> {
    (1..=3u64)
        .map(|i| MigrationWorkload {
            workload: WorkloadRef { id: WorkloadId(i), path: format!("/kubepods/{site}-w{i}") },
            demand: 0.1 * i as f64,
            criticality: 1,
            pod: Some(PodRef { namespace: "shop".into(), name: format!("{site}-w{i}") }),
        })
        .collect()
}

struct Federation {
    handles: Vec<SiteHandle>,
    cancel: CancellationToken,
    _pki: Pki,
    hook_log: std::path::PathBuf,
}

async fn start(c_model: ForecastModel, tag: &str) -> anyhow::Result<Federation> {
    start_with(Some(c_model), 20_000, tag).await
}

/// Three sites; with `c_model` `None`, site c is configured as everyone's peer but never
/// answers (its endpoint is closed before any site runs).
async fn start_with(c_model: Option<ForecastModel>, vote_timeout_ms: u64, tag: &str) -> anyhow::Result<Federation> {
    let pki = Pki::new(tag)?;
    let mut endpoints = Vec::new();
    let mut addrs: BTreeMap<String, SocketAddr> = BTreeMap::new();
    for name in SITES {
        certs::peer(pki.path(), name)?;
    }
    // Bind everyone first (port 0), then tell each about the others' addresses.
    for name in SITES {
        let ep = PeerEndpoint::bind("127.0.0.1:0".parse()?, &PeerTls::in_dir(pki.path(), name), FEDERATION_ALPN, BTreeMap::new())?;
        addrs.insert(name.to_string(), ep.local_addr().ok_or_else(|| anyhow::anyhow!("no local address"))?);
        endpoints.push(ep);
    }
    for ep in &endpoints {
        for (n, a) in &addrs {
            ep.set_peer(n.clone(), *a);
        }
    }
    let hook_log = pki.path().join("orders.jsonl");
    let cancel = CancellationToken::new();
    let mut handles = Vec::new();
    for (i, (name, ep)) in SITES.iter().zip(endpoints).enumerate() {
        let model = match (i, c_model) {
            (2, Some(m)) => m,
            (2, None) => {
                ep.close();
                continue;
            }
            _ => ForecastModel::default(),
        };
        let cfg = SiteConfig { name: name.to_string(), period_ms: 1000, history: 40, horizon_steps: 5, model, watch_periods: 4, cooldown_periods: 100, vote_timeout_ms, ..SiteConfig::default() };
        let site = Site::new(cfg, SITES.iter().map(|s| s.to_string()));
        // A real hook: the order arrives as JSON on stdin; the hook appends it with its role.
        let hook = CommandHook {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), format!("{{ printf '%s %s ' \"$TRUCE_MIGRATION_ACTION\" \"$TRUCE_MIGRATION_ROLE\"; cat; echo; }} >> {}.{name}", hook_log.display())],
            timeout: Duration::from_secs(10),
        };
        handles.push(spawn(site, ep, Arc::new(hook), cancel.clone()));
    }
    Ok(Federation { handles, cancel, _pki: pki, hook_log })
}

/// Feed `periods` periods to every site, paced so peers' statuses arrive before the next
/// period; return the first tally site a published.
async fn run_until_tally(f: &Federation, periods: u64) -> anyhow::Result<VoteTally> {
    let mut published = f.handles[0].published.subscribe();
    for i in 0..periods {
        for (s, h) in f.handles.iter().enumerate() {
            let name = SITES[s];
            let obs = vec![HostObservation { host: HostId(format!("{name}-node-1")), utilisation: utilisation(s, i), workloads: workloads(name) }];
            h.periods.send(Period { at: Timestamp(1_000_000 + i * 1000), observations: obs }).await?;
        }
        // Statuses travel over QUIC; give them a moment so every site sees the others' period i.
        tokio::time::sleep(Duration::from_millis(30)).await;
        while let Ok(msg) = published.try_recv() {
            if let FederationMessage::Tally(t) = msg {
                return Ok(t);
            }
        }
    }
    // The vote may still be in flight: wait for it (bounded, a guard against hangs).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, published.recv()).await {
            Ok(Ok(FederationMessage::Tally(t))) => return Ok(t),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => anyhow::bail!("published channel: {e}"),
            Err(_) => anyhow::bail!("no tally after {periods} periods"),
        }
    }
}

fn vote_of<'a>(t: &'a VoteTally, site: &str) -> &'a truce_common::wire::CountedVote {
    t.votes.iter().find(|v| v.vote.voter == site).unwrap_or_else(|| panic!("{site} did not vote: {t:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sites_vote_over_quic_and_a_poor_forecaster_loses_weight() -> anyhow::Result<()> {
    let good = start(ForecastModel::default(), "fed-good").await?;
    let tg = run_until_tally(&good, 40).await?;
    let poor = start(ForecastModel::Mean, "fed-poor").await?;
    let tp = run_until_tally(&poor, 40).await?;

    for t in [&tg, &tp] {
        assert_eq!(t.proposal.id.site, "site-a");
        assert_eq!(t.proposal.destination, "site-b", "b has the most room");
        assert!(t.missing.is_empty(), "both peers voted over QUIC: {t:#?}");
    }
    let (c_good, c_poor, b_poor) = (vote_of(&tg, "site-c"), vote_of(&tp, "site-c"), vote_of(&tp, "site-b"));
    eprintln!(
        "accurate c: MASE {:?} weight {:.3} approve {}; poor c: MASE {:?} weight {:.3} approve {}; b: MASE {:?} weight {:.3}; share {:.3} -> passed {}",
        c_good.mase, c_good.weight, c_good.vote.approve, c_poor.mase, c_poor.weight, c_poor.vote.approve, b_poor.mase, b_poor.weight, tp.share, tp.passed
    );
    assert!(tg.passed && c_good.vote.approve, "accurate sites agree: {tg:#?}");
    assert!(!c_poor.vote.approve, "the mean misjudges the rising host: {}", c_poor.vote.reason);
    let (mg, mp) = (c_good.mase.expect("c's MASE measured"), c_poor.mase.expect("c's MASE measured"));
    assert!(mp > 3.0 * mg, "c's measured MASE rises: {mg} -> {mp}");
    // How many statuses each site has seen when the vote closes varies a little with QUIC
    // timing, so the bounds leave room: measured 0.145-0.149 vs 0.62 (accurate c) and 0.44 (b).
    assert!(c_poor.weight < c_good.weight / 3.0 && c_poor.weight < b_poor.weight / 2.0, "c's weight drops");
    // The weights say: share = w_b / (w_b + w_c), above one half.
    let expected = b_poor.weight / (b_poor.weight + c_poor.weight);
    assert!((tp.share - expected).abs() < 1e-9 && tp.passed, "share {} expected {expected}", tp.share);
    let equal: Vec<_> = tp.votes.iter().map(|v| (v.vote.clone(), Some(1.0))).collect();
    assert!(!tally(&VoteRules::default(), &tp.proposal, equal, vec![], tp.at).passed, "equal weights tie and fail");

    // The accepted migration ran through the real hook on a (source) and b (destination).
    let read = |site: &str| std::fs::read_to_string(format!("{}.{site}", poor.hook_log.display())).unwrap_or_default();
    let ok = truce_tests::loopback::eventually(Duration::from_secs(20), || read("site-a").contains("migrate source {") && read("site-b").contains("migrate destination {")).await;
    assert!(ok, "hook logs: a {} b {}", read("site-a"), read("site-b"));
    assert!(read("site-c").is_empty(), "the bystander executes nothing: {}", read("site-c"));
    let log = read("site-a");
    let line = log.lines().find(|l| l.starts_with("migrate source ")).unwrap_or_default();
    let order: serde_json::Value = serde_json::from_str(line.trim_start_matches("migrate source "))?;
    assert_eq!(order["proposal"]["destination"], "site-b");
    // All equally critical: the largest moves first, and it is enough to bring a under target.
    assert_eq!(order["proposal"]["workloads"][0]["pod"]["name"], "site-a-w3");

    good.cancel.cancel();
    poor.cancel.cancel();
    Ok(())
}

/// A peer that never answers cannot hold a vote open: it closes at `vote_timeout_ms` with the
/// silent site listed as missing (regression: the deadline was never set when a period
/// opened the proposal, so such a vote stayed open for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_closes_at_its_deadline_when_a_peer_is_silent() -> anyhow::Result<()> {
    let f = start_with(None, 2_000, "fed-silent").await?;
    let t = run_until_tally(&f, 40).await?;
    eprintln!("tally: share {:.3} passed {} missing {:?}", t.share, t.passed, t.missing);
    assert_eq!(t.missing, vec!["site-c".to_string()], "the silent site is missing: {t:#?}");
    assert!(t.votes.len() == 1 && vote_of(&t, "site-b").vote.approve && t.passed, "b's ballot carries it: {t:#?}");
    f.cancel.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_certificate_cannot_join_the_federation() -> anyhow::Result<()> {
    let pki = Pki::new("fed-impostor")?;
    certs::peer(pki.path(), "site-a")?;
    pki.issue("site-b")?;
    let a = PeerEndpoint::bind("127.0.0.1:0".parse()?, &PeerTls::in_dir(pki.path(), "site-a"), FEDERATION_ALPN, BTreeMap::new())?;
    let a_addr = a.local_addr().ok_or_else(|| anyhow::anyhow!("addr"))?;
    a.set_peer("site-b".into(), "127.0.0.1:9".parse()?);
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let cancel = CancellationToken::new();
    tokio::spawn(a.clone().accept(tx, cancel.clone()));
    // "site-b" dials with a host certificate (clientAuth only) under the peer's name.
    let (cert, key) = pki.cert_paths("site-b");
    let tls = PeerTls { ca_cert: pki.ca(), cert, key };
    let b = PeerEndpoint::bind("127.0.0.1:0".parse()?, &tls, FEDERATION_ALPN, BTreeMap::from([("site-a".to_string(), a_addr)]))?;
    let status = truce_common::wire::SiteStatus { site: "site-b".into(), at: Timestamp(0), hosts: vec![] };
    let reply = b.request("site-a", &truce_common::wire::Message::Federation(FederationMessage::Status(status)), Duration::from_secs(5)).await;
    assert!(reply.is_err(), "the impostor got an answer: {reply:?}");
    assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv()).await.is_err(), "nothing from the impostor reached the site");
    cancel.cancel();
    Ok(())
}
