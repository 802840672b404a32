//! Loopback fixtures: a throwaway PKI minted with the real `certs` code, a real arbiter
//! server on 127.0.0.1:0, and agent client configurations that point at it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;
use truce_agent::transport::{ArbiterEndpoint, ClientConfig};
use truce_arbiter::server::tls::TlsFiles;
use truce_arbiter::server::{CancellationToken, HostCapacity, ProportionalResolver, RoundResolver, Server, ServerConfig, ServerStats, certs};
use truce_common::metrics::{MetricsServer, Sample, parse_exposition};
use truce_common::model::{Ask, Bid, BidId, Credits, HostId, Resource, Timestamp, WorkloadId, WorkloadRef};
use truce_common::wire::{Report, SignalSummary, WorkloadReport};

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A CA, an arbiter certificate and host certificates on demand, in a temp dir removed on drop.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(tag: &str) -> anyhow::Result<Pki> {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("truce-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        certs::init(&dir, &[], false)?;
        Ok(Pki { dir })
    }

    pub fn issue(&self, host: &str) -> anyhow::Result<()> {
        certs::issue(&self.dir, host)?;
        Ok(())
    }

    /// A client config for `host` (certificate issued here) talking to `addr`.
    pub fn client(&self, host: &str, addrs: &[SocketAddr]) -> ClientConfig {
        let endpoints = addrs.iter().map(|&addr| ArbiterEndpoint { addr, server_name: "localhost".into() }).collect();
        let mut cfg = ClientConfig::new(HostId(host.into()), &self.dir, endpoints);
        cfg.backoff_min = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_millis(500);
        cfg
    }

    pub fn cert_paths(&self, host: &str) -> (PathBuf, PathBuf) {
        let hosts = self.dir.join(certs::HOSTS_DIR);
        (hosts.join(format!("{host}.pem")), hosts.join(format!("{host}.key")))
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join(certs::CA_CERT)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running arbiter server task.
pub struct Arbiter {
    pub addr: SocketAddr,
    /// `/metrics`, when started with [`Arbiter::serve`].
    pub metrics: Option<SocketAddr>,
    pub stats: Arc<ServerStats>,
    pub cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Arbiter {
    /// Start on 127.0.0.1:0 with a short round period; `tweak` adjusts the config.
    pub fn start(pki: &Pki, tweak: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<Arbiter> {
        Self::start_with(pki, Arc::new(ProportionalResolver::new(HostCapacity::default())), tweak)
    }

    /// Start with a given round resolver (the market, for example).
    pub fn start_with(pki: &Pki, resolver: Arc<dyn RoundResolver>, tweak: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<Arbiter> {
        let listen: SocketAddr = "127.0.0.1:0".parse()?;
        let mut cfg = ServerConfig::new(listen, TlsFiles::in_dir(&pki.dir));
        cfg.round_period = Duration::from_millis(50);
        tweak(&mut cfg);
        let server = Server::bind(cfg, resolver)?;
        let addr = server.local_addr();
        let stats = server.stats();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.run(cancel.clone()));
        Ok(Arbiter { addr, metrics: None, stats, cancel, task })
    }

    /// Start with `resolver` and a `/metrics` endpoint on 127.0.0.1:0.
    pub async fn serve(pki: &Pki, resolver: Arc<dyn RoundResolver>, tweak: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<Arbiter> {
        let mut cfg = ServerConfig::new("127.0.0.1:0".parse()?, TlsFiles::in_dir(&pki.dir));
        cfg.round_period = Duration::from_millis(50);
        tweak(&mut cfg);
        let server = Server::bind(cfg, resolver)?;
        let addr = server.local_addr();
        let stats = server.stats();
        let cancel = CancellationToken::new();
        let metrics = MetricsServer::bind("127.0.0.1:0".parse()?, server.metrics_registry(), cancel.clone()).await?;
        let metrics_addr = metrics.local_addr();
        let run = cancel.clone();
        let task = tokio::spawn(async move {
            server.run(run).await;
            metrics.join().await;
        });
        Ok(Arbiter { addr, metrics: Some(metrics_addr), stats, cancel, task })
    }

    /// Graceful shutdown; returns once every session task and the endpoint are done.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.task.await?;
        Ok(())
    }
}

/// `GET /metrics` over plain HTTP/1.1, parsed strictly (a scrape that a scraper would refuse fails here).
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Vec<Sample>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: truce\r\nConnection: close\r\n\r\n").await?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).await?;
    let (head, body) = reply.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no HTTP body in {reply:?}"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "scrape answered {head}");
    Ok(parse_exposition(body)?)
}

/// The value of the sample named `name` whose labels include every pair in `labels`.
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
}

pub fn count(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Poll `cond` every 10 ms for up to `limit`; the limit guards against hangs, it is not an assertion on time.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

pub fn workload(id: u64) -> WorkloadRef {
    WorkloadRef { id: WorkloadId(id), path: format!("/truce-test/w{id}") }
}

pub fn bid(id: u64, workload_id: u64, millicores: u64) -> Bid {
    Bid {
        id: BidId(id),
        workload: workload(workload_id),
        at: Timestamp(0),
        asks: vec![Ask { resource: Resource::Cpu, amount: millicores, max_price: 1.0 }],
        releases: vec![],
        trades: vec![],
        willingness_to_pay: Credits(1_000_000),
        priority: 1,
        slo_breach: false,
        lease_ms: 10_000,
        reasons: vec![],
    }
}

pub fn report(host: &str, seq: u64, workload_ids: &[u64]) -> Report {
    Report {
        seq,
        host: HostId(host.into()),
        at: Timestamp(0),
        period_ms: 1000,
        workloads: workload_ids
            .iter()
            .map(|&id| WorkloadReport {
                workload: workload(id),
                name: format!("w{id}"),
                signals: SignalSummary { cpu_millicores: Some(100), ..Default::default() },
                estimate: None,
                forecasts: vec![],
            })
            .collect(),
        inventory: None,
    }
}
