//! `truce-agent observe`: a live per-workload table of what the probes see, without an arbiter.

use super::sampler::Sampler;
use super::table;
use crate::brain::{Brain, BrainParams, RoundInputs};
use crate::probes::PerfMode;
use anyhow::Result;
use clap::ValueEnum;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum PerfArg {
    /// Hardware cycles, instructions and LLC misses where the PMU exists; n/a otherwise.
    #[default]
    Auto,
    /// Do not open perf counters.
    Off,
}

impl From<PerfArg> for PerfMode {
    fn from(p: PerfArg) -> PerfMode {
        match p {
            PerfArg::Auto => PerfMode::Hardware,
            PerfArg::Off => PerfMode::Off,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ObserveArgs {
    /// Collection period, e.g. `1s` or `500ms`.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// Print one period (after a baseline period) and exit.
    #[arg(long)]
    pub once: bool,
    /// One JSON object per period on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Rows shown in the table.
    #[arg(long, default_value_t = 25)]
    pub rows: usize,
    #[arg(long, value_enum, default_value_t = PerfArg::Auto)]
    pub perf: PerfArg,
    /// Also serve the host view (`truce top --agent`) and /metrics, as the daemon does; off unless given.
    #[command(flatten)]
    pub telemetry: crate::inspect::TelemetryArgs,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    at_ms: u64,
    period_ms: u64,
    cpus: u32,
    rows: &'a [table::ObserveRow],
    unavailable: &'a [truce_common::signal::Unavailable],
    probe_errors: &'a [(String, u64)],
}

pub async fn run(args: &ObserveArgs) -> Result<()> {
    let mut sampler = Sampler::start(args.perf.into(), crate::probes::ProbeGroups::default())?;
    if !args.json {
        eprintln!("{}", sampler.cgroups().summary());
    }
    let mut brain = Brain::new(BrainParams::default(), 1);
    let mut tcfg = crate::inspect::TelemetryConfig::default();
    args.telemetry.apply(&mut tcfg);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
    let cancel = tokio_util::sync::CancellationToken::new();
    let (mut telemetry, problems) = crate::inspect::Telemetry::start(&tcfg, truce_common::model::HostId(host), &cancel).await;
    // Asked for on the command line: not serving it is an error here.
    if let Some(p) = problems.into_iter().next() {
        return Err(p.into());
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut ticker = tokio::time::interval(args.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tty = std::io::stdout().is_terminal() && !args.json && !args.once;
    let result = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = ticker.tick() => {}
        }
        let sample = match sampler.tick().await {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => break Err(e),
        };
        let round = brain.observe(&sample, &RoundInputs::default());
        let run_stats = if telemetry.wants_run_stats() { sampler.probe_run_stats().await } else { Vec::new() };
        telemetry.period(crate::inspect::Period { sample: &sample, round: &round, leases: Vec::new(), run_stats, reports: 0, bids: 0, outbox_dropped: 0, forecast_refits_deferred: 0, forecast_periods_recorded: 0 });
        let rows = table::rows(&sample, &round.estimates);
        let mut out = std::io::stdout().lock();
        let written = if args.json {
            let line = JsonLine {
                at_ms: sample.at.0,
                period_ms: sample.period_ms,
                cpus: sample.totals.cpus,
                rows: &rows,
                unavailable: &sample.unavailable,
                probe_errors: &sample.probe_errors,
            };
            serde_json::to_writer(&mut out, &line).map_err(std::io::Error::from).and_then(|_| writeln!(out))
        } else {
            let clear = if tty { "\x1b[2J\x1b[H" } else { "" };
            writeln!(out, "{clear}{}", table::render(&sample, &rows, args.rows))
        };
        // A closed pipe (`| head`) ends the command cleanly.
        if written.and_then(|_| out.flush()).is_err() || args.once {
            break Ok(());
        }
    };
    telemetry.shutdown().await;
    sampler.shutdown().await;
    result
}
