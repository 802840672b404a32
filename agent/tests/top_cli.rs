//! The real `truce top` binary against real endpoints: a loopback arbiter over QUIC with
//! mutual TLS (certificates minted in a temp dir), and an agent's unix socket served by the
//! agent's own inspection code. Nothing here needs root or eBPF.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use truce_agent::brain::{Brain, BrainParams, RoundInputs};
use truce_agent::inspect::{Period, Telemetry, TelemetryConfig};
use truce_agent::transport::{ArbiterClient, ArbiterEndpoint, ClientConfig, ConnectionState, Inbound, Outbound};
use truce_arbiter::server::tls::TlsFiles;
use truce_arbiter::server::{HostCapacity, ProportionalResolver, Server, ServerConfig, certs};
use truce_common::estimate::{Antagonist, InterferenceEstimate, ScoreComponent};
use truce_common::model::*;
use truce_common::signal::{CgroupFileSignals, CpuSignals, DelayCell, HostSample, HostTotals, WorkloadSample};
use truce_common::wire::{Report, SignalSummary, WorkloadReport};

const TRUCE: &str = env!("CARGO_BIN_EXE_truce");
const VICTIM: u64 = 11;
const BURNER: u64 = 10;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("truce-top-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wl(id: u64, name: &str) -> WorkloadRef {
    WorkloadRef { id: WorkloadId(id), path: format!("/truce.slice/{name}") }
}

fn report(seq: u64) -> Report {
    let estimate = InterferenceEstimate {
        workload: WorkloadId(VICTIM),
        at: Timestamp(seq),
        score: 0.75,
        components: vec![ScoreComponent { name: "rq_delay_share".into(), value: 0.5, baseline: 0.05, weight: 1.0, contribution: 0.75 }],
        unavailable: vec![],
        antagonists: vec![Antagonist { workload: WorkloadId(BURNER), blame: 0.875, kernel_wait_ns: 3_000_000_000, correlation: None, explanation: "held the CPU".into() }],
    };
    let w = |id, name: &str, cpu, estimate| WorkloadReport {
        workload: wl(id, name),
        name: name.into(),
        signals: SignalSummary { cpu_millicores: Some(cpu), rq_delay_share: Some(0.4), ..Default::default() },
        estimate,
        forecasts: vec![],
    };
    Report { seq, host: HostId("node-a".into()), at: Timestamp(seq), period_ms: 200, workloads: vec![w(BURNER, "burner", 1900, None), w(VICTIM, "victim", 300, Some(estimate))], inventory: None }
}

fn bid(id: u64) -> Bid {
    Bid {
        id: BidId(id),
        workload: wl(VICTIM, "victim"),
        at: Timestamp(0),
        asks: vec![Ask { resource: Resource::Cpu, amount: 700, max_price: 1.0 }],
        releases: vec![],
        trades: vec![],
        willingness_to_pay: Credits(1_000_000),
        priority: 1,
        slo_breach: false,
        lease_ms: 10_000,
        reasons: vec![Reason { code: "rq_delay".into(), detail: "waits 40% of runnable time".into() }],
    }
}

fn top(args: &[&str]) -> std::process::Output {
    Command::new(TRUCE).arg("top").args(args).output().expect("run truce top")
}

