//! `cargo xtask bench mitigation`: the demo's phases in one VM boot, compared side by side:
//! the victim's p99 with truce against the victim alone (goal: at most 1.2x), and the
//! antagonists' throughput with truce against without (goal: at least 60 % kept), for both
//! ways the market can hold a cut workload (`cpu_cut = quota`, `weight`, `yield`) in the same boot,
//! next to a control phase with the agent running but no arbiter (its own cost, no decisions).
//! Each truce row also gives the victim's p99 over the requests after truce's first write
//! (`settled p99/iso`): the whole phase includes the reaction to the antagonists' start, which
//! `bench reaction` measures on its own.
//!
//! Extra arguments: `--seconds N` per phase (default 20), `--rounds N` (default 2),
//! `--period-ms A,B` (the agent's period; default 500, one boot each), `--host` (run on this host instead of the VM), `--vcpus A,B` (default
//! 1,2: one boot each, printed one after the other), `--forecast-share A,B` (the agent's
//! `forecast.cpu_share`, one boot each; 0 turns forecasting off), `--system-weight A,B` (the
//! `cpu.weight` of the daemons' cgroup against the workloads' 100, one boot each),
//! `--agent-policy batch,normal` (the agent's `cpu_policy`, one boot each), `--agent-probes
//! all,sched` (sched turns the agent's block and network probes off, one boot each), `--cuts`
//! (the phases after "without truce", default observe,quota,weight,yield; `static` adds a
//! control with the yield cut's setting written by hand and no agent, `static-observe` the
//! same with the agent running and no arbiter, `static-burst` with a stand-in daemon
//! spinning 25 ms every 500 ms instead), `--burst-us A,B` (the stand-in's CPU a burst in µs,
//! one boot each: what a daemon's per-period CPU costs the victim), `--burst-pieces A,B` (in how
//! many pieces, default 4) and `--burst-policy normal,batch` (its scheduling policy, default
//! normal), one boot each, `--io-hog on,off`
//! (off leaves the I/O antagonist out; one boot each), `--trace` (each agent phase prints the
//! victim's slowest requests with the agent's timeline around them, and the probes' kernel
//! run time), `--arbiter vm,host` (default host: the
//! arbiter on this host, as in production where it is another machine; `vm` runs it in the
//! guest, sharing the victim's vCPUs; one boot each). Under single-threaded TCG the vCPUs take
//! turns on one host thread, up to 100 ms each while both are busy, so with 2 vCPUs a busy
//! antagonist delays the victim in a way no guest scheduler or cgroup setting can change;
//! with 1 the guest's own scheduler, which truce steers, is the only one deciding.
use super::flag;
use crate::demo::{self, Place};
use anyhow::{Context, Result};
use serde_json::Value;

/// One phase kind, averaged over the rounds.
struct Row {
    p50: f64,
    p99: f64,
    /// p99 over the requests after truce's first write (the phase minus its reaction).
    settled_p99: Option<f64>,
    cpu: Option<f64>,
    io: Option<f64>,
    agent_cpu: Option<f64>,
    /// Samples the agent took per period of the phase (early ones on pressure onsets too).
    samples_per_period: Option<f64>,
}

/// The phases a boot runs after "isolated" and "without truce", per round (`--cuts`).
/// "static" is a control: the yield cut's setting written by hand, no agent; "static-observe"
/// the same with the agent running and no arbiter (what the agent's presence costs there),
/// "static-burst" with a stand-in daemon instead (the agent's CPU, none of its code).
const CUTS: &str = "observe,quota,weight,yield,static,static-observe,static-burst";

/// `NAME A,B,...`: one boot per value; absent, one boot with the default (None).
fn list<T: std::str::FromStr>(rest: &[String], name: &str, valid: impl Fn(&T) -> bool, what: &str) -> Result<Vec<Option<T>>> {
    let Some(i) = rest.iter().position(|a| a == name) else { return Ok(vec![None]) };
    rest.get(i + 1)
        .with_context(|| format!("{name} needs a value"))?
        .split(',')
        .map(|v| v.trim().parse::<T>().ok().filter(&valid).map(Some).with_context(|| format!("{name}: {v:?} is not {what}")))
        .collect()
}

