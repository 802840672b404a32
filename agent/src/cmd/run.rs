//! `truce-agent run`: the daemon. Sample, estimate, bid to the arbiter, enforce its decisions
//! as leases. Leases revert on their own when the arbiter goes quiet, every cgroup truce
//! touched is restored on SIGTERM/SIGINT, and a restart undoes what a crash left (journal).

use super::cpu_cost::CpuSpan;
use super::sampler::{Sampler, now};
use super::reporting;
use crate::brain::{Brain, BrainParams, Round, RoundInputs};
use super::forecasting::ForecastWorker;
use super::pressure::{FollowUps, OnsetParams, OnsetWatch};
use crate::config::AgentConfig;
use super::status_file::StatusWriter;
use crate::enforce::{Enforcer, Floors, Scope, status_path};
use crate::inspect::{Period, Telemetry, enforced};
use crate::cgroupfs::Mode;
use crate::probes::{PerfMode, error_chain};
use crate::transport::{ArbiterClient, ArbiterEndpoint, CancellationToken, ClientConfig, Inbound, Outbound};
use crate::workload_config::Config as WorkloadConfig;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use truce_common::model::{Bid, HostId, WorkloadId};
use truce_common::wire::Inventory;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Configuration file (see `truce-agent config --print-default`).
    #[arg(long, short, env = "TRUCE_AGENT_CONFIG", default_value = "/etc/truce/agent.toml")]
    pub config: PathBuf,
    /// This host's name, replacing `host` from the file (Kubernetes: the node name).
    #[arg(long, env = "TRUCE_AGENT_HOST")]
    pub host: Option<String>,
    #[command(flatten)]
    pub telemetry: crate::inspect::TelemetryArgs,
}

