//! `cargo xtask bench round` runs this: resolve one market round on each of many synthetic
//! hosts, per strategy, side by side, and print per-host and whole-fleet times.
//!
//! Usage: round_bench [--hosts N] [--workloads N] [--threads N] [--seed N]
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};
use truce_arbiter::ledger::LedgerState;
use truce_arbiter::market::synthetic::{SplitMix, bids, fund, host_book};
use truce_arbiter::market::{HostBook, Market, MarketConfig, Strategy};
use truce_common::model::{Bid, Credits, HostId, Timestamp};

struct Args {
    hosts: usize,
    workloads: usize,
    threads: usize,
    seed: u64,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        hosts: 10_000,
        workloads: 20,
        threads: 2,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .with_context(|| format!("{flag} {value}: not a number"))?;
        match flag.as_str() {
            "--hosts" => a.hosts = n as usize,
            "--workloads" => a.workloads = n as usize,
            "--threads" => a.threads = (n as usize).max(1),
            "--seed" => a.seed = n,
            other => bail!("unknown flag {other}; known: --hosts --workloads --threads --seed"),
        }
    }
    Ok(a)
}

struct Run {
    wall: Duration,
    per_host: Vec<Duration>,
    decisions: usize,
    solves: u64,
    borrowed: u64,
}

fn run(
    market: &Market,
    fleet: &[(HostBook, Vec<Bid>)],
    ledger: &LedgerState,
    now: Timestamp,
    threads: usize,
) -> Result<Run> {
    let start = Instant::now();
    let chunk = fleet.len().div_ceil(threads);
    type Part = (Vec<Duration>, usize, u64, u64);
    let results: Vec<Result<Part>> = std::thread::scope(|s| {
        let handles: Vec<_> = fleet
            .chunks(chunk.max(1))
            .map(|part| {
                s.spawn(move || {
                    let mut times = Vec::with_capacity(part.len());
                    let (mut decisions, mut solves, mut borrowed) = (0, 0, 0);
                    for (book, bids) in part {
                        let t = Instant::now();
                        let out = market.resolve(book, bids, ledger, now)?;
                        times.push(t.elapsed());
                        decisions += out.decisions.len();
                        solves += out.solves as u64;
                        // Holdings pushed all the way down to the floor: what fairness prevents.
                        for ((w, r), held) in &out.allocation {
                            let b = book.bounds(*w, *r);
                            borrowed += u64::from(*held == b.floor && b.entitlement > b.floor);
                        }
                    }
                    Ok((times, decisions, solves, borrowed))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a bench thread panicked"))
            })
            .collect()
    });
    let wall = start.elapsed();
    let mut run = Run {
        wall,
        per_host: Vec::new(),
        decisions: 0,
        solves: 0,
        borrowed: 0,
    };
    for r in results {
        let (t, d, s, b) = r?;
        run.per_host.extend(t);
        run.decisions += d;
        run.solves += s;
        run.borrowed += b;
    }
    run.per_host.sort();
    Ok(run)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<()> {
    let args = parse()?;
    let now = Timestamp(3_600_000);
    let mut rng = SplitMix::new(args.seed);
    let mut ledger = LedgerState::new();
    let mut fleet = Vec::with_capacity(args.hosts);
    for h in 0..args.hosts {
        let book = host_book(HostId(format!("host-{h:05}")), args.workloads);
        fund(&mut ledger, &book, Credits::from_credits(1.0), 3_600);
        let b = bids(&book, &mut rng, now, (h * args.workloads) as u64);
        fleet.push((book, b));
    }
    println!(
        "round bench: {} hosts x {} workloads, {} threads, seed {} (a round = one host's market resolution)",
        args.hosts, args.workloads, args.threads, args.seed
    );
    println!(
        "| strategy | fleet wall time | per-host p50 | per-host p99 | per-host max | LPs solved | decisions | holdings cut to the floor |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, strategy) in [
        ("two-stage LP (fair, production)", Strategy::FairLp),
        ("utility LP only (no fairness)", Strategy::UtilityLp),
        ("greedy (no LP)", Strategy::Greedy),
    ] {
        let market = Market::new(MarketConfig {
            strategy,
            ..MarketConfig::default()
        });
        let r = run(&market, &fleet, &ledger, now, args.threads)?;
        println!(
            "| {name} | {:.2} s | {:.3} ms | {:.3} ms | {:.3} ms | {} | {} | {} |",
            r.wall.as_secs_f64(),
            pct(&r.per_host, 0.5).as_secs_f64() * 1e3,
            pct(&r.per_host, 0.99).as_secs_f64() * 1e3,
            pct(&r.per_host, 1.0).as_secs_f64() * 1e3,
            r.solves,
            r.decisions,
            r.borrowed
        );
    }
    Ok(())
}
