//! `cargo xtask bench reaction`: from interference onset (the CPU antagonist starts next to a
//! running victim) to truce's first cgroup write, in the VM. Side by side in one boot: the agent
//! with `pressure_onset` off (it sees the onset at its next period) and on (a PSI trigger pulls
//! the sample forward), at each period asked for. Goal: p99 <= 300 ms.
//!
//! Extra arguments: `--trials N` per variant (default 8), `--periods A,B` in ms (default 500),
//! `--onset off,on` (default both), `--vcpus A,B` (default 1,2; one boot each: see bench
//! mitigation for why one vCPU takes qemu's turn-taking out of the measurement).
use anyhow::{Context, Result, bail};

fn flag(rest: &[String], name: &str, default: &str) -> String {
    rest.iter().position(|a| a == name).and_then(|i| rest.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

pub fn run(rest: &[String]) -> Result<()> {
    let trials: u32 = flag(rest, "--trials", "8").parse().context("--trials")?;
    let periods: Vec<u64> = flag(rest, "--periods", "500").split(',').map(|p| p.trim().parse()).collect::<Result<_, _>>().context("--periods")?;
    let onsets: Vec<bool> = flag(rest, "--onset", "off,on")
        .split(',')
        .map(|o| match o.trim() {
            "on" => Ok(true),
            "off" => Ok(false),
            other => bail!("--onset: {other:?} is neither on nor off"),
        })
        .collect::<Result<_>>()?;
    let variants: Vec<(u64, bool)> = periods.iter().flat_map(|&p| onsets.iter().map(move |&o| (p, o))).collect();
    crate::setup::run(&crate::setup::Args { no_vm: false })?;
    let on_off = |o: bool| if o { "on" } else { "off" };
    let script = variants
        .iter()
        .map(|&(p, o)| {
            format!("truce-demo-scenario reaction --dir /tmp/truce-reaction-{p}-{} --trials {trials} --period-ms {p} --round-ms 100 --onset {}", on_off(o), on_off(o))
        })
        .collect::<Vec<_>>()
        .join(" && ");
    let vcpus: Vec<u32> = flag(rest, "--vcpus", "1,2").split(',').map(|v| v.trim().parse()).collect::<Result<_, _>>().context("--vcpus")?;
    let budget = u64::from(trials) * variants.len() as u64 * 90 + 120;
    let mut tables = Vec::new();
    for &n in &vcpus {
        let console = crate::vm::command_on("6.12", &script, budget, &format!("[reaction {n} vCPU] "), n.max(1))?.console;
        tables.push((n, console));
    }
    println!("\nbench reaction (VM, TCG; onset = antagonist start, end = first cgroup write truce made)");
    println!("{:>6} {:>10} {:>15} {:>7} {:>10} {:>10} {:>10}", "vCPUs", "period", "pressure_onset", "trials", "p50", "p99", "max");
    for (n, console) in &tables {
        for &(p, o) in &variants {
            let mut ms: Vec<f64> = console
                .iter()
                .filter_map(|l| l.find('{').map(|i| &l[i..]))
                .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
                .filter(|v| v["period_ms"].as_u64() == Some(p) && v["onset"].as_bool() == Some(o))
                .filter_map(|v| v["reaction_ms"].as_f64())
                .collect();
            if ms.is_empty() {
                bail!("no reaction measured with {n} vCPU at period {p} ms with pressure_onset {}", on_off(o));
            }
            ms.sort_by(f64::total_cmp);
            println!("{:>6} {:>7} ms {:>15} {:>7} {:>7.0} ms {:>7.0} ms {:>7.0} ms", n, p, on_off(o), ms.len(), percentile(&ms, 0.5), percentile(&ms, 0.99), ms[ms.len() - 1]);
        }
    }
    println!("goal: p99 <= 300 ms");
    Ok(())
}