pub async fn run(args: &RunArgs) -> Result<()> {
    // First: a SIGTERM during start-up (journal replay, readiness checks, binding the socket and
    // /metrics) waits for the loop, which restores and exits 0, instead of killing the process.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut cfg = AgentConfig::load_for(&args.config, args.host.as_deref())?;
    args.telemetry.apply(&mut cfg.telemetry);
    // Before the sampler's, the forecaster's and the client's threads start: they inherit it.
    match super::scheduling::apply(cfg.cpu_policy) {
        Ok(threads) => tracing::info!(policy = ?cfg.cpu_policy, threads, "the agent's threads' CPU scheduling policy"),
        Err(e) => tracing::warn!(policy = ?cfg.cpu_policy, error = %e, "cannot set the agent's CPU scheduling policy; it keeps the one it was started with"),
    }
    let workloads = match &cfg.workloads {
        Some(p) => WorkloadConfig::load(p).with_context(|| format!("loading workload policies {}", p.display()))?,
        None => WorkloadConfig::default(),
    };
    // Blocking (it loads the probes), on the runtime's one thread: nothing else runs on it yet.
    let mut sampler = Sampler::start(PerfMode::Hardware, cfg.probes)?;
    let floors = Floors { cpu_millicores: cfg.cpu_floor_millicores, memory_margin_bytes: cfg.memory_margin_bytes, ..Floors::default() };
    // Under `roots = ["/system.slice"]` the agent's own unit is one of the services below the
    // root: the scope keeps it (and any slice above it) out of what this agent bids for and writes.
    let scope = Scope::for_this_process(cfg.roots.clone());
    tracing::info!(own = scope.own.as_deref().unwrap_or("unknown"), "the agent's own cgroup is never managed");
    let (mut enforcer, recovered) = Enforcer::open(sampler.cgroups().mount.clone(), scope.clone(), &cfg.journal, floors)?;
    if recovered > 0 {
        tracing::warn!(slots = recovered, journal = %cfg.journal.display(), "restored cgroup values a previous run left in place");
    }
    crate::readiness::announce(sampler.capabilities(), &args.config, args.host.as_deref());
    let enforcing = sampler.cgroups().mode == Mode::Enforce;
    if !enforcing {
        tracing::warn!(cgroup = %sampler.cgroups().summary(), "this host cannot enforce: reporting and bidding, but decisions are not applied");
    }
    let endpoints = cfg.endpoints.iter().map(|&addr| ArbiterEndpoint { addr, server_name: cfg.server_name.clone() }).collect();
    let cancel = CancellationToken::new();
    let mut client_cfg = ClientConfig::new(HostId(cfg.host.clone()), &cfg.certs_dir, endpoints);
    client_cfg.keep_alive = cfg.timing.keep_alive;
    client_cfg.idle_timeout = cfg.timing.idle_timeout;
    client_cfg.connect_timeout = cfg.timing.connect_timeout;
    let (client, mut inbound) = ArbiterClient::spawn(client_cfg, cancel.clone())?;
    let (mut telemetry, problems) = Telemetry::start(&cfg.telemetry, HostId(cfg.host.clone()), &cancel).await;
    for p in &problems {
        tracing::error!(cause = %error_chain(p), "running without it");
    }
    let params = BrainParams::default();
    let forecaster = ForecastWorker::start(params.forecaster.clone(), cfg.forecast_cpu_share).context("starting the forecaster thread")?;
    let mut brain = Brain::new(params, now().0);
    let mut ticker = tokio::time::interval(cfg.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let host = HostId(cfg.host.clone());
    let status_file = status_path(&cfg.journal);
    let mut status = StatusWriter::new(status_file.clone(), &cfg.host, enforcing, cfg.period);
    let mut last_bids: HashMap<WorkloadId, Bid> = HashMap::new();
    let mut last_round: Option<SeenRound> = None;
    let mut sent_inventory: Option<(Inventory, u64)> = None;
    let mut onsets = OnsetWatch::new(OnsetParams::default());
    // Pressure may pull a sample forward, never closer than this to the previous one.
    let min_gap = super::pressure::early_gap(cfg.period);
    let mut last_sample = tokio::time::Instant::now();
    let mut follow_ups = FollowUps::default();
    tracing::info!(host = %cfg.host, roots = ?cfg.roots, status = %status_file.display(), "truce-agent running");
    // This thread's CPU and wake-ups between two periods' work (decisions, lease expiries,
    // onsets, the arbiter's packets, telemetry): logged with the next period.
    let (mut between, mut wakes) = (CpuSpan::start(), 0u32);
    let result: Result<()> = loop {
        wakes += 1;
        // Leases revert at their expiry, not at the next period: "lease + at most a moment".
        let lapse = lapse_at(enforcer.leases().next_expiry());
        let sample_now = tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            () = lapse => {
                revert_lapsed(&mut enforcer, &mut telemetry);
                false
            }
            msg = inbound.recv() => {
                if !on_inbound(msg, enforcing, &mut enforcer, &mut telemetry, &mut status, last_round.as_ref(), &last_bids) {
                    break Err(anyhow::anyhow!("the arbiter client stopped"));
                }
                false
            }
            _ = ticker.tick() => true,
            fired = onsets.onset() => {
                let early = last_sample.elapsed() >= min_gap;
                tracing::debug!(cgroup = %fired.cgroup.display(), resource = fired.resource, now = early, "pressure onset: sampling early");
                follow_ups.onset();
                if early {
                    ticker.reset();
                } else {
                    // Too soon after the last sample: the next one comes at the gap, not a
                    // period later, so the onset is not lost.
                    ticker.reset_at(last_sample + min_gap);
                }
                early
            }
        };
        if sample_now {
            let between_us = between.micros();
            last_sample = tokio::time::Instant::now();
            // Also here: retries of reverts that failed earlier.
            revert_lapsed(&mut enforcer, &mut telemetry);
            let sampling = std::time::Instant::now();
            let main_cost = CpuSpan::start();
            // Decisions and lease expiries are served while the sample is taken.
            let sampled = Duties { enforcing, enforcer: &mut enforcer, telemetry: &mut telemetry, inbound: &mut inbound, status: &mut status, last_round: last_round.as_ref(), last_bids: &last_bids }
                .meanwhile(sampler.tick())
                .await;
            let sample = match sampled {
                Ok(Ok(Some(s))) => s,
                Ok(Ok(None)) => continue,
                Ok(Err(e)) | Err(e) => break Err(e),
            };
            let sampled_in = sampling.elapsed();
            let mut inputs = RoundInputs::default();
            for w in &sample.workloads {
                inputs.policies.insert(w.workload.id, workloads.policy_for(&w.workload.path).clone());
                let latency_file = workloads.rule_for(&w.workload.path).and_then(|r| r.latency_file.as_deref());
                if let Some(ms) = latency_file.and_then(read_latency_ms) {
                    inputs.external_latency_ms.insert(w.workload.id, ms);
                }
            }
            // The brain decides off this task, so that its duties go on meanwhile (it takes
            // tens of ms under contention in the VM).
            let deciding = {
                let forecasts = forecaster.latest();
                let job = tokio::task::spawn_blocking(move || {
                    let cost = CpuSpan::start();
                    let round = brain.decide(&sample, &inputs, forecasts);
                    (brain, sample, inputs, round, cost.micros())
                });
                let mut duties = Duties { enforcing, enforcer: &mut enforcer, telemetry: &mut telemetry, inbound: &mut inbound, status: &mut status, last_round: last_round.as_ref(), last_bids: &last_bids };
                duties.meanwhile(job).await.and_then(|joined| joined.map_err(|e| anyhow::anyhow!("the brain's decision task failed: {e}")))
            };
            let (returned, sample, inputs, round, decide_us) = match deciding {
                Ok(v) => v,
                Err(e) => break Err(e),
            };
            brain = returned;
            forecaster.submit(&sample, &inputs.allocations, |w| scope.manages(&w.workload.path));
            // Bid only for what this agent may change; reports cover every workload.
            let ours: Vec<&Bid> = round.bids.iter().filter(|b| scope.manages(&b.workload.path)).collect();
            telemetry.period(Period {
                sample: &sample,
                round: &round,
                leases: enforced(enforcer.leases()),
                // A round trip to the probes' thread, so only when the metrics will show it.
                run_stats: if telemetry.wants_run_stats() { sampler.probe_run_stats().await } else { Vec::new() },
                reports: 1,
                bids: ours.len() as u64,
                outbox_dropped: client.dropped(),
                forecast_refits_deferred: forecaster.deferred_refits(),
                forecast_periods_recorded: forecaster.periods_recorded(),
            });
            seq += 1;
            // The inventory travels when it changed, and every 30 periods so that a new
            // arbiter (fail-over) learns it soon.
            let inventory = reporting::inventory(&sample, &scope, &inputs.policies);
            let resend = match &sent_inventory {
                Some((sent, at)) => *sent != inventory || seq >= at + 30,
                None => true,
            };
            let attach = resend.then(|| inventory.clone());
            if resend {
                sent_inventory = Some((inventory, seq));
            }
            client.send(Outbound::Report(reporting::report(seq, &host, &sample, &round, attach)));
            for &bid in &ours {
                last_bids.insert(bid.workload.id, bid.clone());
                client.send(Outbound::Bid(bid.clone()));
            }
            let asked = ours.iter().any(|b| !b.asks.is_empty());
            tracing::debug!(
                period_ms = sample.period_ms,
                sampled_ms = sampled_in.as_millis() as u64,
                decided_ms = sampling.elapsed().as_millis() as u64,
                read_cpu_us = sampler.last_cost().read_us,
                observe_cpu_us = sampler.last_cost().observe_us,
                decide_cpu_us = decide_us,
                // This thread's CPU from the sample to here: observing, reporting, bidding,
                // and whatever it served meanwhile (decisions, the arbiter's packets).
                main_cpu_us = main_cost.micros(),
                between_cpu_us = between_us,
                wakes,
                bids = round.bids.len(),
                asked,
                "period"
            );
            if follow_ups.after_sample(asked) {
                ticker.reset_at(last_sample + min_gap);
            }
            last_bids.retain(|w, _| sample.workloads.iter().any(|s| s.workload.id == *w));
            let names = sample.workloads.iter().map(|w| (w.workload.id, w.workload.path.clone(), w.name.clone())).collect();
            last_round = Some((round, names));
            if enforcing && cfg.pressure_onset {
                onsets.reconcile(&sample, &sampler.cgroups().mount, &cfg.roots, |p| scope.manages(p));
            }
            status.periodic(&enforcer, last_round.as_ref(), &last_bids);
            (between, wakes) = (CpuSpan::start(), 0);
        }
    };
    let left = enforcer.restore_all();
    status.write(&enforcer, None, &HashMap::new());
    if left > 0 {
        tracing::error!(slots = left, journal = %cfg.journal.display(), "some cgroups could not be restored; the next start retries them");
    } else {
        tracing::info!("every cgroup truce touched is restored");
    }
    cancel.cancel();
    client.join().await;
    telemetry.shutdown().await;
    sampler.shutdown().await;
    result
}

