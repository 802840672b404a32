//! `truce-agent replay FILE`: run the pure core (estimator, attribution, forecaster, bidder)
//! over a recording made by `truce-agent record` (JSON lines, one `HostSample` per line),
//! exactly as the daemon drives it, and print the bids and the top antagonists.
//!
//! A recording holds no allocations and no external latency files, so replay runs without
//! them: overload probabilities and releases need allocations and stay absent, and
//! latency-file SLOs are reported unobserved.

mod text;

use crate::brain::{Brain, BrainParams, ForecasterParams, Round, RoundInputs};
use crate::workload_config::{Config, ConfigError};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use truce_common::model::{Bid, Timestamp, WorkloadId};
use truce_common::signal::HostSample;

#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Recording to replay (JSON lines from `truce-agent record --out FILE`).
    pub file: PathBuf,
    /// Workload policies (TOML); without it every workload gets the default policy.
    #[arg(long, env = "TRUCE_WORKLOADS")]
    pub workloads: Option<PathBuf>,
    /// Print the bids of every period, not only the summary at the end.
    #[arg(long)]
    pub every: bool,
    /// Print JSON lines (one per bid, then one summary object) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Forecast horizon, in periods.
    #[arg(long, default_value_t = 10)]
    pub horizon: usize,
    /// Season length for seasonal naive and MSTL, in periods.
    #[arg(long, default_value_t = 60)]
    pub season: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("failed to open recording {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read line {line} of {path}")]
    Read {
        path: PathBuf,
        line: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line} of {path} is not a HostSample")]
    Parse {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line} of {path}: {reason}")]
    BadSample { path: PathBuf, line: usize, reason: String },
    #[error("recording {path} holds no samples")]
    Empty { path: PathBuf },
    #[error("failed to load workload policies")]
    Config(#[from] ConfigError),
}

/// What a replay concluded: every bid, and the last round in full.
#[derive(Debug)]
pub struct ReplayReport {
    pub periods: usize,
    pub first: Timestamp,
    pub last: Round,
    pub bids: Vec<Bid>,
    /// Workload names and paths as recorded.
    pub names: BTreeMap<WorkloadId, (String, String)>,
}

impl ReplayReport {
    /// The top antagonist of `victim` in the last round.
    pub fn top_antagonist(&self, victim: WorkloadId) -> Option<&truce_common::estimate::Antagonist> {
        self.last.estimates.iter().find(|e| e.workload == victim).and_then(|e| e.antagonists.first())
    }

    pub fn id_by_name(&self, name: &str) -> Option<WorkloadId> {
        self.names.iter().find(|(_, (n, _))| n == name).map(|(id, _)| *id)
    }
}

pub fn brain_params(horizon: usize, season: usize) -> BrainParams {
    BrainParams {
        forecaster: ForecasterParams { horizon: horizon.max(1), season: season.max(1), ..ForecasterParams::default() },
        ..BrainParams::default()
    }
}

/// Replay a recording; `on_round` sees every round as it is produced.
pub fn replay_file(
    path: &Path,
    config: &Config,
    params: BrainParams,
    mut on_round: impl FnMut(&Round),
) -> Result<ReplayReport, ReplayError> {
    let file = std::fs::File::open(path).map_err(|source| ReplayError::Open { path: path.to_path_buf(), source })?;
    let mut brain = Brain::new(params, 1);
    let mut names = BTreeMap::new();
    let mut bids = Vec::new();
    let (mut first, mut prev, mut last, mut periods) = (None, None::<Timestamp>, None, 0usize);
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|source| ReplayError::Read { path: path.to_path_buf(), line: n, source })?;
        if line.trim().is_empty() {
            continue;
        }
        let sample: HostSample = serde_json::from_str(&line)
            .map_err(|source| ReplayError::Parse { path: path.to_path_buf(), line: n, source })?;
        let bad = |reason: String| ReplayError::BadSample { path: path.to_path_buf(), line: n, reason };
        if sample.period_ms == 0 {
            return Err(bad("period_ms is 0".into()));
        }
        if prev.is_some_and(|p| sample.at <= p) {
            return Err(bad(format!("time goes backwards or repeats (at = {} ms)", sample.at.0)));
        }
        prev = Some(sample.at);
        first.get_or_insert(sample.at);
        let mut inputs = RoundInputs::default();
        for w in &sample.workloads {
            names.insert(w.workload.id, (w.name.clone(), w.workload.path.clone()));
            inputs.policies.insert(w.workload.id, config.policy_for(&w.workload.path).clone());
        }
        let round = brain.observe(&sample, &inputs);
        on_round(&round);
        bids.extend(round.bids.iter().cloned());
        periods += 1;
        last = Some(round);
    }
    let (Some(first), Some(last)) = (first, last) else { return Err(ReplayError::Empty { path: path.to_path_buf() }) };
    Ok(ReplayReport { periods, first, last, bids, names })
}

pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let config = match &args.workloads {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_err: Option<std::io::Error> = None;
    let params = brain_params(args.horizon, args.season);
    let report = replay_file(&args.file, &config, params, |round| {
        if write_err.is_some() {
            return;
        }
        let res = if args.json {
            round.bids.iter().try_for_each(|b| {
                serde_json::to_writer(&mut out, b).map_err(std::io::Error::from)?;
                writeln!(out)
            })
        } else if args.every {
            round.bids.iter().try_for_each(|b| writeln!(out, "{}", text::bid_line(b)))
        } else {
            Ok(())
        };
        write_err = res.err();
    })?;
    if let Some(e) = write_err {
        return Err(anyhow::Error::new(e).context("writing replay output"));
    }
    if args.json {
        serde_json::to_writer(&mut out, &text::summary_json(&report))?;
        writeln!(out)?;
    } else {
        text::write_summary(&mut out, &report, &args.file)?;
    }
    Ok(())
}
