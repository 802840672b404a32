//! The agent's inspection edge on real probes (privileged, on this host): a victim and a CPU
//! burner share one CPU in test cgroups; the real sampler, core and telemetry serve the host
//! view on a unix socket and /metrics with kernel BPF stats on; `truce top`'s own client code
//! reads the socket and renders it, and the scrape is parsed.

use anyhow::{Context, Result};
use std::time::Duration;
use truce_agent::transport::CancellationToken;
use truce_agent::brain::{Brain, BrainParams, RoundInputs};
use truce_agent::cmd::sampler::Sampler;
use truce_agent::inspect::{Period, Telemetry, TelemetryConfig};
use truce_agent::probes::PerfMode;
use truce_agent::top::app::App;
use truce_agent::top::source::spawn_agent;
use truce_agent::top::state::ViewKind;
use truce_common::model::{HostId, Timestamp, WorkloadId};
use truce_tests::cgroups::TestCgroupTree;
use truce_tests::loopback::{metric, scrape};
use truce_tests::workloads::cpu_burner;

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_probes_reach_the_host_view_over_the_socket_and_the_metrics_scrape() -> Result<()> {
    assert!(nix::unistd::geteuid().is_root(), "host_inspect loads eBPF: run it as root, e.g. via `cargo xtask test`");
    let mut tree = TestCgroupTree::new("inspect")?;
    let burner_cg = tree.child("burner")?;
    let victim_cg = tree.child("victim")?;
    // Both on CPU 1: each waits while the other runs, so the kernel credits each with the other's delay.
    let burner = cpu_burner(&burner_cg)?;
    burner.pin(1)?;
    let victim = cpu_burner(&victim_cg)?;
    victim.pin(1)?;

    let dir = std::env::temp_dir().join(format!("truce-host-inspect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("agent.sock");
    let cancel = CancellationToken::new();
    let cfg = TelemetryConfig { socket: Some(socket.clone()), metrics_listen: Some("127.0.0.1:0".parse()?), probe_run_time: true };
    let (mut telemetry, problems) = Telemetry::start(&cfg, HostId("host-inspect".into()), &cancel).await;
    anyhow::ensure!(problems.is_empty(), "{problems:?}");
    let metrics_addr = telemetry.metrics_addr().context("metrics bound")?;
    let mut sampler = tokio::task::block_in_place(|| Sampler::start(PerfMode::Off, Default::default()))?;
    let mut brain = Brain::new(BrainParams::default(), 1);

    let client_cancel = CancellationToken::new();
    let mut source = spawn_agent(socket.clone(), client_cancel.clone());
    let mut app = App::new(ViewKind::Host, socket.display().to_string());
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut periods = 0;
    // Eight periods: the first only sets the baseline.
    while periods < 8 {
        tokio::select! {
            _ = ticker.tick() => {
                if let Some(sample) = sampler.tick().await? {
                    let round = brain.observe(&sample, &RoundInputs::default());
                    let run_stats = sampler.probe_run_stats().await;
                    telemetry.period(Period { sample: &sample, round: &round, leases: vec![], run_stats, reports: 0, bids: 0, outbox_dropped: 0, forecast_refits_deferred: 0, forecast_periods_recorded: 0 });
                    periods += 1;
                }
            }
            Some(ev) = source.events.recv() => app.on_source(ev, truce_agent::cmd::sampler::now()),
        }
    }
    // Let the last view reach the client.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, source.events.recv()).await {
        app.on_source(ev, truce_agent::cmd::sampler::now());
        if app.host.view().is_some_and(|v| v.matrix.cells.iter().any(|c| c.victim == WorkloadId(victim_cg.id) && c.delayer == WorkloadId(burner_cg.id))) {
            break;
        }
    }
    burner.stop();
    victim.stop();

    let view = app.host.view().context("no host view reached truce top's client")?;
    let cell = view.matrix.cells.iter().find(|c| c.victim == WorkloadId(victim_cg.id) && c.delayer == WorkloadId(burner_cg.id));
    println!("victim <- burner cell: {cell:?}");
    assert!(cell.is_some_and(|c| c.wait_ns > 50_000_000), "the kernel credits the burner with the victim's wait: {cell:?}");
    let screen = app.screen_text(140, 40, Timestamp(view.at.0));
    println!("{screen}");
    assert!(screen.contains("who delayed whom"), "{screen}");
    assert!(screen.lines().any(|l| l.contains("victim")), "{screen}");

    let samples = scrape(metrics_addr).await?;
    let burner_path = view.workloads.iter().find(|w| w.workload.id == WorkloadId(burner_cg.id)).map(|w| w.workload.path.clone()).context("burner in view")?;
    let cpu = metric(&samples, "truce_agent_workload_cpu_millicores", &[("workload", &burner_path)]).context("burner cpu metric")?;
    println!("burner cpu {cpu} millicores");
    assert!(cpu > 200.0, "the burner shares a CPU and uses a good part of it: {cpu}");
    assert!(metric(&samples, "truce_agent_workload_rq_delay_ratio", &[("workload", &burner_path)]).is_some_and(|r| r > 0.1));
    assert_eq!(metric(&samples, "truce_agent_periods_total", &[]), Some(8.0));
    assert!(metric(&samples, "truce_agent_probe_errors_total", &[("probe", "sched_stats_update")]).is_some(), "error counters start at zero");
    let available = metric(&samples, "truce_agent_probe_run_stats_available", &[]).context("run stats gauge")?;
    let run_time = metric(&samples, "truce_agent_probe_run_time_seconds_total", &[("program", "sched_switch")]);
    let runs = metric(&samples, "truce_agent_probe_runs_total", &[("program", "sched_switch")]);
    println!("probe run stats available {available}: sched_switch {run_time:?} s over {runs:?} runs");
    if kernel_at_least(5, 8) {
        assert_eq!(available, 1.0, "BPF_ENABLE_STATS exists since 5.8 and the agent asked for it");
        assert!(run_time.is_some_and(|t| t > 0.0) && runs.is_some_and(|n| n > 0.0));
    } else {
        assert_eq!(available, 0.0);
        assert_eq!(run_time, None, "unavailable, not zero");
    }

    client_cancel.cancel();
    let _ = source.task.await;
    cancel.cancel();
    telemetry.shutdown().await;
    sampler.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