/// Sleeps until the earliest lease expiry (for ever when none is held).
async fn lapse_at(expiry: Option<truce_common::model::Timestamp>) {
    match expiry {
        Some(at) => tokio::time::sleep(Duration::from_millis(at.0.saturating_sub(now().0))).await,
        None => std::future::pending().await,
    }
}

/// What the daemon keeps doing while a sample is taken or the brain decides: apply the
/// arbiter's decisions at once (under contention a sample takes hundreds of ms, and a decision
/// is what relieves it) and revert leases at their expiry (a lease that lapsed during a sample
/// used to wait for its end: reverted 1.1 s after expiry once under TCG, in session 8's CI).
struct Duties<'a> {
    enforcing: bool,
    enforcer: &'a mut Enforcer,
    telemetry: &'a mut Telemetry,
    inbound: &'a mut tokio::sync::mpsc::Receiver<Inbound>,
    status: &'a mut StatusWriter,
    last_round: Option<&'a SeenRound>,
    last_bids: &'a HashMap<WorkloadId, Bid>,
}

impl Duties<'_> {
    /// Drive `work` to its end while doing the duties. Fails when the arbiter client stopped
    /// meanwhile (`work` is dropped then; a blocking job runs on and its result is discarded).
    async fn meanwhile<T>(&mut self, work: impl std::future::Future<Output = T>) -> Result<T> {
        tokio::pin!(work);
        loop {
            let lapse = lapse_at(self.enforcer.leases().next_expiry());
            tokio::select! {
                r = &mut work => return Ok(r),
                () = lapse => revert_lapsed(self.enforcer, self.telemetry),
                msg = self.inbound.recv() => {
                    if !on_inbound(msg, self.enforcing, self.enforcer, self.telemetry, self.status, self.last_round, self.last_bids) {
                        return Err(anyhow::anyhow!("the arbiter client stopped"));
                    }
                }
            }
        }
    }
}

