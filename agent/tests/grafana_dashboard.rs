//! The Grafana dashboard in deploy/grafana/ queries only metrics that exist: every `truce_*`
//! name in its expressions must appear in a real scrape of the agent and of the arbiter (the
//! arbiter running the real market over QUIC on loopback, so credits and reputation exist).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use truce_agent::inspect::metrics::{AgentMetrics, WorkloadFigures};
use truce_agent::probes::ProgramRunStats;
use truce_agent::transport::{ArbiterEndpoint, ClientConfig, Dialer};
use truce_arbiter::ledger::Ledger;
use truce_arbiter::market::{Exchange, HostDefaults, Market, MarketResolver};
use truce_arbiter::server::tls::TlsFiles;
use truce_arbiter::server::{Server, ServerConfig, certs};
use truce_common::estimate::ScoreComponent;
use truce_common::metrics::parse_exposition;
use truce_common::model::*;
use truce_common::wire::{Message, Report, SignalSummary, WorkloadReport};

fn dashboard() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/truce.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::Object(q)) => {
                        if let Some(serde_json::Value::String(s)) = q.get("query") {
                            out.push(s.clone());
                        }
                    }
                    _ => exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

/// Every `truce_...` identifier in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("truce_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn agent_scrape() -> BTreeSet<String> {
    let m = AgentMetrics::new(&truce_common::abi::probe_error::NAMES);
    m.update(|f| {
        let signals = SignalSummary {
            cpu_millicores: Some(900),
            rq_delay_share: Some(0.4),
            cpi: Some(1.3),
            memory_bytes: Some(1 << 28),
            io_read_bps: Some(1000),
            io_write_bps: Some(2000),
            net_rx_bps: Some(10),
            net_tx_bps: Some(20),
            psi_cpu_some_avg10: Some(12.0),
            psi_memory_some_avg10: Some(0.0),
            psi_io_some_avg10: Some(1.0),
        };
        f.workloads = vec![WorkloadFigures {
            path: "/truce.slice/victim".into(),
            name: "victim".into(),
            signals,
            score: Some(0.8),
            components: vec![ScoreComponent { name: "rq_delay_share".into(), value: 0.4, baseline: 0.05, weight: 1.0, contribution: 0.8 }],
            antagonists: vec![("/truce.slice/burner".into(), "burner".into(), 0.9)],
            forecasts: vec![(Resource::Cpu, 950.0, 1200.0)],
        }];
        f.periods = 3;
        f.decisions.insert("applied", 1);
        f.arbiter_connected = Some(true);
        f.run_stats = Some(vec![ProgramRunStats { program: "sched_switch".into(), run_time_ns: 1_000, run_count: 10 }]);
    });
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &m.registry()).expect("encode");
    parse_exposition(&text).expect("the agent's exposition parses").into_iter().map(|s| s.name).collect()
}

async fn arbiter_scrape() -> BTreeSet<String> {
    let dir = std::env::temp_dir().join(format!("truce-grafana-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    certs::init(&dir, &[], false).expect("CA");
    certs::issue(&dir, "node-a").expect("host cert");
    let ledger = Ledger::open(dir.join("ledger.redb")).expect("ledger");
    let defaults = HostDefaults { capacity: BTreeMap::from([(Resource::Cpu, 4000)]), floor_fraction: 0.25, income_per_second: Credits::from_credits(1.0) };
    let resolver = Arc::new(MarketResolver::new(Exchange::new(ledger, Market::default()), defaults));
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), TlsFiles::in_dir(&dir));
    cfg.round_period = Duration::from_millis(20);
    let server = Server::bind(cfg, resolver).expect("bind");
    let (addr, registry) = (server.local_addr(), server.metrics_registry());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.run(cancel.clone()));

    let client = ClientConfig::new(HostId("node-a".into()), &dir, vec![ArbiterEndpoint { addr, server_name: "localhost".into() }]);
    let dialer = Dialer::new(&client).expect("dialer");
    let (mut raw, _) = dialer.handshake(&client.endpoints[0]).await.expect("handshake");
    let w = WorkloadRef { id: WorkloadId(7), path: "/truce.slice/victim".into() };
    let report = Report { seq: 1, host: HostId("node-a".into()), at: Timestamp(0), period_ms: 1000, workloads: vec![WorkloadReport { workload: w.clone(), name: "victim".into(), signals: SignalSummary::default(), estimate: None, forecasts: vec![] }], inventory: None };
    raw.send(&Message::Report(report)).await.expect("report");
    let bid = Bid { id: BidId(1), workload: w, at: Timestamp(0), asks: vec![Ask { resource: Resource::Cpu, amount: 100, max_price: 1.0 }], releases: vec![], trades: vec![], willingness_to_pay: Credits(1_000_000), priority: 1, slo_breach: false, lease_ms: 5_000, reasons: vec![] };
    raw.send(&Message::Bid(bid)).await.expect("bid");
    tokio::time::timeout(Duration::from_secs(60), async {
        while !matches!(raw.recv().await, Ok(Message::Decisions(_))) {}
    })
    .await
    .expect("a round ran");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    raw.close_cleanly(Duration::from_millis(300)).await;
    cancel.cancel();
    let _ = task.await;
    let _ = std::fs::remove_dir_all(&dir);
    parse_exposition(&text).expect("the arbiter's exposition parses").into_iter().map(|s| s.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_exists_in_a_scrape() {
    let dash = dashboard();
    assert!(dash["uid"].is_string() && dash["panels"].as_array().is_some_and(|p| !p.is_empty()));
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    let queried: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    assert!(queried.len() > 30, "the dashboard queries {} metrics", queried.len());
    let mut scraped = agent_scrape();
    scraped.extend(arbiter_scrape().await);
    let missing: Vec<&String> = queried.iter().filter(|q| !scraped.contains(*q)).collect();
    assert!(missing.is_empty(), "the dashboard queries metrics no scrape has: {missing:?}\nscraped: {scraped:?}");
    // Every panel has a datasource and every target a refId, or Grafana shows nothing.
    for p in dash["panels"].as_array().into_iter().flatten().filter(|p| p["type"] != "row") {
        assert!(p["datasource"].is_object(), "panel {} has no datasource", p["title"]);
        for t in p["targets"].as_array().into_iter().flatten() {
            assert!(t["refId"].is_string() && t["expr"].is_string(), "panel {}: {t}", p["title"]);
        }
    }
}