pub fn run(rest: &[String]) -> Result<()> {
    let host = rest.iter().any(|a| a == "--host");
    let vcpus: Vec<u32> = if host {
        vec![0]
    } else {
        super::numbers(&flag(rest, "--vcpus", "1,2".to_string())?, "--vcpus")?
    };
    let places: Vec<Place> =
        if host { vec![Place::Vm] } else { flag(rest, "--arbiter", "host".to_string())?.split(',').map(Place::parse).collect::<Result<_>>()? };
    let periods: Vec<u64> = super::numbers(&flag(rest, "--period-ms", "500".to_string())?, "--period-ms")?;
    let shares: Vec<Option<f64>> = list(rest, "--forecast-share", |s: &f64| (0.0..=1.0).contains(s), "a share between 0 and 1")?;
    let weights: Vec<Option<u32>> = list(rest, "--system-weight", |w: &u32| (1..=10_000).contains(w), "a cpu.weight from 1 to 10000")?;
    let policies: Vec<Option<String>> = list(rest, "--agent-policy", |p: &String| demo::AGENT_POLICIES.contains(&p.as_str()), "batch or normal")?;
    let probe_sets: Vec<Option<String>> = list(rest, "--agent-probes", |p: &String| demo::AGENT_PROBES.contains(&p.as_str()), "all or sched")?;
    let burst_us: Vec<Option<u64>> = list(rest, "--burst-us", |us: &u64| (1..=500_000).contains(us), "µs from 1 to 500000")?;
    let burst_pieces: Vec<Option<u64>> = list(rest, "--burst-pieces", |n: &u64| (1..=100).contains(n), "a count from 1 to 100")?;
    let burst_policies: Vec<Option<String>> = list(rest, "--burst-policy", |p: &String| demo::AGENT_POLICIES.contains(&p.as_str()), "batch or normal")?;
    let bursts: Vec<(Option<u64>, Option<u64>, Option<String>)> = burst_us
        .iter()
        .flat_map(|u| burst_pieces.iter().map(move |n| (*u, *n)))
        .flat_map(|(u, n)| burst_policies.iter().map(move |p| (u, n, p.clone())))
        .collect();
    let io_hogs: Vec<Option<bool>> = list(rest, "--io-hog", |_: &super::OnOff| true, "on or off")?.into_iter().map(|o| o.map(|super::OnOff(on)| on)).collect();
    // By default every truce cut and the agent-only control; "static" only when asked.
    let cuts = flag(rest, "--cuts", "observe,quota,weight,yield".to_string())?;
    if let Some(bad) = cuts.split(',').find(|c| !CUTS.split(',').any(|k| k == c.trim())) {
        anyhow::bail!("--cuts: {bad:?} is none of {CUTS}");
    }
    for n in vcpus {
        for &arbiter in &places {
            for &period_ms in &periods {
                let knobs = shares
                    .iter()
                    .flat_map(|s| weights.iter().map(move |w| (s, w)))
                    .flat_map(|(s, w)| io_hogs.iter().map(move |i| (s, w, i)))
                    .flat_map(|(s, w, i)| policies.iter().map(move |p| (s, w, i, p)))
                    .flat_map(|(s, w, i, p)| probe_sets.iter().map(move |g| (s, w, i, p, g)))
                    .flat_map(|(s, w, i, p, g)| bursts.iter().map(move |b| (s, w, i, p, g, b)));
                for (&forecast_share, &system_weight, &io_hog, policy, probes, burst) in knobs {
                    let args = demo::Args {
                        seconds: flag(rest, "--seconds", 20)?,
                        rounds: flag(rest, "--rounds", 2)?,
                        period_ms,
                        host,
                        kernel: flag(rest, "--kernel", "6.12".to_string())?,
                        vcpus: n.max(1),
                        arbiter,
                        forecast_share,
                        system_weight,
                        agent_policy: policy.clone(),
                        agent_probes: probes.clone(),
                        no_io_hog: io_hog == Some(false),
                        burst_us: burst.0,
                        burst_pieces: burst.1,
                        burst_policy: burst.2.clone(),
                        trace: rest.iter().any(|a| a == "--trace"),
                    };
                    one_boot(&args, &cuts)?;
                }
            }
        }
    }
    Ok(())
}

