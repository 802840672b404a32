//! Rolling-origin forecast benchmark on CSV traces (run by `cargo xtask bench forecast`).
//!
//! Every numeric column of every CSV is one series. At each origin, each model is fitted on
//! the last `--history` points and forecasts `--horizon` steps; the error is scored as MASE
//! (MAE over the horizon divided by the in-sample seasonal-naive MAE of the training window).
//! `served` is what the agent would serve: at each origin the model with the lowest mean MASE
//! over the earlier origins of that series (EWMA before any evidence), as the online
//! forecaster picks by rolling MASE.

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::path::PathBuf;
use truce_agent::brain::forecast::models::forecast_all;
use truce_agent::brain::ModelKind;

#[derive(Parser)]
struct Args {
    /// Season length in points (288 = one day of 5-minute points).
    #[arg(long, default_value_t = 288)]
    season: usize,
    #[arg(long, default_value_t = 12)]
    horizon: usize,
    /// Training window (the forecaster's ring buffer).
    #[arg(long, default_value_t = 864)]
    history: usize,
    /// Origins per series, evenly spaced over the part of the series after the first window.
    #[arg(long, default_value_t = 40)]
    origins: usize,
    #[arg(long, default_value_t = 0.9)]
    level: f64,
    /// Print a Markdown table (for docs/benchmarks.md).
    #[arg(long)]
    markdown: bool,
    csv: Vec<PathBuf>,
}

struct Series {
    name: String,
    values: Vec<f64>,
}

fn read_csv(path: &PathBuf) -> Result<Vec<Series>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().with_context(|| format!("{} is empty", path.display()))?;
    let label = path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut series: Vec<Series> = header
        .split(',')
        .map(|c| Series { name: format!("{label}/{}", c.trim()), values: Vec::new() })
        .collect();
    for (i, line) in lines.enumerate() {
        for (col, cell) in line.split(',').enumerate() {
            let v: f64 = cell.trim().parse().with_context(|| format!("{} line {}: {cell:?}", path.display(), i + 2))?;
            if let Some(s) = series.get_mut(col) {
                s.values.push(v);
            }
        }
    }
    Ok(series)
}

fn seasonal_scale(train: &[f64], m: usize) -> Option<f64> {
    let m = if train.len() > m { m } else { 1 };
    let n = train.len().checked_sub(m).filter(|n| *n > 0)?;
    let s = (m..train.len()).map(|i| (train[i] - train[i - m]).abs()).sum::<f64>() / n as f64;
    (s > 0.0).then_some(s)
}

const SERVED: &str = "served";

fn main() -> Result<()> {
    let args = Args::parse();
    if args.csv.is_empty() {
        bail!("no CSV files given");
    }
    let kinds = ModelKind::ALL;
    let mut names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    names.push(SERVED);
    // rows: (series, mean MASE per model in `names` order)
    let mut rows: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    let started = std::time::Instant::now();
    for path in &args.csv {
        for s in read_csv(path)? {
            let n = s.values.len();
            if n < args.history + args.horizon + 1 {
                eprintln!("skip {}: {n} points is shorter than history + horizon", s.name);
                continue;
            }
            let span = n - args.horizon - args.history;
            let origins: Vec<usize> =
                (0..args.origins).map(|i| args.history + span * i / args.origins.max(1)).collect();
            let mut mase: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
            for &o in &origins {
                let train = &s.values[o - args.history..o];
                let truth = &s.values[o..o + args.horizon];
                let Some(scale) = seasonal_scale(train, args.season) else { continue };
                let fc = forecast_all(&kinds, train, args.season, args.horizon, args.level);
                // The served model is chosen on evidence from earlier origins only.
                let served = (0..kinds.len())
                    .filter(|&i| !mase[i].is_empty())
                    .min_by(|&a, &b| mean(&mase[a]).total_cmp(&mean(&mase[b])))
                    .unwrap_or(1);
                let mut this: Vec<Option<f64>> = Vec::with_capacity(kinds.len());
                for (_, f) in &fc {
                    this.push(f.as_ref().map(|f| {
                        f.point.iter().zip(truth).map(|(p, t)| (p - t).abs()).sum::<f64>() / args.horizon as f64 / scale
                    }));
                }
                for (i, v) in this.iter().enumerate() {
                    if let Some(v) = v {
                        mase[i].push(*v);
                    }
                }
                // Fall back to EWMA when the served model could not fit at this origin.
                if let Some(v) = this[served].or(this[1]) {
                    mase[kinds.len()].push(v);
                }
            }
            eprintln!("{}: {} origins scored ({:.0} s so far)", s.name, mase[0].len(), started.elapsed().as_secs_f64());
            rows.push((s.name, mase.iter().map(|v| (!v.is_empty()).then(|| mean(v))).collect()));
        }
    }
    print_table(&names, &rows, args.markdown);
    Ok(())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn print_table(names: &[&str], rows: &[(String, Vec<Option<f64>>)], markdown: bool) {
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into());
    if markdown {
        println!("| series | {} |", names.join(" | "));
        println!("|---|{}", "---:|".repeat(names.len()));
    } else {
        println!("{:<44}{}", "series", names.iter().map(|n| format!("{n:>16}")).collect::<String>());
    }
    for (name, vals) in rows {
        let cells: Vec<String> = vals.iter().map(|v| cell(*v)).collect();
        if markdown {
            println!("| {name} | {} |", cells.join(" | "));
        } else {
            println!("{name:<44}{}", cells.iter().map(|c| format!("{c:>16}")).collect::<String>());
        }
    }
    // Mean MASE per model over the series where it ran, and its ratio to seasonal naive.
    let sn = 0;
    let means: Vec<Option<f64>> = (0..names.len())
        .map(|i| {
            let v: Vec<f64> = rows.iter().filter_map(|(_, r)| r[i]).collect();
            (!v.is_empty()).then(|| mean(&v))
        })
        .collect();
    let ratios: Vec<Option<f64>> = (0..names.len())
        .map(|i| {
            let v: Vec<f64> = rows.iter().filter_map(|(_, r)| Some(r[i]? / r[sn]?)).collect();
            (!v.is_empty()).then(|| mean(&v))
        })
        .collect();
    for (label, vals) in [("mean MASE", &means), ("mean ratio to seasonal_naive", &ratios)] {
        let cells: Vec<String> = vals.iter().map(|v| cell(*v)).collect();
        if markdown {
            println!("| **{label}** | {} |", cells.join(" | "));
        } else {
            println!("{label:<44}{}", cells.iter().map(|c| format!("{c:>16}")).collect::<String>());
        }
    }
}