fn parse_line(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "truce top failed: {}\nstdout: {stdout}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "--once --json prints exactly one line: {stdout}");
    serde_json::from_str(lines[0]).expect("valid JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_once_json_shows_the_cluster_through_a_loopback_arbiter() {
    let dir = TempDir::new("arbiter");
    certs::init(&dir.0, &[], false).expect("CA");
    certs::issue(&dir.0, "node-a").expect("host cert");
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), TlsFiles::in_dir(&dir.0));
    cfg.round_period = Duration::from_millis(100);
    let resolver = ProportionalResolver::new(HostCapacity { price: 0.002, ..HostCapacity::default() });
    let server = Server::bind(cfg, Arc::new(resolver)).expect("bind");
    let addr = server.local_addr();
    let stats = server.stats();
    let cancel = CancellationToken::new();
    let arbiter = tokio::spawn(server.run(cancel.clone()));

    // The agent of node-a: reports a victim and its antagonist every 200 ms, bids for the victim.
    let endpoints = vec![ArbiterEndpoint { addr, server_name: "localhost".into() }];
    let agent_cancel = CancellationToken::new();
    let agent_stop = agent_cancel.clone();
    let (client, mut inbound) = ArbiterClient::spawn(ClientConfig::new(HostId("node-a".into()), &dir.0, endpoints), agent_cancel.clone()).expect("client");
    let agent = tokio::spawn(async move {
        let mut seq = 0;
        let mut states = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = agent_cancel.cancelled() => break,
                _ = tick.tick() => {
                    seq += 1;
                    client.send(Outbound::Report(report(seq)));
                    client.send(Outbound::Bid(bid(seq)));
                }
                msg = inbound.recv() => match msg {
                    Some(Inbound::State(s)) => states.push(s),
                    Some(_) => {}
                    None => break,
                },
            }
        }
        client.join().await;
        states
    });

    // Rounds publish prices and leases; wait for one so the first look has them too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stats.rounds.load(std::sync::atomic::Ordering::Relaxed) < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Watch with node-a's own certificate: an observer must not replace the agent's session.
    let addr_s = addr.to_string();
    let certs_s = dir.0.display().to_string();
    let out = tokio::task::spawn_blocking(move || top(&["--arbiter", &addr_s, "--certs", &certs_s, "--as", "node-a", "--once", "--json", "--wait", "30s"]))
        .await
        .expect("join");
    let v = parse_line(&out);
    assert_eq!(v["view"], "cluster");
    assert_eq!(v["connection"]["state"], "live");
    assert_eq!(v["hosts"][0]["host"], "node-a");
    let victim = &v["workloads"][0];
    assert_eq!(victim["name"], "victim", "worst first: {v}");
    assert_eq!(victim["antagonist"]["name"], "burner", "{v}");
    assert_eq!(victim["score"], 0.75);
    assert_eq!(victim["cpu_price"], 0.002, "the resolver's price reaches the row: {v}");
    assert_eq!(victim["credits"], serde_json::Value::Null, "the proportional resolver keeps no accounts");
    assert_eq!(v["workloads"][1]["name"], "burner");
    assert_eq!(v["workloads"][0]["cpu_alloc_m"], 700, "the lease granted to the victim: {v}");
    assert!(v["workloads"][0]["leases"].as_u64() >= Some(1), "{v}");
    assert!(v["hosts"][0]["round"].as_u64() >= Some(1) || v["hosts"][0]["leases"].as_u64() >= Some(1), "{v}");

    // A second observer at the same time as nothing else: still no host session.
    let addr_s = addr.to_string();
    let certs_s = dir.0.display().to_string();
    let out = tokio::task::spawn_blocking(move || top(&["--arbiter", &addr_s, "--certs", &certs_s, "--as", "node-a", "--once", "--json"])).await.expect("join");
    assert_eq!(parse_line(&out)["hosts"][0]["host"], "node-a");

    agent_stop.cancel();
    agent_check(&stats, agent).await;
    cancel.cancel();
    arbiter.await.expect("arbiter task");
}

async fn agent_check(stats: &truce_arbiter::server::ServerStats, agent: tokio::task::JoinHandle<Vec<ConnectionState>>) {
    use std::sync::atomic::Ordering;
    let states = agent.await.expect("agent task");
    assert!(states.iter().any(|s| matches!(s, ConnectionState::Connected { .. })), "{states:?}");
    assert!(!states.iter().any(|s| matches!(s, ConnectionState::Disconnected { .. })), "the agent was never disconnected: {states:?}");
    assert_eq!(stats.sessions_opened.load(Ordering::Relaxed), 1, "observers opened no host session");
    // Each `truce top` closed its session on exit; the guard only bounds a hang.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stats.observers_active.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.observers_active.load(Ordering::Relaxed), 0, "both observers left");
}

#[test]
fn top_fails_clearly_without_an_arbiter_or_certificates() {
    let dir = TempDir::new("nocert");
    let out = top(&["--arbiter", "127.0.0.1:9", "--certs", &dir.0.display().to_string(), "--once", "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot use certificate `operator`"), "{err}");
    let sock = dir.0.join("absent.sock");
    let out = top(&["--agent", &sock.display().to_string(), "--once", "--wait", "1s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no data from") && err.contains("absent.sock"), "{err}");
}