/// Revert the leases whose time is up (and retry reverts that failed before), counted and logged.
fn revert_lapsed(enforcer: &mut Enforcer, telemetry: &mut Telemetry) {
    let lapsed = enforcer.tick(now());
    telemetry.lapsed(lapsed.len());
    for l in lapsed {
        tracing::info!(cgroup = %l.cgroup, lease = l.id.0, "lease lapsed");
    }
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

/// The last round and the (id, cgroup, name) of the workloads it saw.
pub(super) type SeenRound = (Round, Vec<(WorkloadId, String, String)>);

/// One message from the arbiter: decisions are applied (or counted, on a host that only
/// observes), the rest logged. Returns false when the client has stopped.
#[allow(clippy::too_many_arguments)]
fn on_inbound(
    msg: Option<Inbound>,
    enforcing: bool,
    enforcer: &mut Enforcer,
    telemetry: &mut Telemetry,
    status: &mut StatusWriter,
    last_round: Option<&SeenRound>,
    last_bids: &HashMap<WorkloadId, Bid>,
) -> bool {
    match msg {
        Some(Inbound::Decisions(d)) if !enforcing => {
            telemetry.decisions(&d, &[("observe_only", d.decisions.len() as u64)]);
            tracing::debug!(decisions = d.decisions.len(), "observe-only host: decisions not enforced");
        }
        Some(Inbound::Decisions(d)) => {
            let cost = CpuSpan::start();
            let at = now();
            let mut failed = 0;
            for decision in &d.decisions {
                if let Err(e) = enforcer.apply(decision, at) {
                    failed += 1;
                    tracing::warn!(cgroup = %decision.workload.path, decision = decision.id.0, cause = %error_chain(&e), "decision not applied");
                }
            }
            telemetry.decisions(&d, &[("applied", d.decisions.len() as u64 - failed), ("not_applied", failed)]);
            let applying_us = cost.micros();
            status.after_decisions(enforcer, last_round, last_bids);
            tracing::debug!(decisions = d.decisions.len(), failed, cpu_us = applying_us, status_cpu_us = cost.micros().saturating_sub(applying_us), "decisions applied");
        }
        Some(Inbound::State(s)) => {
            telemetry.connection(&s);
            tracing::info!(state = ?s, "arbiter connection");
        }
        Some(Inbound::Refused(e)) => tracing::warn!(code = ?e.code, message = %e.message, "arbiter refused a request"),
        Some(_) => {}
        None => return false,
    }
    true
}