fn one_boot(args: &demo::Args, cuts: &str) -> Result<()> {
    let summary = demo::run_scenario(args, cuts)?;
    let phases = summary["demo"].as_array().context("no phases in the demo summary")?;
    let get = |p: &Value, path: &[&str]| path.iter().try_fold(p, |v, k| v.get(*k)).and_then(Value::as_f64);
    let mean = |prefix: &str, path: &[&str]| {
        let v: Vec<f64> = phases.iter().filter(|p| p["phase"].as_str().is_some_and(|n| n.starts_with(prefix))).filter_map(|p| get(p, path)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let iso = mean("isolated", &["victim", "p99_ms"]).context("no isolated phase")?;
    let row = |name: &str, prefix: &str| -> Result<Row> {
        let p99 = mean(prefix, &["victim", "p99_ms"]).with_context(|| format!("no {name} phase"))?;
        let p50 = mean(prefix, &["victim", "p50_ms"]).unwrap_or(f64::NAN);
        Ok(Row {
            p50,
            p99,
            settled_p99: mean(prefix, &["settled", "p99_ms"]),
            cpu: mean(prefix, &["cpu", "units_per_s"]),
            io: mean(prefix, &["io", "bytes_per_s"]),
            agent_cpu: mean(prefix, &["agent_cpu_pct"]),
            samples_per_period: mean(prefix, &["agent_samples"]).map(|n| n * args.period_ms as f64 / (1000.0 * f64::from(args.seconds))),
        })
    };
    let without = row("without truce", "without")?;
    // The rows of the phases this boot ran (`--cuts`), in their order.
    let rows: Vec<(&str, &str, Row)> = [
        ("observe", "agent, no arbiter", "agent only"),
        ("quota", "truce, quota cut", "with truce/quota"),
        ("weight", "truce, weight cut", "with truce/weight"),
        ("yield", "truce, yield cut", "with truce/yield"),
        ("static", "yield by hand", "static yield #"),
        ("static-observe", "by hand + agent", "static yield, agent"),
        ("static-burst", "by hand + burst", "static yield, burst"),
    ]
    .into_iter()
    .filter(|(cut, ..)| cuts.split(',').any(|c| c.trim() == *cut))
    .map(|(cut, name, prefix)| Ok((cut, name, row(name, prefix)?)))
    .collect::<Result<_>>()?;
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    let forecast = args.forecast_share.map_or_else(String::new, |s| format!(", forecast.cpu_share {s}"))
        + &args.system_weight.map_or_else(String::new, |w| format!(", daemons' cpu.weight {w}"))
        + &args.agent_policy.as_ref().map_or_else(String::new, |p| format!(", agent cpu_policy {p}"))
        + &args.agent_probes.as_ref().map_or_else(String::new, |p| format!(", agent probes {p}"))
        + if args.no_io_hog { ", no I/O antagonist" } else { "" }
        + &args.burst_us.map_or_else(String::new, |us| format!(", stand-in daemon {us} µs a burst"))
        + &args.burst_pieces.map_or_else(String::new, |n| format!(" in {n} pieces"))
        + &args.burst_policy.as_ref().map_or_else(String::new, |p| format!(", stand-in policy {p}"));
    println!("\nbench mitigation ({} rounds of {} s phases, agent period {} ms{forecast}, {})", args.rounds, args.seconds, args.period_ms, if args.host { "this host".to_string() } else { format!("VM, TCG, {} vCPU, arbiter on the {}", args.vcpus, args.arbiter.name()) });
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>14} {:>14} {:>14} {:>12} {:>16}",
        "phase", "victim p50", "victim p99", "p99/isolated", "settled p99/iso", "cpu-hog kept", "io-hog kept", "agent CPU %", "samples/period"
    );
    println!("{:<16} {:>12} {:>9.2} ms {:>12} {:>14} {:>14} {:>14} {:>12} {:>16}", "isolated", "", iso, "1.00", "", "", "", "", "");
    for (name, r) in std::iter::once(("without truce", &without)).chain(rows.iter().map(|(_, name, r)| (*name, r))) {
        println!(
            "{:<16} {:>9.2} ms {:>9.2} ms {:>12.2} {:>14} {:>14} {:>14} {:>12} {:>16}",
            name,
            r.p50,
            r.p99,
            r.p99 / iso,
            ratio(r.settled_p99, Some(iso)),
            ratio(r.cpu, without.cpu),
            ratio(r.io, without.io),
            r.agent_cpu.map_or_else(|| "-".into(), |v| format!("{v:.1}")),
            r.samples_per_period.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
        );
    }
    // The goal is about truce's own rows, the market's cut styles; the rest are controls.
    for (cut, _, r) in rows.iter().filter(|(cut, ..)| ["quota", "weight", "yield"].contains(cut)) {
        println!(
            "goal ({cut} cuts): victim p99 with truce <= 1.2x isolated: {:.2}x (after truce's first write: {}x); antagonists keep >= 60 %: cpu {}, io {}",
            r.p99 / iso,
            ratio(r.settled_p99, Some(iso)),
            ratio(r.cpu, without.cpu),
            ratio(r.io, without.io)
        );
    }
    Ok(())
}
