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
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use truce_agent::top::source::{SourceEvent, spawn_arbiter};
use truce_agent::transport::{ArbiterClient, ArbiterEndpoint, CancellationToken, Outbound};
use truce_arbiter::config::FileConfig;
use truce_arbiter::server::certs;
use truce_common::model::{HostId, Resource};
use truce_common::wire::{Capacity, FederationMessage, InspectEvent, Inventory, ManagedWorkload, VoteTally};
use truce_tests::loopback::{Pki, bid, report, workload};

const CHILD: &str = "federation_serve_site_child";
const CONFIG_ENV: &str = "TRUCE_SITE_CONFIG";
const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];
const PERIOD_MS: u64 = 400;

#[test]
#[ignore = "a site process of three_serve_processes_vote_and_truce_top_sees_the_tally"]
fn federation_serve_site_child() {
    let Ok(path) = std::env::var(CONFIG_ENV) else { panic!("run only as a site child ({CONFIG_ENV} unset)") };
    let settings = FileConfig::load(Path::new(&path)).and_then(|f| f.validate()).expect("site configuration");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        // stdin closed: the parent is gone or wants us to stop.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            stop.cancel();
        });
        if let Err(e) = truce_arbiter::daemon::serve(settings, cancel).await {
            eprintln!("site failed: {:#}", anyhow::Error::from(e));
            std::process::exit(1);
        }
    });
}

struct Site {
    child: Child,
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let socks: Vec<std::net::UdpSocket> = (0..n).map(|_| std::net::UdpSocket::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
    socks.iter().map(|s| Ok(s.local_addr()?.port())).collect()
}

fn config(pki: &Pki, i: usize, agent_ports: &[u16], fed_ports: &[u16], hook_log: &Path) -> String {
    let name = SITES[i];
    let hook = format!("{{ printf '%s %s ' \"$TRUCE_MIGRATION_ACTION\" \"$TRUCE_MIGRATION_ROLE\"; cat; echo; }} >> {}.{name}", hook_log.display());
    let mut t = format!(
        "listen = \"127.0.0.1:{}\"\ncerts_dir = \"{}\"\nstate_dir = \"{}\"\nround_period_ms = 200\n\n[metrics]\nenabled = false\n\n\
         [federation]\nenabled = true\nlisten = \"127.0.0.1:{}\"\nexecutor = \"command\"\ncommand = [\"/bin/sh\", \"-c\", {hook:?}]\nhost_stale_ms = 3000\n",
        agent_ports[i],
        pki.path().display(),
        pki.path().join(format!("state-{name}")).display(),
        fed_ports[i],
    );
    for (j, peer) in SITES.iter().enumerate().filter(|(j, _)| *j != i) {
        t.push_str(&format!("\n[[federation.peers]]\nname = \"{peer}\"\naddr = \"127.0.0.1:{}\"\n", fed_ports[j]));
    }
    t.push_str(&format!(
        "\n[federation.site]\nname = \"{name}\"\nperiod_ms = {PERIOD_MS}\nhistory = 40\nhorizon_steps = 5\nwatch_periods = 4\ncooldown_periods = 1000\nvote_timeout_ms = 10000\n"
    ));
    t
}

/// Site `i`'s host utilisation in period `p`: a rises toward overload, b and c stay low.
fn utilisation(i: usize, p: u64) -> f64 {
    match i {
        0 => (0.45 + 0.012 * p as f64).min(1.0),
        1 => 0.30,
        _ => 0.15,
    }
}

/// One host per site: reports three workloads' CPU use (splitting the site's utilisation of
/// 2000 millicores) with every period's report, and bids, so the site's market runs rounds.
fn spawn_host(pki: &Pki, i: usize, addr: SocketAddr, started: Instant, cancel: CancellationToken) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let host = format!("{}-node-1", SITES[i]);
    pki.issue(&host)?;
    let (client, mut inbound) = ArbiterClient::spawn(pki.client(&host, &[addr]), cancel.clone())?;
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(PERIOD_MS / 2));
        let ids = [100 * i as u64 + 1, 100 * i as u64 + 2, 100 * i as u64 + 3];
        let mut seq = 0;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = inbound.recv() => continue,
                _ = tick.tick() => {}
            }
            seq += 1;
            let period = started.elapsed().as_millis() as u64 / PERIOD_MS;
            let used = (utilisation(i, period) * 2000.0) as u64;
            let mut r = report(&host, seq, &ids);
            r.inventory = Some(Inventory {
                capacity: vec![Capacity { resource: Resource::Cpu, amount: 2000 }],
                managed: ids
                    .iter()
                    .enumerate()
                    .map(|(k, w)| ManagedWorkload {
                        workload: workload(*w),
                        priority: 10,
                        bounds: vec![],
                        usage: vec![Capacity { resource: Resource::Cpu, amount: used * (k as u64 + 1) / 6 }],
                    })
                    .collect(),
            });
            client.send(Outbound::Report(r));
            client.send(Outbound::Bid(bid(seq, ids[0], 100)));
        }
        client.join().await;
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_serve_processes_vote_and_truce_top_sees_the_tally() -> anyhow::Result<()> {
    let pki = Pki::new("fed-serve")?;
    let ports = free_udp_ports(6)?;
    let (agent_ports, fed_ports) = ports.split_at(3);
    let hook_log = pki.path().join("orders.jsonl");
    let mut sites = Vec::new();
    for (i, name) in SITES.iter().enumerate() {
        certs::peer(pki.path(), name)?;
        let path = pki.path().join(format!("{name}.toml"));
        std::fs::write(&path, config(&pki, i, agent_ports, fed_ports, &hook_log))?;
        let child = Command::new(std::env::current_exe()?)
            .args(["--exact", CHILD, "--ignored", "--nocapture", "--test-threads=1"])
            .env(CONFIG_ENV, &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        sites.push(Site { child });
    }
    let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], agent_ports[i]));
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let mut hosts = Vec::new();
    for i in 0..3 {
        hosts.push(spawn_host(&pki, i, addr(i), started, cancel.clone())?);
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
