//! `truce-agent run`: the daemon. Sample, estimate, bid to the arbiter, enforce its decisions
//! as leases. Leases revert on their own when the arbiter goes quiet, every cgroup truce
//! touched is restored on SIGTERM/SIGINT, and a restart undoes what a crash left (journal).

use super::sampler::{Sampler, now};
use crate::brain::{Brain, BrainParams, RoundInputs};
use crate::config::AgentConfig;
use crate::enforce::{Enforcer, Floors, under_roots};
use crate::cgroupfs::Mode;
use crate::probes::{PerfMode, error_chain};
use crate::transport::{ArbiterClient, ArbiterEndpoint, CancellationToken, ClientConfig, Inbound, Outbound};
use crate::workload_config::Config as WorkloadConfig;
use anyhow::{Context, Result};
use std::path::PathBuf;
use tokio::signal::unix::{SignalKind, signal};
use truce_common::model::HostId;
use truce_common::wire::{Report, SignalSummary, WorkloadReport};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Configuration file (see `truce-agent config --print-default`).
    #[arg(long, short, env = "TRUCE_AGENT_CONFIG", default_value = "/etc/truce/agent.toml")]
    pub config: PathBuf,
}

pub async fn run(args: &RunArgs) -> Result<()> {
    let cfg = AgentConfig::load(&args.config)?;
    let workloads = match &cfg.workloads {
        Some(p) => WorkloadConfig::load(p).with_context(|| format!("loading workload policies {}", p.display()))?,
        None => WorkloadConfig::default(),
    };
    let mut sampler = tokio::task::block_in_place(|| Sampler::start(PerfMode::Hardware))?;
    let floors = Floors { cpu_millicores: cfg.cpu_floor_millicores, memory_margin_bytes: cfg.memory_margin_bytes, ..Floors::default() };
    let (mut enforcer, recovered) = Enforcer::open(sampler.cgroups().mount.clone(), cfg.roots.clone(), &cfg.journal, floors)?;
    if recovered > 0 {
        tracing::warn!(slots = recovered, journal = %cfg.journal.display(), "restored cgroup values a previous run left in place");
    }
    let enforcing = sampler.cgroups().mode == Mode::Enforce;
    if !enforcing {
        tracing::warn!(cgroup = %sampler.cgroups().summary(), "this host cannot enforce: reporting and bidding, but decisions are not applied");
    }
    let endpoints = cfg.endpoints.iter().map(|&addr| ArbiterEndpoint { addr, server_name: cfg.server_name.clone() }).collect();
    let cancel = CancellationToken::new();
    let (client, mut inbound) = ArbiterClient::spawn(ClientConfig::new(HostId(cfg.host.clone()), &cfg.certs_dir, endpoints), cancel.clone())?;
    let mut brain = Brain::new(BrainParams::default(), now().0);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut ticker = tokio::time::interval(cfg.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    tracing::info!(host = %cfg.host, roots = ?cfg.roots, "truce-agent running");
    let result: Result<()> = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            msg = inbound.recv() => match msg {
                Some(Inbound::Decisions(d)) if !enforcing => {
                    tracing::debug!(decisions = d.decisions.len(), "observe-only host: decisions not enforced");
                }
                Some(Inbound::Decisions(d)) => {
                    let at = now();
                    for decision in &d.decisions {
                        if let Err(e) = enforcer.apply(decision, at) {
                            tracing::warn!(cgroup = %decision.workload.path, decision = decision.id.0, cause = %error_chain(&e), "decision not applied");
                        }
                    }
                }
                Some(Inbound::State(s)) => tracing::info!(state = ?s, "arbiter connection"),
                Some(Inbound::Refused(e)) => tracing::warn!(code = ?e.code, message = %e.message, "arbiter refused a request"),
                Some(_) => {}
                None => break Err(anyhow::anyhow!("the arbiter client stopped")),
            },
            _ = ticker.tick() => {
                // Leases lapse here whether or not the arbiter is reachable.
                for l in enforcer.tick(now()) {
                    tracing::info!(cgroup = %l.cgroup, lease = l.id.0, "lease lapsed");
                }
                let sample = match sampler.tick().await {
                    Ok(Some(s)) => s,
                    Ok(None) => continue,
                    Err(e) => break Err(e),
                };
                let mut inputs = RoundInputs::default();
                for w in &sample.workloads {
                    inputs.policies.insert(w.workload.id, workloads.policy_for(&w.workload.path).clone());
                    let latency_file = workloads.rule_for(&w.workload.path).and_then(|r| r.latency_file.as_deref());
                    if let Some(ms) = latency_file.and_then(read_latency_ms) {
                        inputs.external_latency_ms.insert(w.workload.id, ms);
                    }
                }
                let round = brain.observe(&sample, &inputs);
                seq += 1;
                let report = Report {
                    seq,
                    host: HostId(cfg.host.clone()),
                    at: sample.at,
                    period_ms: sample.period_ms,
                    workloads: sample.workloads.iter().map(|w| WorkloadReport {
                        workload: w.workload.clone(),
                        name: w.name.clone(),
                        signals: SignalSummary::from_sample(w, sample.period_ms),
                        estimate: round.estimates.iter().find(|e| e.workload == w.workload.id).cloned(),
                        forecasts: round.forecasts.iter().filter(|f| f.workload == w.workload.id).cloned().collect(),
                    }).collect(),
                };
                client.send(Outbound::Report(report));
                // Bid only for what this agent may change; reports cover every workload.
                for bid in round.bids.into_iter().filter(|b| under_roots(&b.workload.path, &cfg.roots)) {
                    client.send(Outbound::Bid(bid));
                }
            }
        }
    };
    let left = enforcer.restore_all();
    if left > 0 {
        tracing::error!(slots = left, journal = %cfg.journal.display(), "some cgroups could not be restored; the next start retries them");
    } else {
        tracing::info!("every cgroup truce touched is restored");
    }
    cancel.cancel();
    client.join().await;
    sampler.shutdown().await;
    result
}

/// The latest latency a service wrote to its SLO file, in ms. A missing or unparsable file
/// means the SLO is unobserved this period (never a guessed value).
fn read_latency_ms(path: &std::path::Path) -> Option<f64> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let v = text.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
            if v.is_none() {
                tracing::warn!(file = %path.display(), "SLO latency file does not hold a non-negative number of ms");
            }
            v
        }
        Err(e) => {
            tracing::debug!(file = %path.display(), cause = %e, "SLO latency file unreadable this period");
            None
        }
    }
}