fn sample(t: u64) -> HostSample {
    let w = |id: u64, name: &str, on_ms: u64, wait_ms: u64| WorkloadSample {
        workload: wl(id, name),
        name: name.into(),
        cpu: CpuSignals { on_cpu_ns: on_ms * 1_000_000, rq_wait_ns: wait_ms * 1_000_000, rq_waits: 100, ..Default::default() },
        io: vec![],
        net: Default::default(),
        perf: None,
        psi: Default::default(),
        files: CgroupFileSignals { cpu_usage_us: Some(on_ms * 1000), ..Default::default() },
    };
    HostSample {
        at: Timestamp(1_700_000_000_000 + t * 1000),
        period_ms: 1000,
        totals: HostTotals { cpus: 1, ..Default::default() },
        workloads: vec![w(BURNER, "burner", 950, 10), w(VICTIM, "victim", 300, 650)],
        delays: vec![DelayCell { victim: VICTIM, delayer: BURNER, wait_ns: 600_000_000, count: 50 }],
        probe_errors: vec![],
        unavailable: vec![],
    }
}

async fn serve_socket(path: &Path, periods: u64) -> (Telemetry, CancellationToken) {
    let cancel = CancellationToken::new();
    let cfg = TelemetryConfig { socket: Some(path.to_path_buf()), metrics_listen: None, probe_run_time: false };
    let (mut telemetry, problems) = Telemetry::start(&cfg, HostId("node-a".into()), &cancel).await;
    assert!(problems.is_empty(), "{problems:?}");
    let mut brain = Brain::new(BrainParams::default(), 1);
    for t in 0..periods {
        let s = sample(t);
        let round = brain.observe(&s, &RoundInputs::default());
        telemetry.period(Period { sample: &s, round: &round, leases: vec![], run_stats: vec![], reports: 0, bids: 0, outbox_dropped: 0, forecast_refits_deferred: 0, forecast_periods_recorded: 0 });
    }
    (telemetry, cancel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_once_json_shows_the_host_through_the_agent_socket() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = TempDir::new("socket");
    let path = dir.0.join("run").join("agent.sock");
    let (telemetry, cancel) = serve_socket(&path, 40).await;
    let meta = std::fs::metadata(&path).expect("socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "root only");
    assert_eq!(std::fs::metadata(path.parent().expect("dir")).expect("dir").permissions().mode() & 0o777, 0o700);

    let p = path.display().to_string();
    let out = tokio::task::spawn_blocking(move || top(&["--agent", &p, "--once", "--json"])).await.expect("join");
    let v = parse_line(&out);
    assert_eq!(v["view"], "host");
    assert_eq!(v["host"], "node-a");
    let victim = v["workloads"].as_array().and_then(|a| a.iter().find(|w| w["name"] == "victim")).expect("victim row").clone();
    assert_eq!(victim["antagonist"][0], "burner", "{v}");
    assert_eq!(victim["spark"].as_array().map(Vec::len), Some(40), "history backfilled: {v}");
    let names = &v["matrix"]["names"];
    assert!(names.as_array().is_some_and(|n| n.iter().any(|x| x == "burner")), "{v}");

    // The text screen of --once, as a terminal would show it.
    let p = path.display().to_string();
    let out = tokio::task::spawn_blocking(move || top(&["--agent", &p, "--once", "--size", "120x30"])).await.expect("join");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.lines().any(|l| l.starts_with("victim") && l.contains("burner")), "{screen}");
    assert!(screen.contains("who delayed whom"), "{screen}");

    cancel.cancel();
    telemetry.shutdown().await;
    assert!(!path.exists(), "the socket file is removed on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_does_not_steal_a_live_socket_but_replaces_a_stale_one() {
    let dir = TempDir::new("steal");
    let path = dir.0.join("agent.sock");
    let (telemetry, cancel) = serve_socket(&path, 1).await;
    let cfg = TelemetryConfig { socket: Some(path.clone()), metrics_listen: None, probe_run_time: false };
    let (second, problems) = Telemetry::start(&cfg, HostId("x".into()), &CancellationToken::new()).await;
    let err = problems.into_iter().next().expect("refused");
    assert!(format!("{:#}", anyhow::Error::from(err)).contains("another process already serves"));
    second.shutdown().await;
    assert!(path.exists(), "the refused second agent leaves the first one's socket alone");
    cancel.cancel();
    telemetry.shutdown().await;
    // A crash leaves the file behind: the next start replaces it.
    let _stale = std::os::unix::net::UnixListener::bind(&path).expect("stale socket");
    drop(_stale);
    let (telemetry, cancel) = serve_socket(&path, 1).await;
    cancel.cancel();
    telemetry.shutdown().await;
}
