//! `cargo xtask bench round`: one market round on each of 10,000 synthetic hosts with 20
//! workloads, per strategy side by side (two-stage fair LP, utility LP without the fairness
//! stage, greedy without LP), on 2 threads. The work is the arbiter's own code:
//! `cargo run --release -p truce-arbiter --example round_bench -- <flags>`.
//!
//! Extra arguments pass through: `--hosts N --workloads N --threads N --seed N`.
use crate::util::{run_step, workspace_root};
use anyhow::Result;
use std::process::Command;

pub fn run(rest: &[String]) -> Result<()> {
    let mut args: Vec<String> = [
        "run",
        "--release",
        "-q",
        "-p",
        "truce-arbiter",
        "--example",
        "round_bench",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(rest.iter().cloned());
    run_step(
        "market round benchmark",
        Command::new(env!("CARGO"))
            .args(&args)
            .current_dir(workspace_root()),
    )
}
