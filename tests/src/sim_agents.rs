//! Simulated agents for the replica tests: each is the real agent transport
//! (`ArbiterClient`: mutual TLS, failover across endpoints, redirects) with its own host
//! certificate, reporting an inventory of two workloads and bidding for them every period. It
//! records every decision with the endpoint it came from and when.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;
use truce_agent::transport::{ArbiterClient, CancellationToken, ConnectionState, Inbound, Outbound};
use truce_common::model::{Ask, Bid, BidId, Credits, Decision, Resource, Timestamp};
use truce_common::wire::{Capacity, Inventory, ManagedWorkload};

use crate::loopback::{Pki, report, workload};

pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One decision as an agent saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    /// When the arbiter ran the round (its wall clock, ms).
    pub round_at: u64,
    pub from: SocketAddr,
    pub decision: Decision,
}

#[derive(Debug, Default)]
pub struct AgentLog {
    pub decisions: Vec<Seen>,
    pub connected: Vec<(Instant, SocketAddr)>,
    pub redirects: u64,
    /// Every session that ended: when, which endpoint, why.
    pub disconnects: Vec<(Instant, SocketAddr, String)>,
}

pub struct SimAgent {
    pub host: String,
    pub log: Arc<Mutex<AgentLog>>,
    task: JoinHandle<()>,
}

impl SimAgent {
    pub fn log(&self) -> std::sync::MutexGuard<'_, AgentLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

fn bid(id: u64, w: u64, millicores: u64, priority: u32, lease_ms: u64) -> Bid {
    Bid {
        id: BidId(id),
        workload: workload(w),
        at: Timestamp(wall_ms()),
        asks: vec![Ask { resource: Resource::Cpu, amount: millicores, max_price: 0.01 }],
        releases: vec![],
        trades: vec![],
        willingness_to_pay: Credits::from_credits(500.0),
        priority,
        slo_breach: priority > 1,
        lease_ms,
        reasons: vec![],
    }
}

/// Start agent `n` (host `sim-{n}`, workloads `2n+1000` (priority 50) and `2n+1001`): it
/// reports and bids every `period` until `cancel`.
pub fn spawn(pki: &Pki, n: u64, endpoints: &[SocketAddr], period: Duration, lease_ms: u64, cancel: CancellationToken) -> anyhow::Result<SimAgent> {
    let host = format!("sim-{n}");
    pki.issue(&host)?;
    // The agent's own session timing (agent.toml's defaults): a killed arbiter sends no close,
    // so the agent notices it by 2 s of silence and moves on to the next endpoint.
    let cfg = pki.client(&host, endpoints);
    let (client, mut inbound) = ArbiterClient::spawn(cfg, cancel.clone())?;
    let log = Arc::new(Mutex::new(AgentLog::default()));
    let (victim, hog) = (2 * n + 1000, 2 * n + 1001);
    let record = log.clone();
    let host_name = host.clone();
    let task = tokio::spawn(async move {
        let mut endpoint: Option<SocketAddr> = None;
        let mut seq = 0u64;
        // Spread the agents over the period.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period.mul_f64((n % 100) as f64 / 100.0), period);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {
                    seq += 1;
                    let mut r = report(&host_name, seq, &[victim, hog]);
                    r.inventory = Some(Inventory {
                        capacity: vec![Capacity { resource: Resource::Cpu, amount: 2000 }],
                        managed: [(victim, 50), (hog, 1)].into_iter().map(|(w, priority)| ManagedWorkload { workload: workload(w), priority, bounds: vec![], usage: vec![] }).collect(),
                    });
                    client.send(Outbound::Report(r));
                    client.send(Outbound::Bid(bid(seq * 10, victim, 1500, 50, lease_ms)));
                    client.send(Outbound::Bid(bid(seq * 10 + 1, hog, 2000, 1, lease_ms)));
                }
                msg = inbound.recv() => match msg {
                    Some(Inbound::Decisions(d)) => {
                        let mut l = record.lock().unwrap_or_else(|p| p.into_inner());
                        let from = endpoint.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                        for decision in d.decisions {
                            l.decisions.push(Seen { at: Instant::now(), round_at: d.at.0, from, decision });
                        }
                    }
                    Some(Inbound::State(ConnectionState::Connected { endpoint: e, .. })) => {
                        endpoint = Some(e);
                        record.lock().unwrap_or_else(|p| p.into_inner()).connected.push((Instant::now(), e));
                    }
                    Some(Inbound::State(ConnectionState::Disconnected { endpoint: e, reason })) => {
                        endpoint = None;
                        let mut l = record.lock().unwrap_or_else(|p| p.into_inner());
                        if reason.contains("leader") {
                            l.redirects += 1;
                        }
                        l.disconnects.push((Instant::now(), e, reason));
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
        client.join().await;
    });
    Ok(SimAgent { host, log, task })
}
