//! `truce-agent record --out FILE`: save real samples as JSON lines, one HostSample per
//! period, for `truce-agent replay` and as test fixtures.

use super::sampler::Sampler;
use crate::probes::PerfMode;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// File to write (JSON lines).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// Stop after this many samples (default: until SIGINT/SIGTERM).
    #[arg(long)]
    pub samples: Option<u64>,
    /// Keep only workloads whose cgroup path starts with this prefix (e.g. `/truce-demo`).
    #[arg(long)]
    pub prefix: Option<String>,
}

pub async fn run(args: &RecordArgs) -> Result<()> {
    let file = std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut sampler = Sampler::start(PerfMode::Hardware, crate::probes::ProbeGroups::default())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut ticker = tokio::time::interval(args.period);
    let mut written = 0u64;
    let result: Result<()> = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = ticker.tick() => {}
        }
        let mut sample = match sampler.tick().await {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => break Err(e),
        };
        if let Some(prefix) = &args.prefix {
            sample.workloads.retain(|w| w.workload.path.starts_with(prefix.as_str()));
            let keep: std::collections::HashSet<u64> = sample.workloads.iter().map(|w| w.workload.id.0).collect();
            sample.delays.retain(|d| keep.contains(&d.victim) || keep.contains(&d.delayer));
        }
        if let Err(e) = serde_json::to_writer(&mut out, &sample).map_err(std::io::Error::from).and_then(|_| writeln!(out)) {
            break Err(e).context("writing the recording");
        }
        written += 1;
        eprintln!("record: {written} samples, {} workloads in the last", sample.workloads.len());
        if args.samples.is_some_and(|n| written >= n) {
            break Ok(());
        }
    };
    out.flush().context("flushing the recording")?;
    sampler.shutdown().await;
    result
}
